"""The emulator as a real HTTP server on loopback: `Emulator(tenant, token=...)`.

```python
with Emulator(generate_tenant(500), token="t", latency=0.0) as emu:
    emu.base_url, emu.tenant_id, emu.domain     # where and whom to call
    emu.state.cas[guid]["SmtpClientAuthenticationDisabled"] = True   # change between runs
    emu.faults.add("throttle", cmdlet="Get-CASMailbox", page=2, retry_after=0.05)
    emu.tokens.discard("t")                     # the token "expires"
    emu.requests                                # what was received (Authorization redacted)
```

Where the real service varies, constructor options switch it (`behaviour.Behaviour`): by default
pages carry the truncation warning whenever a nextLink follows and nextLinks are bound to the
`connection-id` of the request that opened the listing; `denied=("Get-Mailbox",)` answers that
cmdlet with the RBAC 403 (NUL bytes labelled gzip); `redirects={"outlook.office365.com":
"emea04.outlook.office365.com"}` answers requests whose Host is the key with a 302 to the value
(same port); `replication_delay=3.0` makes reads show the old value for 3 s after a write;
`rate_limit=(100, 60.0)` announces and enforces a request budget (`Rate-Limit-*`, 429);
`filter_latency=0.1` makes every page of a `-Filter` listing (`opath`) 0.1 s slower.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from devkit.emulator.auditlog import AuditLog
from devkit.emulator.behaviour import Behaviour, RateLimit
from devkit.emulator.endpoint import Endpoint
from devkit.emulator.errors import Reply, error_body
from devkit.emulator.faults import Faults
from devkit.tenantgen import Tenant

__all__ = ["Emulator", "RequestRecord", "load_tenant"]

_MAX_BODY = 4 * 1024 * 1024
_ROUTE = "/adminapi/beta/"


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it; the bearer token is never kept."""

    path: str
    query: str
    headers: dict[str, str]
    body: Any
    status: int
    cmdlet: str | None
    page: int


