"""Test identity provider: RSA keys generated here, a JWKS served by a local HTTP server, and
Entra-shaped access tokens (v1 and v2) signed with them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

TENANT = "11111111-2222-3333-4444-555555555555"
OTHER_TENANT = "99999999-2222-3333-4444-555555555555"
AUDIENCE = "api://smtp-auth-auditor"
ROLE = "Remediation.Approve"
APPROVER_OID = "aaaaaaaa-0000-0000-0000-000000000001"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    data.update(kid=kid, use="sig", alg="RS256")
    return data


class Issuer:
    """Signs tokens with `key` (kid `k1`); the JWKS server publishes `published` keys."""

    def __init__(self) -> None:
        self.key = new_key()
        self.kid = "k1"
        self.published: list[dict[str, Any]] = [jwk(self.key, self.kid)]
        self.hits = 0
        self.url = ""
        self.status = 200  # what the JWKS endpoint answers (500: a failing endpoint)
        self.gate = threading.Event()  # cleared: requests wait here (a slow endpoint)
        self.gate.set()

    def token(
        self,
        *,
        tid: str = TENANT,
        aud: str = AUDIENCE,
        roles: list[str] | None = None,
        oid: str = APPROVER_OID,
        name: str = "Ada Approver",
        version: str = "2.0",
        lifetime: int = 600,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
        **extra: Any,
    ) -> str:
        now = int(time.time())
        iss = (
            f"https://login.microsoftonline.com/{tid}/v2.0"
            if version == "2.0"
            else f"https://sts.windows.net/{tid}/"
        )
        claims: dict[str, Any] = {
            "iss": iss,
            "aud": aud,
            "tid": tid,
            "oid": oid,
            "name": name,
            "roles": [ROLE] if roles is None else roles,
            "iat": now - 5,
            "nbf": now - 5,
            "exp": now + lifetime,
            "ver": version,
            **extra,
        }
        return jwt.encode(
            claims, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid}
        )


@contextmanager
def jwks_server(issuer: Issuer) -> Iterator[Issuer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issuer.hits += 1
            issuer.gate.wait(timeout=20)
            if issuer.status != 200:
                body = b'{"error": "upstream trouble at https://internal.example/secret"}'
            else:
                body = json.dumps({"keys": issuer.published}).encode()
            self.send_response(issuer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}/{TENANT}/discovery/v2.0/keys"
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
