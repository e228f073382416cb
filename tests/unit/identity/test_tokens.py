"""Token providers: static, renewal before expiry on an injected clock, msal against a local
token endpoint over real HTTP (certificate and secret), azure-identity with an injected
credential, and the choice made from Settings."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from auditor.app.settings import SETTINGS, Settings
from auditor.app.wiring import credentials
from auditor.core.errors import CollectionFailed, ConfigError
from auditor.exchange.client import exchange_scope
from auditor.identity.tokens import (
    AzureIdentityTokens,
    CachedTokens,
    MsalAppTokens,
    StaticToken,
    token_provider,
)

TENANT = "fabrikam.onmicrosoft.com"
SECRET = "s3cret-value-never-logged"
SCOPE = "https://outlook.office365.com/.default"


@dataclass
class TokenEndpoint:
    """A local Entra ID token endpoint: OIDC discovery + client-credentials grant."""

    port: int = 0
    posts: list[dict[str, list[str]]] = field(default_factory=list)
    expires_in: int = 3600
    fail: bool = False


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    state = TokenEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            root = f"https://login.microsoftonline.com/{TENANT}"
            if self.path.startswith("/common/discovery/instance"):
                hosts = ["login.microsoftonline.com", "login.windows.net", "sts.windows.net"]
                self._json(
                    200,
                    {
                        "tenant_discovery_endpoint": f"{root}/v2.0/.well-known/"
                        "openid-configuration",
                        "api-version": "1.1",
                        "metadata": [
                            {
                                "preferred_network": hosts[0],
                                "preferred_cache": hosts[1],
                                "aliases": hosts,
                            }
                        ],
                    },
                )
                return
            if self.path.startswith(f"/{TENANT}/v2.0/.well-known/openid-configuration"):
                self._json(
                    200,
                    {
                        "token_endpoint": f"{root}/oauth2/v2.0/token",
                        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                        "issuer": f"https://login.microsoftonline.com/{TENANT}/v2.0",
                    },
                )
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            state.posts.append(form)
            if state.fail:
                self._json(
                    401,
                    {
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid "
                        "client secret provided.\r\nTrace ID: 1",
                    },
                )
                return
            self._json(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": state.expires_in,
                    "access_token": f"token-{len(state.posts)}",
                },
            )

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class ToLoopback(httpx.BaseTransport):
    """Sends requests for the public sign-in host to the local endpoint instead."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == "login.microsoftonline.com"
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port)
        return self._inner.handle_request(request)


def loopback_client(endpoint: TokenEndpoint) -> httpx.Client:
    return httpx.Client(transport=ToLoopback(endpoint.port), timeout=5)


def test_static_token() -> None:
    provider = StaticToken(" abc ")
    assert provider.get_token() == "abc"
    assert provider.get_token(force_refresh=True) == "abc"
    assert "abc" not in repr(provider)
    with pytest.raises(ConfigError, match="EXO_ACCESS_TOKEN"):
        StaticToken("  ")


def test_cached_tokens_renew_before_expiry_on_the_injected_clock() -> None:
    now = [1000.0]
    issued: list[bool] = []

    def acquire(renew: bool) -> tuple[str, float]:
        issued.append(renew)
        return f"t{len(issued)}", now[0] + 3600

    provider = CachedTokens(acquire, clock=lambda: now[0], renew_before=300)
    assert provider.get_token() == "t1"
    now[0] += 3299  # 301 s before expiry: still good
    assert provider.get_token() == "t1"
    now[0] += 2  # 299 s before expiry: renewed ahead of time
    assert provider.get_token() == "t2"
    assert provider.get_token(force_refresh=True) == "t3"
    assert issued == [False, True, True]