def load_tenant(path: str | Path) -> Tenant:
    """A tenant from a JSON file shaped like a snapshot (`transport_config`, `cas_mailboxes`,
    `mailboxes`) plus optional `domain`; records are keyed by their `Guid`."""
    document = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object")
    transport = document.get("transport_config") or {}
    org = transport.get("SmtpClientAuthenticationDisabled", False)
    if not isinstance(org, bool):
        raise ValueError(
            f"{path}: transport_config.SmtpClientAuthenticationDisabled must be true or false"
        )

    def keyed(name: str) -> dict[str, dict[str, Any]]:
        items = document.get(name) or []
        items = items if isinstance(items, list) else [items]
        out: dict[str, dict[str, Any]] = {}
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("Guid"), str):
                raise ValueError(f"{path}: {name}[{index}] needs a string Guid")
            out[item["Guid"].lower()] = {k: v for k, v in item.items() if "@" not in k}
        return out

    cas, mailboxes = keyed("cas_mailboxes"), keyed("mailboxes")
    domain = document.get("domain") or document.get("tenant") or "contoso.onmicrosoft.com"
    return Tenant(domain=str(domain), org_disabled=org, cas=cas, mailboxes=mailboxes)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: Emulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # an idle keep-alive connection does not hold a thread forever
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stall

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._send(Reply(405, error_body("MethodNotAllowed", "Use POST.", "Use POST.", "")))

    def parse_request(self) -> bool:
        self.arrived = time.monotonic()  # the request line is in: the page's clock starts
        return super().parse_request()

    def do_POST(self) -> None:
        arrived = getattr(self, "arrived", time.monotonic())
        emu = self.server.emulator
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._send(Reply(413, error_body("RequestTooLarge", "Too large.", "Too large.", "")))
            return
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply, cmdlet, page = emu.handle(parts.path, parts.query, headers, body)
        emu.record(
            RequestRecord(
                path=parts.path,
                query=unquote(parts.query),
                headers={
                    k: ("<redacted>" if k == "authorization" else v) for k, v in headers.items()
                },
                body=_json_or_none(body),
                status=reply.status,
                cmdlet=cmdlet,
                page=page,
            )
        )
        payload = reply.payload()
        latency = emu.latency + (emu.filter_latency if reply.filtered else 0.0)
        if latency and parts.path.startswith(_ROUTE):
            # `latency` is the page's response time as the client sees it, the emulator's own
            # processing included: an emulated service time, not extra work on top of Python's.
            # A page of a `-Filter` listing may cost `filter_latency` more
            # (docs/exchange-protocol.md, "Sharded reads").
            time.sleep(max(0.0, latency - (time.monotonic() - arrived)))
        self._send(reply, client_request_id=headers.get("client-request-id"), payload=payload)

    def _send(
        self, reply: Reply, client_request_id: str | None = None, payload: bytes | None = None
    ) -> None:
        payload = reply.payload() if payload is None else payload
        self.send_response(reply.status)
        if "Content-Type" not in reply.headers:
            self.send_header(
                "Content-Type", "application/json; odata.metadata=minimal; charset=utf-8"
            )
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("request-id", str(uuid.uuid4()))
        self.send_header("X-CalculatedBETarget", "AM0PR01MB1234.eurprd01.prod.outlook.com")
        if client_request_id:
            self.send_header("client-request-id", client_request_id)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.drop:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.drop:
            self.wfile.write(payload[: max(1, len(payload) // 2)])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


class Emulator:
    """A local Exchange Online admin endpoint serving `tenant` on 127.0.0.1."""

    def __init__(
        self,
        tenant: Tenant,
        *,
        token: str | Iterable[str] = "emulator-token",  # noqa: S107 - a local emulator's token
        tenant_id: str | None = None,
        latency: float = 0.0,
        filter_latency: float = 0.0,
        port: int = 0,
        link_ttl: float = 1800.0,
        keep_requests: int = 10_000,
        page_warnings: bool = True,
        bind_links: bool = True,
        denied: Iterable[str] = (),
        redirects: Mapping[str, str] | None = None,
        replication_delay: float = 0.0,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        self.tokens: set[str] = {token} if isinstance(token, str) else set(token)
        self.tenant_id = tenant_id or str(uuid.uuid5(uuid.NAMESPACE_DNS, tenant.domain))
        self.latency = latency
        self.filter_latency = filter_latency  # extra seconds per page of a `-Filter` listing
        self.faults = Faults()
        self.requests: deque[RequestRecord] = deque(maxlen=keep_requests)
        self.behaviour = Behaviour(
            page_warnings=page_warnings,
            bind_links=bind_links,
            link_ttl=link_ttl,
            denied=frozenset(denied),
            redirects={k.lower(): v.lower() for k, v in (redirects or {}).items()},
            replication_delay=replication_delay,
            rate_limit=rate_limit,
        )
        self._limit = None if rate_limit is None else RateLimit(*rate_limit)
        self._endpoint = Endpoint(
            tenant, tenant_id=self.tenant_id, faults=self.faults, behaviour=self.behaviour
        )
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> Tenant:
        return self._endpoint.state

    @property
    def domain(self) -> str:
        return self._endpoint.state.domain

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def auditlog(self) -> AuditLog:
        """The tenant's unified audit log (auditlog.py): lag, actor, clock, records."""
        return self._endpoint.auditlog

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Emulator:
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, entry: RequestRecord) -> None:
        self.requests.append(entry)

    def handle(
        self, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[Reply, str | None, int]:
        """Route one request: redirect, rate limit, bearer check, tenant, then InvokeCommand
        or $batch."""
        if not path.startswith(_ROUTE):
            return Reply(404, error_body("NotFound", "No such resource.", path, "")), None, 0
        host = headers.get("host", f"127.0.0.1:{self.port}")
        name = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else host
        regional = self.behaviour.redirects.get(name)
        if regional is not None:
            location = f"http://{regional}:{self.port}{path}" + (f"?{query}" if query else "")
            return Reply(302, raw=b"", headers={"Location": location}), None, 0
        if self._limit is None:
            reply, cmdlet, page = self._handle(path, query, headers, body, host)
            return reply, cmdlet, page
        allowed, remaining, reset = self._limit.take()
        limits = {"Rate-Limit-Remaining": str(remaining), "Rate-Limit-Reset": f"{reset:.3f}"}
        if not allowed:
            message = "You have reached the maximum number of concurrent requests per tenant."
            throttled = error_body(
                "TooManyRequests",
                message,
                message,
                "Microsoft.Exchange.Admin.OData.Core.ThrottlingException",
            )
            return Reply(429, throttled, {**limits, "Retry-After": f"{reset:.3f}"}), None, 0
        reply, cmdlet, page = self._handle(path, query, headers, body, host)
        reply.headers.update(limits)
        return reply, cmdlet, page

    def _handle(
        self, path: str, query: str, headers: dict[str, str], body: bytes, host: str
    ) -> tuple[Reply, str | None, int]:
        tenant, _, action = path[len(_ROUTE) :].partition("/")
        tenant = unquote(tenant)
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in self.tokens:
            challenge = (
                'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
                'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
                'error="invalid_token"'
            )
            body_ = error_body(
                "Unauthorized",
                "The token is missing, invalid or expired.",
                "invalid_token",
                "Unauthorized",
            )
            return Reply(401, body_, {"WWW-Authenticate": challenge}), None, 0
        if tenant.lower() not in (self.tenant_id.lower(), self.domain.lower()):
            message = f"Tenant '{tenant}' is not served here."
            return Reply(404, error_body("NotFound", message, message, "")), None, 0
        base = f"http://{host}"
        if action == "InvokeCommand":
            return self._endpoint.invoke(
                tenant=tenant, query=query, headers=headers, body=body, base=base
            )
        if action == "$batch":
            return self._batch(tenant, headers, body, base), "$batch", 0
        return Reply(404, error_body("NotFound", "No such resource.", path, "")), None, 0

    def _batch(self, tenant: str, headers: dict[str, str], body: bytes, base: str) -> Reply:
        """`$batch`: up to 10 InvokeCommand requests, answered in order with per-item status."""
        try:
            document = json.loads(body)
            items = document["requests"]
            if not isinstance(items, list):
                raise TypeError("requests")
        except (ValueError, KeyError, TypeError):
            message = "The batch body needs a 'requests' array."
            return Reply(400, error_body("BadRequest", message, message, ""))
        if len(items) > 10:
            message = "A batch holds at most 10 requests."
            return Reply(400, error_body("BadRequest", message, message, ""))
        responses = []
        for item in items:
            item = item if isinstance(item, dict) else {}
            url = urlsplit(str(item.get("url", "")))
            extra = item.get("headers") or {}
            item_headers = {**headers, **{k.lower(): str(v) for k, v in extra.items()}}
            raw = json.dumps(item.get("body")).encode()
            if not url.path.endswith("/InvokeCommand"):
                reply = Reply(400, error_body("BadRequest", "Only InvokeCommand.", url.path, ""))
            else:
                reply, _, _ = self._endpoint.invoke(
                    tenant=tenant, query=url.query, headers=item_headers, body=raw, base=base
                )
            responses.append(
                {
                    "id": item.get("id"),
                    "status": reply.status,
                    "headers": reply.headers,
                    "body": reply.body if reply.raw is None else reply.raw.decode(errors="replace"),
                }
            )
        return Reply(200, {"responses": responses})
