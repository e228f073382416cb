"""`python -m devkit.devserver`: serve function_app's HTTP functions locally, unchanged.

For trying the confirmation page in a browser without Azure Functions Core Tools. Each request
becomes a real `azure.functions.HttpRequest` (built by
`auditor.functions.remediation.build_http_request`, so this module does not import
`azure.functions` itself), is routed by the functions' own route
templates under `/api/`, and the function's response is written back. A queue output
(`remediations`) is delivered to the queue-triggered function in a background thread, as the
host would. Timer functions are not run.

Development only: it binds to loopback and refuses anything else. `--as TOKEN-or-file` adds
`Authorization: Bearer <token>` to requests that carry none, standing in for the sign-in a
browser would do in front of a real deployment.

Because it signs requests in on the browser's behalf, any page the browser visits could make
it act: so it answers only requests whose `Host` is its own loopback address (no DNS
rebinding), refuses any request whose `Origin` is not its own origin or that the browser marks
`Sec-Fetch-Site: cross-site`, and marks every request it injected the token into
(`auditor.web.api.BROWSER_HEADER`), so the API requires the page's anti-forgery token for it.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import re
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from auditor.cli.options import read_token
from auditor.functions import remediation as remediation_functions
from auditor.web.api import BROWSER_HEADER

__all__ = ["DevServer", "Route", "main"]

log = logging.getLogger("devkit.devserver")
MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    function: Any  # the user function
    has_queue_output: bool


def _compile(template: str) -> re.Pattern[str]:
    parts = []
    for piece in re.split(r"(\{[^}]+\})", template.strip("/")):
        if piece.startswith("{") and piece.endswith("}"):
            name = piece[1:-1].split(":")[0].rstrip("?")
            parts.append(f"(?P<{name}>[^/]+)")
        else:
            parts.append(re.escape(piece))
    return re.compile("^/api/" + "".join(parts) + "$")


def routes_of(functions: Iterable[Any]) -> tuple[list[Route], Any]:
    """HTTP routes and the queue-triggered function (or None) of indexed functions."""
    routes: list[Route] = []
    queue_function = None
    for f in functions:
        trigger = f.get_trigger()
        kind = type(trigger).__name__
        if kind == "HttpTrigger":
            methods = frozenset(
                str(getattr(m, "value", m)).upper() for m in (trigger.methods or ["GET", "POST"])
            )
            bindings = {b.type for b in f.get_bindings()}
            routes.append(
                Route(
                    f.get_function_name(),
                    _compile(trigger.route or f.get_function_name()),
                    methods,
                    f.get_user_function(),
                    "queue" in bindings,
                )
            )
        elif kind == "QueueTrigger":
            queue_function = f.get_user_function()
    return routes, queue_function


class DevServer:
    """A threading HTTP server on loopback that dispatches to function_app's functions."""

    def __init__(
        self,
        functions: Iterable[Any],
        *,
        host: str = "127.0.0.1",
        port: int = 7071,
        inject_token: str | None = None,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the dev server binds to loopback only, not {host!r}")
        self.routes, self.queue_function = routes_of(functions)
        self.inject_token = inject_token
        self.queue_threads: list[threading.Thread] = []
        self.refused: list[str] = []  # why each refused request was refused (for tests)
        server = ThreadingHTTPServer((host, port), _handler(self))
        server.daemon_threads = True
        self.server = server
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _hosts(self) -> set[str]:
        host, port = self.server.server_address[:2]
        return {f"{host!s}:{port}", f"localhost:{port}"}

    def refusal(self, headers: dict[str, str]) -> str | None:
        """Why a request is refused before dispatch (foreign Host or Origin), or None."""
        lower = {k.lower(): v.strip() for k, v in headers.items()}
        if lower.get("host", "").lower() not in self._hosts():
            return "unexpected Host: the dev server answers only to its own loopback address"
        origin = lower.get("origin")
        site = lower.get("sec-fetch-site", "").lower()
        if origin == "null":
            # The page's `no-referrer` policy makes the browser send `Origin: null` for its own
            # form; so does any opaque origin. Only the browser's own same-origin mark tells.
            if site != "same-origin":
                return "request from an opaque origin refused"
        elif origin is not None and origin.lower() not in {f"http://{h}" for h in self._hosts()}:
            return "cross-origin request refused"
        if site in ("cross-site", "same-site"):
            return "cross-site request refused"
        return None

    def start(self) -> DevServer:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)
        for thread in self.queue_threads:
            thread.join(timeout=60)

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_queue(self, timeout: float = 60.0) -> None:
        for thread in list(self.queue_threads):
            thread.join(timeout=timeout)

    def deliver(self, message: str) -> None:
        """Hand a queue message to the queue-triggered function, as the host would."""
        if self.queue_function is None:
            log.error("no queue-triggered function to deliver %r to", message)
            return

        def run() -> None:
            try:
                self.queue_function(remediation_functions.build_queue_message(message))
            except Exception:  # the host would log and retry; we log
                log.exception("queue function failed for %r", message)

        thread = threading.Thread(target=run, daemon=True)
        self.queue_threads.append(thread)
        thread.start()

    def dispatch(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        for route in self.routes:
            match = route.pattern.match(parts.path)
            if match is None:
                continue
            if method not in route.methods:
                return 405, {"Allow": ", ".join(sorted(route.methods))}, b"method not allowed"
            refused = self.refusal(headers)
            if refused is not None:
                self.refused.append(refused)
                return 403, {"Content-Type": "text/plain"}, refused.encode()
            headers = {k: v for k, v in headers.items() if k.lower() != BROWSER_HEADER}
            if self.inject_token and not any(k.lower() == "authorization" for k in headers):
                # Signed in on the browser's behalf: the API then wants the anti-forgery token.
                headers = {
                    **headers,
                    "Authorization": f"Bearer {self.inject_token}",
                    BROWSER_HEADER: "1",
                }
            request = remediation_functions.build_http_request(
                method,
                f"{self.url}{raw_path}",
                headers=headers,
                body=body,
                route_params=dict(match.groupdict()),
                params=dict(parse_qsl(parts.query)),
            )
            if route.has_queue_output:
                slot = remediation_functions.queue_slot()
                response = route.function(request, slot)
                if slot.value is not None:
                    self.deliver(slot.value)
            else:
                response = route.function(request)
            out_headers = dict(response.headers)
            out_headers.setdefault("Content-Type", response.mimetype or "text/plain")
            return response.status_code, out_headers, response.get_body()
        return 404, {"Content-Type": "text/plain"}, b"no function serves this path"


def _handler(dev: DevServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items()}
            try:
                status, out_headers, payload = dev.dispatch(self.command, self.path, headers, body)
            except Exception:
                log.exception("function failed for %s %s", self.command, self.path)
                status, out_headers, payload = 500, {"Content-Type": "text/plain"}, b"error"
            self.send_response(status)
            out_headers = {"X-Content-Type-Options": "nosniff", **out_headers}
            for key, value in out_headers.items():
                if key.lower() not in ("content-length", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.devserver",
        description="Serve function_app's HTTP functions on loopback (development only).",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address (default %(default)s)"
    )
    parser.add_argument("--port", type=int, default=7071, help="port (default %(default)s)")
    parser.add_argument(
        "--as",
        dest="token",
        help="bearer token (or @file) added to requests without an Authorization header",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.path.insert(0, str(Path.cwd()))
    import function_app

    token = read_token(args.token) if args.token else None
    try:
        server = DevServer(
            function_app.app.get_functions(), host=args.host, port=args.port, inject_token=token
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"serving function_app on {server.url}/api/ (Ctrl+C stops)", flush=True)
    server.start()
    try:
        assert server.thread is not None
        while server.thread.is_alive():
            server.thread.join(timeout=1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
