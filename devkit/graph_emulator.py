"""A Microsoft Graph sign-in log stand-in: `GET /v1.0/auditLogs/signIns` on 127.0.0.1.

Serves `signins` (Graph `signIn` resources) newest first, filtered by the two clauses the
auditor sends (`clientAppUsed eq '...'` alternatives and `createdDateTime ge <instant>`), paged
`$top` at a time through `@odata.nextLink` with a `$skiptoken`. Anything else in `$filter` is a
400, as Graph answers an unsupported filter. Modes for the failures the adapter must survive:

- `mode = "licence"`: 403 `Authentication_RequestFromNonPremiumTenantOrB2CTenant` (Free tenant).
- `mode = "permission"`: 403 `Authentication_MSGraphPermissionMissing`.
- `throttle = n`: the next n requests get 429 with `Retry-After: retry_after`.
- `broken_page = k`: page k (1-based) is cut off mid-JSON.
- `foreign_link = True`: the first page's nextLink points at another host.

Only the standard library; never deployed. `add_signin(...)` builds a realistic record.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

__all__ = ["GraphEmulator", "GraphRequest", "signin_record"]

_APP = re.compile(r"clientAppUsed eq '([^']*)'")
_SINCE = re.compile(r"createdDateTime ge (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)")
_ALLOWED = re.compile(
    r"^\(?\s*(clientAppUsed eq '[^']*'(\s+or\s+clientAppUsed eq '[^']*')*)\s*\)?"
    r"\s+and\s+createdDateTime ge \S+$"
)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def signin_record(
    *,
    upn: str,
    user_id: str,
    at: datetime,
    ip: str = "203.0.113.10",
    app: str = "Office 365 Exchange Online",
    error_code: int = 0,
    client_app: str = "Authenticated SMTP",
) -> dict[str, Any]:
    """A v1.0 `signIn` resource as Graph returns it (fields the research note lists)."""
    failure = None if error_code == 0 else "Error validating credentials due to invalid password."
    return {
        "id": str(uuid.uuid4()),
        "createdDateTime": _iso(at),
        "userDisplayName": upn.split("@")[0],
        "userPrincipalName": upn.lower(),
        "userId": user_id,
        "appId": "00000002-0000-0ff1-ce00-000000000000",
        "appDisplayName": app,
        "ipAddress": ip,
        "clientAppUsed": client_app,
        "correlationId": str(uuid.uuid4()),
        "conditionalAccessStatus": "notApplied",
        "isInteractive": True,
        "resourceDisplayName": "Office 365 Exchange Online",
        "resourceId": "00000002-0000-0ff1-ce00-000000000000",
        "status": {"errorCode": error_code, "failureReason": failure, "additionalDetails": None},
        "location": {"city": "Redmond", "state": "Washington", "countryOrRegion": "US"},
        "appliedConditionalAccessPolicies": [],
    }


@dataclass(frozen=True, slots=True)
class GraphRequest:
    path: str
    query: dict[str, list[str]]
    authorization: str | None


def _error(code: str, message: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    rid = str(uuid.uuid4())
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": now, "request-id": rid, "client-request-id": rid},
        }
    }


class GraphEmulator:
    """`with GraphEmulator(token="t") as graph: graph.signins.append(...); graph.url`."""

    def __init__(self, *, token: str | None = None) -> None:
        self.token = token
        self.signins: list[dict[str, Any]] = []
        self.requests: list[GraphRequest] = []
        self.mode: str | None = None
        self.throttle = 0
        self.retry_after = "0"
        self.broken_page: int | None = None
        self.foreign_link = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add_signin(self, **kwargs: Any) -> dict[str, Any]:
        record = signin_record(**kwargs)
        with self._lock:
            self.signins.append(record)
        return record

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Graph emulator is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- answering ------------------------------------------------------------------------

    def _answer(self, path: str, query: str, auth: str | None) -> tuple[int, dict[str, str], bytes]:
        args = parse_qs(query, keep_blank_values=True)
        with self._lock:
            self.requests.append(GraphRequest(path, args, auth))
            if self.token is not None and auth != f"Bearer {self.token}":
                body = _error("InvalidAuthenticationToken", "Access token validation failure.")
                return 401, {}, json.dumps(body).encode()
            if path.rstrip("/").lower() != "/v1.0/auditlogs/signins":
                return 404, {}, json.dumps(_error("NotFound", "Resource not found")).encode()
            if self.throttle > 0:
                self.throttle -= 1
                body = _error("TooManyRequests", "Too many requests.")
                return 429, {"Retry-After": self.retry_after}, json.dumps(body).encode()
            if self.mode == "licence":
                body = _error(
                    "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                    "Neither tenant is B2C or tenant doesn't have premium license",
                )
                return 403, {}, json.dumps(body).encode()
            if self.mode == "permission":
                body = _error(
                    "Authentication_MSGraphPermissionMissing",
                    "Calling principal does not have required MSGraph permissions "
                    "AuditLog.Read.All",
                )
                return 403, {}, json.dumps(body).encode()
            text = (args.get("$filter") or [""])[0]
            if not _ALLOWED.match(text.strip()):
                body = _error("BadRequest", f"Invalid filter clause: {text!r}")
                return 400, {}, json.dumps(body).encode()
            apps = {a.lower() for a in _APP.findall(text)}
            found = _SINCE.search(text)
            if found is None:
                body = _error("BadRequest", "Invalid createdDateTime value")
                return 400, {}, json.dumps(body).encode()
            since = datetime.fromisoformat(found.group(1).replace("Z", "+00:00"))
            try:
                top = min(int((args.get("$top") or ["1000"])[0]), 1000)
                skip = int((args.get("$skiptoken") or ["0"])[0])
            except ValueError:
                return 400, {}, json.dumps(_error("BadRequest", "Invalid $top")).encode()
            rows = sorted(
                (
                    r
                    for r in self.signins
                    if str(r.get("clientAppUsed", "")).lower() in apps
                    and datetime.fromisoformat(r["createdDateTime"][:26] + "+00:00") >= since
                ),
                key=lambda r: str(r["createdDateTime"]),
                reverse=True,
            )
            page = rows[skip : skip + top]
            number = skip // max(top, 1) + 1
            document: dict[str, Any] = {
                "@odata.context": f"{self.url}/v1.0/$metadata#auditLogs/signIns",
                "value": page,
            }
            if skip + top < len(rows):
                link_query = urlencode(
                    {"$filter": text, "$top": str(top), "$skiptoken": str(skip + top)}
                )
                host = "https://graph.example.invalid" if self.foreign_link else self.url
                document["@odata.nextLink"] = f"{host}/v1.0/auditLogs/signIns?{link_query}"
            data = json.dumps(document).encode()
            if self.broken_page == number:
                data = data[: len(data) // 2]
            return 200, {"Content-Type": "application/json"}, data

    def start(self) -> GraphEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                status, headers, body = emulator._answer(
                    parts.path, parts.query, self.headers.get("Authorization")
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Type" not in headers:
                    self.send_header("Content-Type", "application/json")
                self.send_header("request-id", str(uuid.uuid4()))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05),
            name="graph-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> GraphEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
