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
    from auditor.app.settings import Settings
    from auditor.core.errors import ConfigError

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

    from auditor.app.audit import audit_from_settings
    from auditor.app.settings import Settings

    if timer.past_due:
        logging.getLogger("auditor.timer").warning(
            "audit timer past_due=true: a scheduled run was missed (host down or overrunning)"
        )
    audit_from_settings(Settings.from_env())


# ---- approved remediation (issue 6) -----------------------------------------------------------
# Authentication happens in code (auditor.approval_auth): a function key is not an identity, so
# these routes are ANONYMOUS at the platform level and refuse anyone without an Entra token (or,
# when EASY_AUTH_ENABLED, the App Service principal) holding the approver role.

REMEDIATION_QUEUE = "remediations"


class _Collected(func.Out[str]):
    """A queue output slot for callers outside the host (dev server, tests)."""

    def __init__(self) -> None:
        self.value: str | None = None

    def set(self, val: str) -> None:
        self.value = val

    def get(self) -> str:
        return self.value or ""


def build_http_request(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes,
    route_params: dict[str, str],
    params: dict[str, str] | None = None,
) -> func.HttpRequest:
    """A real `func.HttpRequest` (the dev server serves these functions unchanged)."""
    return func.HttpRequest(
        method, url, headers=headers, params=params or {}, route_params=route_params, body=body
    )


def build_queue_message(body: str) -> func.QueueMessage:
    return func.QueueMessage(body=body.encode("utf-8"))


def queue_slot() -> _Collected:
    return _Collected()


def _remediation(
    req: func.HttpRequest, handler: str, msg: func.Out[str] | None = None
) -> func.HttpResponse:
    from auditor.app.wiring import service
    from auditor.core.errors import ConfigError
    from auditor.web.api import WebRequest

    try:
        svc = service()
    except ConfigError as exc:
        body = {"error": "misconfigured", "setting": exc.where, "message": exc.detail}
        return func.HttpResponse(json.dumps(body), status_code=500, mimetype="application/json")
    web = WebRequest(
        method=req.method,
        url=req.url,
        headers=dict(req.headers),
        body=req.get_body() or b"",
        route_params=dict(req.route_params),
    )
    out = getattr(svc, handler)(web)
    if out.enqueue is not None and msg is not None:
        msg.set(out.enqueue)
    return func.HttpResponse(
        out.body, status_code=out.status, mimetype=out.mimetype, headers=out.headers
    )


@app.function_name("remediation_page")
@app.route(route="remediations/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def remediation_page(req: func.HttpRequest) -> func.HttpResponse:
    """Confirmation page of a proposal. Changes nothing (link scanners open it)."""
    return _remediation(req, "page")


@app.function_name("remediation_status")
@app.route(route="remediations/{id}/status", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def remediation_status(req: func.HttpRequest) -> func.HttpResponse:
    return _remediation(req, "status")


@app.function_name("remediation_approve")
@app.route(route="remediations/{id}/approve", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.queue_output(arg_name="msg", queue_name=REMEDIATION_QUEUE, connection="AzureWebJobsStorage")
def remediation_approve(req: func.HttpRequest, msg: func.Out[str]) -> func.HttpResponse:
    """Approve the plan hash shown; small plans run inline, larger ones are queued (202)."""
    return _remediation(req, "approve", msg)


@app.function_name("remediation_reject")
@app.route(route="remediations/{id}/reject", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def remediation_reject(req: func.HttpRequest) -> func.HttpResponse:
    return _remediation(req, "reject")


@app.function_name("remediation_execute")
@app.queue_trigger(
    arg_name="message", queue_name=REMEDIATION_QUEUE, connection="AzureWebJobsStorage"
)
def remediation_execute(message: func.QueueMessage) -> None:
    """Execute an approved proposal. Idempotent: a redelivered message changes nothing twice."""
    import logging

    from auditor.app.wiring import service

    record = service().run_queued(message.get_body().decode("utf-8"))
    logging.getLogger("auditor.remediation").info(
        "remediation %s: %s (%s)", record.id, record.state.value, record.outcome
    )
