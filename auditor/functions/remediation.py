"""Approved remediation over HTTP, and its queue-triggered executor.

Authentication happens in code (`auditor.identity.approver`): a function key is not an
identity, so these routes are ANONYMOUS at the platform level and refuse anyone without an
Entra token (or, when EASY_AUTH_ENABLED, the App Service principal) holding the approver role.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from auditor.core import routes

__all__ = ["blueprint", "build_http_request", "build_queue_message", "queue_slot"]

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]


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
    from auditor.core.errors import ConfigError
    from auditor.web.api import WebRequest
    from auditor.web.runtime import service

    try:
        svc = service()
    except ConfigError as exc:  # the setting's name and what is wrong; never its value
        body = {"error": "misconfigured", "setting": exc.where, "message": exc.detail}
        return func.HttpResponse(
            json.dumps(body),
            status_code=500,
            mimetype="application/json",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )
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


@blueprint.function_name("remediation_page")
@blueprint.route(route=routes.REMEDIATION, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def remediation_page(req: func.HttpRequest) -> func.HttpResponse:
    """Confirmation page of a proposal. Changes nothing (link scanners open it)."""
    return _remediation(req, "page")


@blueprint.function_name("remediation_status")
@blueprint.route(
    route=routes.REMEDIATION_STATUS, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS
)
def remediation_status(req: func.HttpRequest) -> func.HttpResponse:
    return _remediation(req, "status")


@blueprint.function_name("remediation_approve")
@blueprint.route(
    route=routes.REMEDIATION_APPROVE, methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS
)
@blueprint.queue_output(
    arg_name="msg", queue_name=routes.REMEDIATION_QUEUE, connection="AzureWebJobsStorage"
)
def remediation_approve(req: func.HttpRequest, msg: func.Out[str]) -> func.HttpResponse:
    """Approve the plan hash shown; small plans run inline, larger ones are queued (202)."""
    return _remediation(req, "approve", msg)


@blueprint.function_name("remediation_reject")
@blueprint.route(
    route=routes.REMEDIATION_REJECT, methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS
)
def remediation_reject(req: func.HttpRequest) -> func.HttpResponse:
    return _remediation(req, "reject")


@blueprint.function_name("remediation_execute")
@blueprint.queue_trigger(
    arg_name="message", queue_name=routes.REMEDIATION_QUEUE, connection="AzureWebJobsStorage"
)
def remediation_execute(message: func.QueueMessage) -> None:
    """Execute an approved proposal. Idempotent: a redelivered message changes nothing twice."""
    from auditor.web.runtime import service

    record = service().run_queued(message.get_body().decode("utf-8"))
    logging.getLogger("auditor.remediation").info(
        "remediation %s: %s (%s)", record.id, record.state.value, record.outcome
    )
