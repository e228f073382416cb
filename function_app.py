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