def test_msal_secret_against_a_local_token_endpoint(
    endpoint: TokenEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    now = [5000.0]
    with loopback_client(endpoint) as http:
        provider = MsalAppTokens(
            tenant=TENANT,
            client_id="11111111-2222-3333-4444-555555555555",
            client_credential=SECRET,
            scope=SCOPE,
            http=http,
            clock=lambda: now[0],
        )
        assert provider.get_token() == "token-1"
        assert provider.get_token() == "token-1"  # cached: no second request
        assert len(endpoint.posts) == 1
        form = endpoint.posts[0]
        assert form["grant_type"] == ["client_credentials"]
        assert form["client_id"] == ["11111111-2222-3333-4444-555555555555"]
        assert form["scope"] == [SCOPE]
        assert form["client_secret"] == [SECRET]
        now[0] += 3600 - 299  # inside the renewal window
        assert provider.get_token() == "token-2"
        assert provider.get_token(force_refresh=True) == "token-3"
        assert len(endpoint.posts) == 3
    assert SECRET not in caplog.text
    assert "token-1" not in caplog.text


def test_msal_failure_is_clear_and_leaks_no_secret(endpoint: TokenEndpoint) -> None:
    endpoint.fail = True
    with loopback_client(endpoint) as http:
        provider = MsalAppTokens(
            tenant=TENANT, client_id="app", client_credential=SECRET, scope=SCOPE, http=http
        )
        with pytest.raises(CollectionFailed) as caught:
            provider.get_token()
    message = str(caught.value)
    assert "invalid_client" in message and "AADSTS7000215" in message
    assert SECRET not in message


def _certificate(tmp_path: Path) -> tuple[Path, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auditor-test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "app.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        + certificate.public_bytes(serialization.Encoding.PEM)
    )
    return path, certificate.fingerprint(hashes.SHA1()).hex()  # noqa: S303


def test_msal_certificate_from_settings(endpoint: TokenEndpoint, tmp_path: Path) -> None:
    path, thumbprint = _certificate(tmp_path)
    settings = Settings.from_env(
        {"EXO_TENANT": TENANT, "EXO_CLIENT_ID": "app-id", "EXO_CERTIFICATE_PATH": str(path)}
    )
    with loopback_client(endpoint) as http:
        provider = token_provider(credentials(settings), SCOPE, http=http)
        assert isinstance(provider, MsalAppTokens)
        assert provider.get_token() == "token-1"
    form = endpoint.posts[0]
    assert form["client_assertion_type"] == [
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ]
    header = form["client_assertion"][0].split(".")[0]
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    x5t = base64.urlsafe_b64decode(decoded["x5t"] + "=" * (-len(decoded["x5t"]) % 4)).hex()
    assert x5t == thumbprint
    assert "client_secret" not in form


def test_a_bad_certificate_file_is_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    for path, needle in (
        (bad, "private key and the certificate"),
        (tmp_path / "no.pem", "no such"),
    ):
        settings = Settings.from_env(
            {"EXO_TENANT": TENANT, "EXO_CLIENT_ID": "a", "EXO_CERTIFICATE_PATH": str(path)}
        )
        with pytest.raises(ConfigError, match=needle):
            token_provider(credentials(settings), SCOPE)


@dataclass
class FakeAccessToken:
    token: str
    expires_on: int


class IssuingCredential:
    """A TokenCredential of our own (azure-identity's interface), counting instances."""

    created = 0

    def __init__(self) -> None:
        IssuingCredential.created += 1
        self.number = IssuingCredential.created

    def get_token(self, *scopes: str, **kwargs: Any) -> FakeAccessToken:
        assert scopes == (SCOPE,)
        return FakeAccessToken(f"mi-{self.number}", expires_on=10_000)


def test_azure_identity_tokens_cache_renew_and_rebuild_on_force() -> None:
    IssuingCredential.created = 0
    now = [1000.0]
    provider = AzureIdentityTokens(SCOPE, IssuingCredential, clock=lambda: now[0])
    assert provider.get_token() == "mi-1"
    assert provider.get_token() == "mi-1"
    assert provider.get_token(force_refresh=True) == "mi-2"
    now[0] = 9800.0  # within five minutes of expires_on
    assert provider.get_token() == "mi-3"


def test_azure_identity_failure_is_a_collection_failure() -> None:
    class Broken:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise RuntimeError("ManagedIdentityCredential authentication unavailable")

    with pytest.raises(CollectionFailed, match="azure-identity: RuntimeError"):
        AzureIdentityTokens(SCOPE, Broken).get_token()


def test_token_provider_chooses_from_settings() -> None:
    static = token_provider(credentials(Settings.from_env({"EXO_ACCESS_TOKEN": "x"})), SCOPE)
    assert isinstance(static, StaticToken)
    home = token_provider(credentials(Settings.from_env({"AZURE_CLIENT_ID": "mi-client"})), SCOPE)
    assert isinstance(home, AzureIdentityTokens)  # nothing contacted until a token is asked
    with pytest.raises(ConfigError, match="EXO_CERTIFICATE_PATH"):
        token_provider(
            credentials(Settings.from_env({"EXO_TENANT": TENANT, "EXO_CLIENT_ID": "a"})), SCOPE
        )
    with pytest.raises(ConfigError, match="EXO_TENANT"):
        token_provider(
            credentials(Settings.from_env({"EXO_CLIENT_ID": "a", "EXO_CLIENT_SECRET": "b"})), SCOPE
        )
    secret = token_provider(
        credentials(
            Settings.from_env(
                {"EXO_TENANT": TENANT, "EXO_CLIENT_ID": "a", "EXO_CLIENT_SECRET": "b"}
            )
        ),
        SCOPE,
    )
    assert isinstance(secret, MsalAppTokens)


def test_exchange_scope_and_settings_are_documented() -> None:
    assert (
        exchange_scope("https://outlook.office365.us/") == "https://outlook.office365.us/.default"
    )
    settings = Settings.from_env({"EXO_CLIENT_SECRET": SECRET, "EXO_CERTIFICATE_PASSWORD": SECRET})
    assert SECRET not in repr(settings)
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    names = {s.name: s for s in SETTINGS}
    for name in (
        "EXO_CLIENT_ID",
        "EXO_CERTIFICATE_PATH",
        "EXO_CERTIFICATE_PASSWORD",
        "EXO_CLIENT_SECRET",
        "EXO_AUTHORITY_HOST",
        "AZURE_CLIENT_ID",
    ):
        assert name in names
        assert f"| `{name}` |" in readme
    assert names["EXO_CLIENT_SECRET"].secret and names["EXO_CERTIFICATE_PASSWORD"].secret
