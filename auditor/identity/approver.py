"""Who may approve a remediation: Entra access tokens validated in code, Easy Auth, anti-forgery.

A function key is a shared secret, not an identity: every approval needs a person or app that
holds the approver app role. Accepted:

- `Authorization: Bearer <Entra access token>`: signature checked against the tenant's JWKS
  (fetched over `httpx`, cached, refreshed once when an unknown `kid` appears), RS256 only,
  issuer `https://sts.windows.net/{tid}/` (v1) or `https://login.microsoftonline.com/{tid}/v2.0`
  (v2), audience, expiry (with `LEEWAY_SECONDS` of clock skew), `tid`, and the role in `roles`.
- `X-MS-CLIENT-PRINCIPAL` (App Service Authentication) only when the platform feature is on
  (`EASY_AUTH_ENABLED`): the platform strips a forged header only when it runs.

Anti-forgery: the confirmation form carries `form_token(...)`, an HMAC bound to the proposal, its
plan hash and the approver's object id, with an expiry, so another page cannot post an approval
on a signed-in approver's behalf, nor can a token minted for one approver serve another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import jwt

from auditor.core.errors import AuditorError
from auditor.core.proposals import Principal

__all__ = [
    "AuthError",
    "ApproverAuth",
    "JwksCache",
    "form_token",
    "check_form_token",
    "LEEWAY_SECONDS",
]

log = logging.getLogger(__name__)
LEEWAY_SECONDS = 60
JWKS_TTL_SECONDS = 3600
JWKS_MIN_REFRESH_SECONDS = 30
FORM_TOKEN_SECONDS = 3600
_OID_CLAIMS = ("oid", "http://schemas.microsoft.com/identity/claims/objectidentifier")
_TID_CLAIMS = ("tid", "http://schemas.microsoft.com/identity/claims/tenantid")
_NAME_CLAIMS = (
    "name",
    "preferred_username",
    "upn",
    "app_displayname",
    "appid",
    "azp",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
)


class AuthError(AuditorError):
    """Refused: `status` is 401 (who are you?) or 403 (known, but not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class JwksCache:
    """The tenant's signing keys, fetched with an injected `httpx.Client` and cached.

    Keys are kept `ttl` seconds; an unknown `kid` forces one refresh, at most every
    `min_refresh` seconds, so a flood of forged tokens cannot make us hammer the endpoint. The
    fetch runs outside the lock and single-flight (concurrent callers wait for the one fetch in
    progress, callers with a cached key are never held up by it); after a failed fetch the
    endpoint is left alone for a growing backoff (`BACKOFF_SECONDS`, doubling, at most
    `MAX_BACKOFF_SECONDS`) and cached keys keep serving. A caller is only told that the keys
    are unavailable: the key URL and the upstream error go to the log.
    """

    BACKOFF_SECONDS = 5.0
    MAX_BACKOFF_SECONDS = 300.0

    def __init__(
        self,
        url: str,
        client: httpx.Client,
        *,
        ttl: float = JWKS_TTL_SECONDS,
        min_refresh: float = JWKS_MIN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._client = client
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._inflight: threading.Event | None = None
        self._lock = threading.Lock()
        self.fetches = 0  # successful fetches
        self.attempts = 0  # every request sent

    def _download(self) -> dict[str, Any]:
        """GET the key set (no lock held)."""
        response = self._client.get(self.url, timeout=10)
        response.raise_for_status()
        keyset = jwt.PyJWKSet.from_dict(response.json())
        return {k.key_id: k.key for k in keyset.keys if k.key_id}

    def _needs_fetch(self, kid: str, now: float) -> bool:
        if now < self._retry_at:
            return False  # backing off after a failure
        if self._fetched_at is None or now - self._fetched_at > self._ttl:
            return True
        last = self._attempted_at if self._attempted_at is not None else self._fetched_at
        return kid not in self._keys and now - last >= self._min_refresh

    def key(self, kid: str) -> Any:
        leader = False
        with self._lock:
            now = self._clock()
            if not self._needs_fetch(kid, now):
                found = self._keys.get(kid)
                if found is None:
                    raise self._missing()
                return found
            waiting = self._inflight
            if waiting is None:
                self._inflight = waiting = threading.Event()
                self._attempted_at = now
                leader = True
        if leader:
            self._lead(waiting)
        else:
            waiting.wait(timeout=15)
        with self._lock:
            found = self._keys.get(kid)
        if found is None:
            raise self._missing()
        return found

    def _lead(self, done: threading.Event) -> None:
        try:
            self.attempts += 1
            keys = self._download()
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            with self._lock:
                self._failures += 1
                delay = min(
                    self.BACKOFF_SECONDS * 2 ** (self._failures - 1), self.MAX_BACKOFF_SECONDS
                )
                self._retry_at = self._clock() + delay
            log.warning(
                "approver signing keys: fetching %s failed (%s: %s); next try in %.0f s",
                self.url,
                type(exc).__name__,
                exc,
                delay,
            )
        else:
            with self._lock:
                self._keys = keys
                self._fetched_at = self._clock()
                self._failures = 0
                self._retry_at = 0.0
                self.fetches += 1
        finally:
            with self._lock:
                self._inflight = None
            done.set()

    def _missing(self) -> AuthError:
        if self._failures and not self._keys:
            return AuthError(401, "the token cannot be validated now: signing keys unavailable")
        return AuthError(401, "the token is signed by an unknown key")


def _claim(claims: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


class ApproverAuth:
    """Authenticate a request's approver and check the approver role."""

    def __init__(
        self,
        *,
        tenant_id: str,
        audiences: tuple[str, ...],
        role: str,
        jwks: JwksCache,
        easy_auth: bool = False,
    ) -> None:
        if not tenant_id or not audiences or not role:
            raise ValueError("tenant_id, audiences and role are required")
        self.tenant_id = tenant_id.lower()
        self.audiences = audiences
        self.role = role
        self.jwks = jwks
        self.easy_auth = easy_auth
        self.issuers = (
            f"https://sts.windows.net/{self.tenant_id}/",
            f"https://login.microsoftonline.com/{self.tenant_id}/v2.0",
        )

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The approver behind these (case-insensitive) headers, or AuthError 401/403."""
        lower = {k.lower(): v for k, v in headers.items()}
        authorization = lower.get("authorization", "")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError(401, "Authorization must be 'Bearer <Entra access token>'")
            return self.validate_token(token.strip())
        principal = lower.get("x-ms-client-principal")
        if principal and self.easy_auth:
            return self._easy_auth(principal)
        raise AuthError(
            401,
            "sign-in required: send an Entra access token (Authorization: Bearer) for a "
            "principal holding the approver role; a function key alone is not an identity",
        )

    def validate_token(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"malformed token: {exc}") from exc
        if header.get("alg") != "RS256":
            raise AuthError(401, f"token algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError(401, "token has no key id (kid)")
        key = self.jwks.key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=list(self.audiences),
                issuer=self.issuers,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "tid"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError(401, "the token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(401, "the token is for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError(401, "the token was issued by another tenant or issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError(401, "the token signature is invalid") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"invalid token: {exc}") from exc
        return self._principal(claims, claims.get("roles"), "bearer")

    def _easy_auth(self, encoded: str) -> Principal:
        try:
            data = json.loads(base64.b64decode(encoded, validate=False))
            raw_claims = data["claims"]
            role_type = data.get("role_typ") or "roles"
            claims: dict[str, Any] = {}
            roles: list[str] = []
            for item in raw_claims:
                typ, val = item["typ"], item["val"]
                if typ in (role_type, "roles"):
                    roles.append(val)
                else:
                    claims.setdefault(typ, val)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise AuthError(401, "malformed X-MS-CLIENT-PRINCIPAL header") from exc
        return self._principal(claims, roles, "easyauth")

    def _principal(self, claims: Mapping[str, Any], roles: Any, source: str) -> Principal:
        tid = _claim(claims, _TID_CLAIMS)
        if tid is None or tid.lower() != self.tenant_id:
            raise AuthError(403, "the principal belongs to another tenant")
        oid = _claim(claims, _OID_CLAIMS)
        if oid is None:
            raise AuthError(401, "the token carries no object id (oid)")
        role_list = tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else ()
        if self.role not in role_list:
            raise AuthError(403, f"the principal does not hold the approver role {self.role!r}")
        return Principal(
            object_id=oid,
            name=_claim(claims, _NAME_CLAIMS) or oid,
            tenant_id=tid.lower(),
            roles=role_list,
            source=source,
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(secret: str, proposal_id: str, plan_digest: str, object_id: str, expires: int) -> str:
    message = "\n".join((proposal_id, plan_digest, object_id.lower(), str(expires)))
    return _b64(hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).digest())


def form_token(
    secret: str, proposal_id: str, plan_digest: str, object_id: str, *, now: float
) -> str:
    """The anti-forgery token of a confirmation form: `<expiry>.<hmac>`."""
    expires = int(now) + FORM_TOKEN_SECONDS
    return f"{expires}.{_mac(secret, proposal_id, plan_digest, object_id, expires)}"


def check_form_token(
    secret: str, token: str, proposal_id: str, plan_digest: str, object_id: str, *, now: float
) -> None:
    """AuthError 403 unless `token` was minted for this proposal, plan and approver, unexpired."""
    expires_text, _, mac = token.partition(".")
    try:
        expires = int(expires_text)
    except ValueError:
        raise AuthError(403, "the form's anti-forgery token is malformed") from None
    expected = _mac(secret, proposal_id, plan_digest, object_id, expires)
    if not hmac.compare_digest(expected, mac):
        raise AuthError(
            403, "the form's anti-forgery token does not match this proposal and approver"
        )
    if now > expires:
        raise AuthError(403, "the confirmation form has expired; reload the page")
