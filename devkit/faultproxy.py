"""A fault-injecting HTTP proxy in front of Azurite: the crash and storage-fault harness.

Used by the tests only, never in production. It listens on 127.0.0.1, forwards every request
to the upstream (Azurite's Table endpoint) and counts write requests (POST, PUT, PATCH, MERGE,
DELETE; a `$batch` is one). A `Plan` says what to do at the N-th write:

- `kill_before`: SIGKILL the target process before the write is forwarded (it never lands);
- `kill_after`: forward it, then SIGKILL the target (it landed; nobody saw the answer);
- `lose`: forward it, then drop the connection without an answer (a lost response: the
  client's retry meets its own write: 409 / 412);
- `unavailable`: answer 503 without forwarding (a burst of throttling).

Only the standard library; the counters and the log of writes are what tests assert on.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "Plan", "WRITE_METHODS"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


@dataclass
class Plan:
    """What to do at which write (1-based numbers, counted since the plan was set)."""

    kill_before: int | None = None
    kill_after: int | None = None
    lose: set[int] = field(default_factory=set)
    unavailable: set[int] = field(default_factory=set)
    target_pid: int | None = None
    # fragment -> (action, how many times): the next writes whose path or body contains it
    on_path: dict[str, tuple[str, int]] = field(default_factory=dict)


class FaultProxy:
    """`with FaultProxy(upstream_url) as proxy: ... proxy.url ... proxy.writes`."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.plan = Plan()
        self.writes = 0
        self.log: list[tuple[int, str, str, str]] = []  # (number, method, path, what happened)
        self.killed = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def connection_string(self, azurite: str) -> str:
        """Azurite's connection string with its table endpoint pointed at the proxy."""
        parts = []
        for part in azurite.split(";"):
            if part.startswith("TableEndpoint="):
                path = urlsplit(part.partition("=")[2]).path
                part = f"TableEndpoint=http://127.0.0.1:{self.port}{path}"
            parts.append(part)
        return ";".join(parts)

    def reset(self, plan: Plan | None = None) -> None:
        with self._lock:
            self.plan = plan or Plan()
            self.writes = 0
            self.log = []
            self.killed = False

    def _decide(self, method: str, path: str, body: bytes = b"") -> tuple[int, str]:
        with self._lock:
            if method not in WRITE_METHODS or self.killed:
                return 0, "dead" if self.killed and method in WRITE_METHODS else "pass"
            self.writes += 1
            number, plan = self.writes, self.plan
            if plan.kill_before == number:
                action = "kill_before"
            elif plan.kill_after == number:
                action = "kill_after"
            elif number in plan.lose:
                action = "lose"
            elif number in plan.unavailable:
                action = "unavailable"
            else:
                action = "pass"
                for fragment, (what, times) in list(plan.on_path.items()):
                    if (fragment in path or fragment.encode() in body) and times > 0:
                        action = what
                        plan.on_path[fragment] = (what, times - 1)
                        break
            self.log.append((number, method, path.split("?")[0], action))
            return number, action

    def _kill(self) -> None:
        with self._lock:
            pid, self.killed = self.plan.target_pid, True
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, Any, bytes]:
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP}
            headers["Host"] = handler.headers.get("Host", f"127.0.0.1:{self.upstream_port}")
            headers["Content-Length"] = str(len(body))
            connection.request(handler.command, handler.path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                _, action = proxy._decide(self.command, self.path, body)
                if action == "dead":  # the target was killed: its last requests go nowhere
                    self.close_connection = True
                    return
                if action == "kill_before":
                    proxy._kill()
                    self.close_connection = True
                    return
                if action == "unavailable":
                    payload = b'{"odata.error":{"code":"ServerBusy","message":{"value":"busy"}}}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                status, headers, payload = proxy._forward(self, body)
                if action in ("kill_after", "lose"):
                    if action == "kill_after":
                        proxy._kill()
                    self.close_connection = True
                    return
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_MERGE = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05), name="faultproxy", daemon=True
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

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
