"""Exchange tokens behind one small interface: `TokenProvider.get_token(force_refresh=...)`.

- `StaticToken`: `EXO_ACCESS_TOKEN`, for emulators and break-glass (cannot be renewed).
- `AzureIdentityTokens`: azure-identity for the Function's home tenant: a user-assigned managed
  identity (`ManagedIdentityCredential(client_id=AZURE_CLIENT_ID)`) or `DefaultAzureCredential`
  (system-assigned identity in Azure, Azure CLI on a workstation).
- `MsalAppTokens`: an app registration with a certificate or a secret through msal's
  `ConfidentialClientApplication`, to audit another tenant (a managed identity only gets tokens
  for its own tenant).

Every provider caches its token and renews it `RENEW_BEFORE` seconds before it expires, on its
own (injectable) clock, so that a long paging run never sends an expired token. No token or
secret is ever logged or put in an exception message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from auditor.core.errors import CollectionFailed, ConfigError
from auditor.core.ports import TokenProvider
from auditor.identity.azure import azure_credential

__all__ = [
    "Credentials",
    "StaticToken",
    "CachedTokens",
    "AzureIdentityTokens",
    "MsalAppTokens",
    "MsalHttpClient",
    "token_provider",
    "RENEW_BEFORE",
]

log = logging.getLogger(__name__)

RENEW_BEFORE = 300.0  # seconds: renew a token five minutes before it expires
Clock = Callable[[], float]


class StaticToken:
    """A pre-acquired token. It cannot be renewed: after a 401 the caller gets the same one."""

    def __init__(self, token: str) -> None:
        if not token.strip():
            raise ConfigError("EXO_ACCESS_TOKEN", "is empty")
        self._token = token.strip()

    def get_token(self, *, force_refresh: bool = False) -> str:
        return self._token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


class CachedTokens:
    """Caches what `acquire()` returns — `(token, expires_at)` in epoch seconds — and renews it
    `renew_before` seconds ahead of expiry, or when forced. Thread-safe."""

    def __init__(
        self,
        acquire: Callable[[bool], tuple[str, float]],
        *,
        clock: Clock = time.time,
        renew_before: float = RENEW_BEFORE,
        name: str = "token",
    ) -> None:
        self._acquire = acquire
        self._clock = clock
        self._renew_before = renew_before
        self._name = name
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.acquired = 0  # how many times a token was fetched (for operators and tests)

    def get_token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            now = self._clock()
            if force_refresh or self._token is None or now >= self._expires_at - self._renew_before:
                token, expires_at = self._acquire(force_refresh or self._token is not None)
                self._token, self._expires_at = token, expires_at
                self.acquired += 1
                log.debug("%s: new token, expires in %.0f s", self._name, expires_at - now)
            return self._token

    def __repr__(self) -> str:
        return f"CachedTokens({self._name})"


class AzureIdentityTokens(CachedTokens):
    """azure-identity for the home tenant. `credential_factory` builds the credential (so tests
    can hand in their own `TokenCredential`); a forced refresh builds a fresh one, because
    azure-identity's credentials serve their own cached token otherwise."""

    def __init__(
        self,
        scope: str,
        credential_factory: Callable[[], Any],
        *,
        clock: Clock = time.time,
        renew_before: float = RENEW_BEFORE,
    ) -> None:
        self._scope = scope
        self._factory = credential_factory
        self._credential: Any = None
        super().__init__(self._fetch, clock=clock, renew_before=renew_before, name="azure-identity")

    def _fetch(self, renew: bool) -> tuple[str, float]:
        if self._credential is None or renew:
            self._credential = self._factory()
        try:
            access = self._credential.get_token(self._scope)
        except Exception as exc:  # azure.core ClientAuthenticationError and friends
            raise CollectionFailed(
                f"could not get an Exchange token from azure-identity: {type(exc).__name__}: "
                f"{_first_line(exc)}"
            ) from exc
        return str(access.token), float(access.expires_on)


