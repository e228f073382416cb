"""A local HTTP receiver that records what is posted to it: stands in for Teams and Graph.

Used by the tests and the demo, never in production. It listens on 127.0.0.1 only, answers each
request from a script of replies (then a default reply), records method, path, headers and body,
and optionally writes each posted body to a folder so a person can read what would have been sent.
Only the standard library: it starts in milliseconds and needs nothing installed.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["Receiver", "Recorded", "Reply"]

_MAX_BODY = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class Receiver:
    """`with Receiver("teams") as r: ... r.url ... r.requests`."""

    def __init__(
        self, name: str = "receiver", *, default: Reply | None = None, out_dir: Path | None = None
    ) -> None:
        self.name = name
        self.default = default or Reply()
        self.out_dir = out_dir
        self.requests: list[Recorded] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"receiver {self.name} is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then with the default."""
        with self._lock:
            self._replies.extend(replies)

    def _handle(self, handler: BaseHTTPRequestHandler) -> Reply:
        length = min(int(handler.headers.get("Content-Length") or 0), _MAX_BODY)
        body = handler.rfile.read(length) if length else b""
        record = Recorded(
            method=handler.command,
            path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        with self._lock:
            self.requests.append(record)
            number = len(self.requests)
            reply = self._replies.popleft() if self._replies else self.default
        if self.out_dir is not None:
            self._write(number, record)
        return reply

    def _write(self, number: int, record: Recorded) -> None:
        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9]+", "-", record.path.split("?")[0]).strip("-") or "root"
        target = self.out_dir / f"{self.name}-{number:03d}-{stem[:60]}.json"
        try:
            text = json.dumps(record.json(), indent=2, ensure_ascii=False)
        except (ValueError, UnicodeDecodeError):
            text = record.body.decode("utf-8", "replace")
        target.write_text(text + "\n", encoding="utf-8")

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                reply = receiver._handle(self)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if reply.body:
                    self.wfile.write(reply.body)

            do_POST = do_GET = do_PUT = _any  # the names http.server calls

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep test output clean; the records are the log

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05),
            name=f"receiver-{self.name}",
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

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
