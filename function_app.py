"""Azure Functions entry points (Python v2 model). Triggers only: parse input, call one service
function, map errors to responses. Nothing happens at import time: no clients, no secrets, no
network (the host gives an app 30 s to start, and a failing import means "0 functions found").
"""

from __future__ import annotations

import json

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness probe: the app indexed and its settings parse. Reveals no setting values."""
    from auditor import __version__
    from auditor.config import Settings
    from auditor.errors import ConfigError

    try:
        Settings.from_env()
    except ConfigError as exc:
        body = {"status": "misconfigured", "setting": exc.where, "version": __version__}
        return func.HttpResponse(json.dumps(body), status_code=500, mimetype="application/json")
    body = {"status": "ok", "version": __version__}
    return func.HttpResponse(json.dumps(body), status_code=200, mimetype="application/json")


@app.function_name("nightly_audit")
@app.timer_trigger(
    schedule="%AUDIT_SCHEDULE%",
    arg_name="timer",
    run_on_startup=False,
    use_monitor=True,
)
def nightly_audit(timer: func.TimerRequest) -> None:
    """The nightly audit: collect, evaluate, record (auditor.service.audit_from_settings).

    The schedule comes from the AUDIT_SCHEDULE app setting (NCRONTAB, UTC; infra sets it,
    local runs read it from local.settings.json). A failed or partial collection raises after
    it is recorded, so the host marks the invocation failed. Logs carry the run id, counts and
    durations only (auditor.service), never mailbox lists or tokens.
    """
    import logging

    from auditor.config import Settings
    from auditor.service import audit_from_settings

    if timer.past_due:
        logging.getLogger("auditor.timer").warning(
            "audit timer past_due=true: a scheduled run was missed (host down or overrunning)"
        )
    audit_from_settings(Settings.from_env())
