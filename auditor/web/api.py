"""The remediation HTTP API, framework-neutral: `function_app.py` and the dev server adapt it.

Routes (all under `/api/remediations/{id}`; every one needs an authenticated approver — a
function key is not an identity):

- `GET  {id}`          confirmation page (HTML). Changes nothing: link scanners open it.
- `POST {id}/approve`  approve the plan hash shown; optional subset of targets; `dry_run`.
  JSON (`{"plan_hash", "targets": [...], "dry_run": false}`) with a bearer token, or the
  page's form (which must carry the anti-forgery token). Small plans run inline (200 with the
  result); larger ones are queued (202, `Location` = status URL).
- `GET  {id}/status`   the record: approver, times, each target's result, the audit trail.
- `POST {id}/reject`   reject (`{"reason"}` or the form).

Status codes: 400 bad request or subset, 401 not authenticated, 403 not an approver or a bad
anti-forgery token, 404 unknown proposal, 409 already used / tampered, 410 expired or rejected,
412 plan hash differs from the proposal's, 415 unsupported body, 500 misconfigured (naming the
setting, never its value).

Every response carries `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`; HTML
also a CSP with `default-src 'none'; base-uri 'none'` and `frame-ancestors 'none'`. A request
body must declare its type (`application/json` or the form's): a body without a content type is
what a cross-site `no-cors` fetch can send, and is refused (415).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from auditor.core import routes
from auditor.core.errors import AuditorError, ConfigError, InputError, Refused
from auditor.core.model import Allowlist
from auditor.core.proposals import Principal, Record, Result, Role, State
from auditor.identity.approver import ApproverAuth, AuthError, check_form_token, form_token
from auditor.remediation.execute import Exchange, execute, preview, resume_stuck
from auditor.storage.proposal_store import ProposalStore
from auditor.web.pages import confirmation_page, dry_run_page, message_page, status_page

__all__ = ["WebRequest", "WebResponse", "RemediationHttp"]

# The HTTP status of each refusal code: the only place refusals meet HTTP.
STATUS = {
    "bad_request": 400,
    "bad_subset": 400,
    "not_found": 404,
    "already_used": 409,
    "not_running": 409,
    "tampered": 409,
    "forged": 409,
    "invariant": 409,
    "unverified": 500,
    "expired": 410,
    "rejected": 410,
    "superseded": 410,
    "plan_changed": 412,
    "too_large": 413,
    "unsupported": 415,
}

log = logging.getLogger(__name__)
MAX_BODY = 256 * 1024


@dataclass(frozen=True, slots=True)
class WebRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""
    route_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WebResponse:
    status: int
    body: str
    mimetype: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    enqueue: str | None = None  # a queue message the adapter must send (approve only)


# Marks a request the dev server authenticated on the browser's behalf (it injected the bearer
# token): such a request needs the anti-forgery token like a form. Set by no real deployment;
# a client that sends it only makes its own request stricter.
BROWSER_HEADER = "x-auditor-browser-session"
COMMON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def _json(status: int, document: Any, headers: dict[str, str] | None = None) -> WebResponse:
    return WebResponse(
        status,
        json.dumps(document, indent=1),
        "application/json",
        {**COMMON_HEADERS, **(headers or {})},
    )


def _html(status: int, page: str, headers: dict[str, str] | None = None) -> WebResponse:
    base = {**COMMON_HEADERS, "X-Frame-Options": "DENY", "Content-Security-Policy": CSP}
    return WebResponse(status, page, "text/html", {**base, **(headers or {})})


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def _wants_html(req: WebRequest) -> bool:
    accept = _header(req.headers, "accept")
    return "text/html" in accept and "application/json" not in accept


@dataclass(frozen=True, slots=True)
class _Body:
    form: bool
    plan_hash: str
    targets: list[str] | None
    dry_run: bool
    csrf: str
    reason: str


def _parse_body(req: WebRequest) -> _Body:
    if len(req.body) > MAX_BODY:
        raise Refused("too_large", "request body too large")
    ctype = _header(req.headers, "content-type").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(req.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise Refused("bad_request", "form body is not UTF-8") from None
        return _Body(
            form=True,
            plan_hash=(fields.get("plan_hash") or [""])[0],
            targets=fields.get("target", []),
            dry_run=(fields.get("dry_run") or [""])[0].lower() in ("true", "1", "on"),
            csrf=(fields.get("csrf") or [""])[0],
            reason=(fields.get("reason") or [""])[0],
        )
    if ctype == "" and req.body.strip():
        raise Refused("unsupported", "a request body needs a Content-Type (application/json)")
    if ctype == "application/json" and req.body.strip():
        try:
            data = json.loads(req.body)
        except (ValueError, UnicodeDecodeError):
            raise Refused("bad_request", "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise Refused("bad_request", "body must be a JSON object")
        targets = data.get("targets")
        if targets is not None and (
            not isinstance(targets, list) or not all(isinstance(t, str) for t in targets)
        ):
            raise Refused("bad_request", "targets must be a list of target keys")
        dry_run = data.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise Refused("bad_request", "dry_run must be true or false")
        plan_digest = data.get("plan_hash", "")
        if not isinstance(plan_digest, str):
            raise Refused("bad_request", "plan_hash must be a string")
        return _Body(
            form=False,
            plan_hash=plan_digest,
            targets=targets,
            dry_run=dry_run,
            csrf=str(data.get("csrf", "")),
            reason=str(data.get("reason", "")),
        )
    if not req.body.strip():
        return _Body(False, "", None, False, "", "")
    raise Refused("unsupported", f"unsupported content type {ctype!r}")


class RemediationHttp:
    """Handlers for the remediation routes; every dependency injected, built lazily upstream."""

    def __init__(
        self,
        *,
        store: ProposalStore,
        auth: ApproverAuth,
        form_secret: str | None,
        exchange: Callable[[], Exchange],
        load_allowlist: Callable[[], Allowlist],
        now: Callable[[], datetime],
        public_url: str | None = None,
        inline_limit: int = 10,
        announce: Callable[[Record], None] | None = None,
        wall: Callable[[], float] = time.time,
        verify_seconds: float = 120.0,
    ) -> None:
        self.store = store
        self.auth = auth
        self.form_secret = form_secret
        self.exchange = exchange
        self.load_allowlist = load_allowlist
        self.now = now
        self.public_url = public_url
        self.inline_limit = inline_limit
        self.announce = announce
        self.wall = wall
        self.verify_seconds = verify_seconds

    # -- helpers -----------------------------------------------------------------------------

    def _base(self, req: WebRequest) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        parts = urlsplit(req.url)
        return f"{parts.scheme}://{parts.netloc}"

    def _url(self, req: WebRequest, proposal_id: str, action: str = "") -> str:
        return self._base(req) + routes.remediation_path(proposal_id, action)

    def _error(self, req: WebRequest, status: int, code: str, message: str) -> WebResponse:
        headers: dict[str, str] = {}
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="smtp-auth-auditor"'
        if _wants_html(req) or "x-www-form-urlencoded" in _header(req.headers, "content-type"):
            pid = str(req.route_params.get("id", "")).strip()
            back = self._url(req, pid) if pid else None
            return _html(status, message_page(f"{status}: {code}", message, back=back), headers)
        return _json(status, {"error": code, "message": message}, headers)

    def _handle(self, req: WebRequest, action: Callable[[str], WebResponse]) -> WebResponse:
        proposal_id = str(req.route_params.get("id", "")).strip()
        try:
            return action(proposal_id)
        except AuthError as exc:
            return self._error(
                req, exc.status, "unauthorized" if exc.status == 401 else "forbidden", str(exc)
            )
        except Refused as exc:
            return self._error(req, STATUS.get(exc.code, 400), exc.code, str(exc))
        except ConfigError as exc:  # names the setting; its message never carries a value
            return self._error(req, 500, "misconfigured", f"setting {exc.where}: {exc.detail}")
        except InputError as exc:
            return self._error(req, 500, "misconfigured", str(exc))

    def _principal(self, req: WebRequest) -> Principal:
        return self.auth.authenticate(req.headers)

    def _check_csrf(
        self, req: WebRequest, body: _Body, principal: Principal, record: Record, digest: str
    ) -> None:
        browser = bool(_header(req.headers, BROWSER_HEADER))
        if not (body.form or principal.source == "easyauth" or browser):
            return  # a bearer token is never sent by a browser on its own: no CSRF
        if not self.form_secret:
            raise AuthError(403, "form approval is disabled: AUDITOR_FORM_SECRET is not set")
        check_form_token(
            self.form_secret, body.csrf, record.id, digest, principal.object_id, now=self.wall()
        )

    # -- GET {id} ----------------------------------------------------------------------------

    def page(self, req: WebRequest) -> WebResponse:
        def action(proposal_id: str) -> WebResponse:
            principal = self._principal(req)
            record = self.store.get(proposal_id)
            token = (
                form_token(
                    self.form_secret,
                    record.id,
                    record.plan_hash,
                    principal.object_id,
                    now=self.wall(),
                )
                if self.form_secret
                else ""
            )
            return _html(
                200,
                confirmation_page(
                    record,
                    approve_url=self._url(req, record.id, "approve"),
                    reject_url=self._url(req, record.id, "reject"),
                    status_url=self._url(req, record.id, "status"),
                    form_token=token,
                    approver=f"{principal.name} ({principal.object_id})",
                    now=self.now(),
                    successor_url=(
                        self._url(req, record.superseded_by) if record.superseded_by else None
                    ),
                ),
            )

        return self._handle(req, action)

    # -- GET {id}/status ---------------------------------------------------------------------

    def status(self, req: WebRequest) -> WebResponse:
        def action(proposal_id: str) -> WebResponse:
            self._principal(req)
            record = self.store.get(proposal_id)
            trail = self.store.trail(proposal_id)
            if _wants_html(req):
                return _html(200, status_page(record, trail))
            document = record.to_json()
            document["trail"] = [
                {"at": e.at, "event": e.event, "actor": e.actor, "detail": e.detail} for e in trail
            ]
            return _json(200, document)

        return self._handle(req, action)

    # -- POST {id}/reject --------------------------------------------------------------------

    def reject(self, req: WebRequest) -> WebResponse:
        def action(proposal_id: str) -> WebResponse:
            principal = self._principal(req)
            body = _parse_body(req)
            record = self.store.get(proposal_id, with_targets=False)
            self._check_csrf(req, body, principal, record, record.plan_hash)
            record = self.store.reject(
                proposal_id, principal=principal, now=self.now(), reason=body.reason
            )
            if body.form or _wants_html(req):
                return _html(
                    200,
                    message_page(
                        "Rejected",
                        f"Proposal {record.id} was rejected; nothing was changed.",
                        link=self._url(req, record.id, "status"),
                    ),
                )
            return _json(200, record.to_json())

        return self._handle(req, action)

    # -- POST {id}/approve -------------------------------------------------------------------

    def approve(self, req: WebRequest) -> WebResponse:
        def action(proposal_id: str) -> WebResponse:
            principal = self._principal(req)
            body = _parse_body(req)
            if not body.plan_hash:
                raise Refused("bad_request", "plan_hash is required: approve what you saw")
            record = self.store.get(proposal_id)
            self._check_csrf(req, body, principal, record, body.plan_hash)
            subset = self._subset(record, body)
            if body.dry_run:
                return self._dry_run(req, record, body, principal, subset)
            record = self.store.approve(
                proposal_id,
                plan_digest=body.plan_hash,
                principal=principal,
                now=self.now(),
                subset=subset,
            )
            status_url = self._url(req, record.id, "status")
            chosen = sum(1 for t in record.targets if t.result is Result.PENDING)
            if chosen <= self.inline_limit:
                try:
                    record = self._execute(record.id)
                except AuditorError as exc:
                    log.error("remediation %s: inline execution failed, queued: %s", record.id, exc)
                    return self._queued(req, body, record, status_url)
                if body.form or _wants_html(req):
                    return _html(
                        200,
                        message_page(
                            f"Approved: {record.state.value}",
                            f"{record.title}: {record.outcome}",
                            link=status_url,
                        ),
                    )
                document = record.to_json()
                document["status_url"] = status_url
                return _json(200, document)
            return self._queued(req, body, record, status_url)

        return self._handle(req, action)

    def _queued(self, req: WebRequest, body: _Body, record: Record, status_url: str) -> WebResponse:
        message = json.dumps({"id": record.id})
        headers = {"Location": status_url}
        if body.form or _wants_html(req):
            page = message_page(
                "Approved: queued",
                f"Proposal {record.id} was approved by {record.approver_name}; it runs now.",
                link=status_url,
            )
            response = _html(202, page, headers)
        else:
            response = _json(
                202,
                {"id": record.id, "state": record.state.value, "status_url": status_url},
                headers,
            )
        return WebResponse(
            response.status, response.body, response.mimetype, response.headers, message
        )

    @staticmethod
    def _subset(record: Record, body: _Body) -> list[str] | None:
        if body.targets is None:
            return None
        selectable = {
            t.target.key
            for t in record.targets
            if not (t.target.role is Role.REVOKE and t.target.step == 3)
        }
        chosen = {k.strip().lower() for k in body.targets if k.strip()}
        if body.form and not chosen:
            raise Refused("bad_subset", "no target is ticked")
        if chosen == selectable:
            return None
        return sorted(chosen)

    def _dry_run(
        self,
        req: WebRequest,
        record: Record,
        body: _Body,
        principal: Principal,
        subset: list[str] | None,
    ) -> WebResponse:
        # The same checks and the same selection (pins, consequences) as a real approval.
        chosen = self.store.check_approvable(
            record, now=self.now(), plan_digest=body.plan_hash, subset=subset
        )
        shown = preview(
            record,
            exchange=self.exchange(),
            allowlist=self.load_allowlist(),
            today=self.now().date(),
            subset=chosen,
        )
        self.store.audit(
            record.id,
            "dry-run",
            f"{principal.name} ({principal.object_id})",
            f"{len(shown.lines)} target(s) previewed",
            now=self.now(),
        )
        document = shown.to_json()
        if body.form or _wants_html(req):
            page = dry_run_page(
                record, shown.lines, back=self._url(req, record.id), breaking=shown.breaking
            )
            return _html(200, page)
        return _json(200, document)

    # -- execution (inline or from the queue) --------------------------------------------------

    def _execute(self, proposal_id: str) -> Record:
        return execute(
            proposal_id,
            store=self.store,
            exchange=self.exchange(),
            load_allowlist=self.load_allowlist,
            now=self.now,
            announce=self.announce,
            verify_seconds=self.verify_seconds,
        )

    def run_queued(self, message: str) -> Record:
        """Execute the proposal named by a queue message. Safe to deliver twice: the message
        only names the proposal; what runs is what its signed approval record says."""
        try:
            data = json.loads(message)
            proposal_id = str(data["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                "queue message", f'expected {{"id": ...}}, got {message[:200]!r}'
            ) from exc
        record = self._execute(proposal_id)
        if record.state in (State.APPROVED, State.RUNNING):
            # Another executor holds the lease, or this one was interrupted: fail the message
            # so the host delivers it again later (the nightly sweep is the last resort).
            raise AuditorError(f"proposal {proposal_id} is still {record.state.value}; retry")
        return record

    def sweep(self) -> list[Record]:
        """Resume what is stuck (lost queue message, execution cut off): the nightly timer."""
        return resume_stuck(
            store=self.store,
            exchange=self.exchange,
            load_allowlist=self.load_allowlist,
            now=self.now,
            announce=self.announce,
            verify_seconds=self.verify_seconds,
        )
