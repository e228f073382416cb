"""A throwaway identity provider for the demo: one ephemeral RSA key, its JWKS on loopback, and
Entra-shaped (v2) access tokens for a demo approver.

The auditor validates approver tokens exactly as in production (signature via the JWKS,
issuer, audience, tenant, expiry, app role); the demo only points `APPROVER_JWKS_URL` at this
server. The key lives in memory for the length of the demo; nothing here is used in production.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["DemoIdentity"]


class DemoIdentity:
    """`with DemoIdentity() as idp: idp.jwks_url, idp.token(...)`."""

    tenant = "de000000-0000-4000-8000-000000000001"
    audience = "api://smtp-auth-auditor-demo"
    role = "Remediation.Approve"

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = uuid.uuid4().hex[:12]
        public: dict[str, Any] = json.loads(
            jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key())
        )
        public.update(kid=self._kid, use="sig", alg="RS256")
        self._jwks = json.dumps({"keys": [public]}).encode()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def jwks_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the demo identity provider is not running")
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/{self.tenant}/discovery/v2.0/keys"

    def token(self, *, name: str, object_id: str, lifetime: int = 3600) -> str:
        """An app-role access token for the auditor's API, as Entra would issue it."""
        now = int(time.time())
        claims = {
            "iss": f"https://login.microsoftonline.com/{self.tenant}/v2.0",
            "aud": self.audience,
            "tid": self.tenant,
            "oid": object_id,
            "name": name,
            "roles": [self.role],
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "ver": "2.0",
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})

    def __enter__(self) -> DemoIdentity:
        body = self._jwks

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