class MsalHttpClient:
    """The `http_client` msal expects (`get`/`post` returning status_code, text, headers,
    raise_for_status), over an injected `httpx.Client`."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return self._http.get(url, params=params, headers=headers)

    def post(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        if isinstance(data, Mapping):
            # msal hands some form values (the signed client assertion) over as bytes, which
            # requests encodes as text and httpx would send as "b'...'".
            data = {k: v.decode() if isinstance(v, bytes) else v for k, v in data.items()}
        return self._http.post(url, params=params, data=data, headers=headers)

    def close(self) -> None:
        self._http.close()


class MsalAppTokens(CachedTokens):
    """Client credentials for an app registration in `tenant` (certificate or secret).

    `client_credential` is what msal takes: a secret string, or a dict with
    `private_key` + `thumbprint` (PEM) / `private_key_pfx_path` (+ `passphrase`). msal keeps the
    token in its in-memory cache; this class decides renewal on its own clock and, when a token
    is due, evicts msal's copy so a new one is really requested.
    """

    def __init__(
        self,
        *,
        tenant: str,
        client_id: str,
        client_credential: str | dict[str, Any],
        scope: str,
        http: httpx.Client,
        authority_host: str = "https://login.microsoftonline.com",
        clock: Clock = time.time,
        renew_before: float = RENEW_BEFORE,
    ) -> None:
        self._tenant = tenant
        self._client_id = client_id
        self._credential = client_credential
        self._scope = scope
        self._authority = f"{authority_host.rstrip('/')}/{tenant}"
        self._http = MsalHttpClient(http)
        self._clock_fn = clock
        self._app: Any = None
        super().__init__(self._fetch, clock=clock, renew_before=renew_before, name="msal")

    def _application(self) -> Any:
        if self._app is None:
            import msal  # type: ignore[import-untyped]  # lazily: nothing at import time

            try:
                self._app = msal.ConfidentialClientApplication(
                    self._client_id,
                    client_credential=self._credential,
                    authority=self._authority,
                    http_client=self._http,
                )
            except ValueError as exc:  # authority discovery failed (tenant unknown...)
                raise CollectionFailed(
                    f"msal could not use authority {self._authority}: {_first_line(exc)}"
                ) from exc
        return self._app

    def _fetch(self, renew: bool) -> tuple[str, float]:
        app = self._application()
        if renew:
            app.remove_tokens_for_client()
        try:
            result = app.acquire_token_for_client(scopes=[self._scope])
        except Exception as exc:  # httpx errors, msal's MsalServiceError, ValueError...
            raise CollectionFailed(
                f"msal token request for app {self._client_id} failed: {type(exc).__name__}: "
                f"{_first_line(exc)}"
            ) from exc
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            error = result.get("error", "unknown_error") if isinstance(result, dict) else "?"
            description = result.get("error_description", "") if isinstance(result, dict) else ""
            raise CollectionFailed(
                f"msal could not get a token for app {self._client_id} in tenant "
                f"{self._tenant}: {error}: {_first_line(description)}"
            )
        expires_in = float(result.get("expires_in") or 0)
        return str(token), self._clock_fn() + expires_in


def _first_line(value: object) -> str:
    text = str(value).strip().splitlines()
    return text[0][:300] if text else ""


def _certificate_credential(path: Path, password: str | None) -> dict[str, Any]:
    """msal's certificate credential from a PEM (key + certificate) or PFX/P12 file."""
    if not path.is_file():
        raise ConfigError("EXO_CERTIFICATE_PATH", f"no such file: {path}")
    if path.suffix.lower() in (".pfx", ".p12"):
        credential: dict[str, Any] = {"private_key_pfx_path": str(path)}
        if password:
            credential["passphrase"] = password
        return credential
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    pem = path.read_bytes()
    secret = password.encode() if password else None
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        key = serialization.load_pem_private_key(pem, password=secret)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            "EXO_CERTIFICATE_PATH",
            f"{path} must hold the private key and the certificate (PEM), or be a .pfx "
            f"({type(exc).__name__})",
        ) from None
    private_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    # x5t is the certificate's SHA-1 thumbprint, as Entra ID expects.
    thumbprint = certificate.fingerprint(hashes.SHA1()).hex()  # noqa: S303
    return {"private_key": private_key, "thumbprint": thumbprint}


@dataclass(frozen=True, slots=True)
class Credentials:
    """Which identity to use, named after the settings that carry each value."""

    access_token: str | None = None  # EXO_ACCESS_TOKEN
    tenant: str | None = None  # EXO_TENANT
    client_id: str | None = None  # EXO_CLIENT_ID
    certificate_path: Path | None = None  # EXO_CERTIFICATE_PATH
    certificate_password: str | None = None  # EXO_CERTIFICATE_PASSWORD
    client_secret: str | None = None  # EXO_CLIENT_SECRET
    authority_host: str = "https://login.microsoftonline.com"  # EXO_AUTHORITY_HOST
    managed_identity_client_id: str | None = None  # AZURE_CLIENT_ID


def token_provider(
    credentials: Credentials,
    scope: str,
    *,
    http: httpx.Client | None = None,
    clock: Clock = time.time,
) -> TokenProvider:
    """The provider the credentials ask for, in this order: `EXO_ACCESS_TOKEN` (static);
    `EXO_CLIENT_ID` with `EXO_CERTIFICATE_PATH` or `EXO_CLIENT_SECRET` (msal, app registration
    in `EXO_TENANT`); otherwise azure-identity (user-assigned identity `AZURE_CLIENT_ID`, else
    `DefaultAzureCredential`). Builds no network client until the first token is needed."""
    c = credentials
    if c.access_token:
        return StaticToken(c.access_token)
    if c.client_id:
        if not c.tenant:
            raise ConfigError("EXO_TENANT", "is required with EXO_CLIENT_ID")
        credential: str | dict[str, Any]
        if c.certificate_path is not None:
            credential = _certificate_credential(c.certificate_path, c.certificate_password)
        elif c.client_secret:
            credential = c.client_secret
        else:
            raise ConfigError(
                "EXO_CLIENT_ID", "needs EXO_CERTIFICATE_PATH (preferred) or EXO_CLIENT_SECRET"
            )
        return MsalAppTokens(
            tenant=c.tenant,
            client_id=c.client_id,
            client_credential=credential,
            scope=scope,
            http=http or httpx.Client(timeout=30.0),
            authority_host=c.authority_host,
            clock=clock,
        )
    client_id = c.managed_identity_client_id
    return AzureIdentityTokens(scope, lambda: azure_credential(client_id), clock=clock)
