"""`GET /api/health`: the app indexed, its settings parse, and every setting the nightly timer
needs is set (`EXO_TENANT`, `AUDITOR_STORAGE`). Reveals no setting values, only names."""

from __future__ import annotations

import json

import azure.functions as func

from auditor.core import routes

__all__ = ["blueprint"]

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@blueprint.function_name("health")
@blueprint.route(route=routes.HEALTH, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    from auditor import __version__
    from auditor.app.settings import Settings
    from auditor.core.errors import ConfigError

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        body = {"status": "misconfigured", "setting": exc.where, "version": __version__}
        return func.HttpResponse(
            json.dumps(body), status_code=500, mimetype="application/json", headers=_HEADERS
        )
    # What the timer cannot run without (app.audit.audit_from_settings and the store).
    required = (("EXO_TENANT", settings.exo_tenant), ("AUDITOR_STORAGE", settings.storage))
    missing = [name for name, value in required if not value]
    if missing:
        problem: dict[str, object] = {
            "status": "misconfigured",
            "setting": missing[0],
            "missing": missing,
            "message": "required for the nightly audit: " + ", ".join(missing),
            "version": __version__,
        }
        return func.HttpResponse(
            json.dumps(problem), status_code=500, mimetype="application/json", headers=_HEADERS
        )
    body = {"status": "ok", "version": __version__}
    return func.HttpResponse(
        json.dumps(body), status_code=200, mimetype="application/json", headers=_HEADERS
    )
