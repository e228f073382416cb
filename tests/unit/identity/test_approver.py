"""Approver authentication: tokens validated in code against a local JWKS endpoint."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from auditor.identity.approver import (
    ApproverAuth,
    AuthError,
    JwksCache,
    check_form_token,
    form_token,
)
from tests.support.approver_tokens import (
    APPROVER_OID,
    AUDIENCE,
    OTHER_TENANT,
    ROLE,
    TENANT,
    Issuer,
    jwk,
    jwks_server,
    new_key,
)


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with jwks_server(Issuer()) as running:
        yield running


def make_auth(issuer: Issuer, *, easy_auth: bool = False) -> ApproverAuth:
    return ApproverAuth(
        tenant_id=TENANT,
        audiences=(AUDIENCE,),
        role=ROLE,
        jwks=JwksCache(issuer.url, httpx.Client(), min_refresh=0),
        easy_auth=easy_auth,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_valid_v1_and_v2_tokens_are_accepted(issuer: Issuer, version: str) -> None:
    principal = make_auth(issuer).authenticate(bearer(issuer.token(version=version)))
    assert (principal.object_id, principal.name, principal.source) == (
        APPROVER_OID,
        "Ada Approver",
        "bearer",
    )


def test_keys_are_cached(issuer: Issuer) -> None:
    auth = make_auth(issuer)
    for _ in range(3):
        auth.authenticate(bearer(issuer.token()))
    assert issuer.hits == 1


def test_rotated_key_is_fetched_once(issuer: Issuer) -> None:
    auth = make_auth(issuer)
    auth.authenticate(bearer(issuer.token()))
    new = new_key()
    issuer.published.append(jwk(new, "k2"))
    auth.authenticate(bearer(issuer.token(key=new, kid="k2")))
    assert issuer.hits == 2


@pytest.mark.parametrize(
    ("headers_of", "status", "words"),
    [
        (lambda i: {}, 401, "sign-in required"),
        (lambda i: {"x-functions-key": "abc"}, 401, "not an identity"),
        (lambda i: {"Authorization": "Basic dXNlcjpwdw=="}, 401, "Bearer"),
        (lambda i: bearer("not.a.token"), 401, "malformed"),
        (lambda i: bearer(i.token(roles=["Reader"])), 403, "approver role"),
        (lambda i: bearer(i.token(roles=[])), 403, "approver role"),
        (lambda i: bearer(i.token(tid=OTHER_TENANT)), 401, "another tenant"),
        (lambda i: bearer(i.token(lifetime=-600)), 401, "expired"),
        (lambda i: bearer(i.token(aud="api://something-else")), 401, "audience"),
        (lambda i: bearer(i.token(key=new_key())), 401, "signature"),
        (lambda i: bearer(i.token(kid="unknown")), 401, "unknown key"),
    ],
    ids=[
        "none",
        "function-key-only",
        "basic",
        "garbage",
        "wrong-role",
        "no-roles",
        "wrong-tenant",
        "expired",
        "wrong-audience",
        "forged-signature",
        "unknown-kid",
    ],
)
def test_refused(issuer: Issuer, headers_of: object, status: int, words: str) -> None:
    auth = make_auth(issuer)
    with pytest.raises(AuthError) as caught:
        auth.authenticate(headers_of(issuer))  # type: ignore[operator]
    assert caught.value.status == status
    assert words in str(caught.value)


def test_tenant_claim_must_match_even_with_a_valid_issuer(issuer: Issuer) -> None:
    token = issuer.token(tid=OTHER_TENANT, iss=f"https://sts.windows.net/{TENANT}/")
    with pytest.raises(AuthError) as caught:
        make_auth(issuer).authenticate(bearer(token))
    assert caught.value.status == 403


def test_hs256_token_with_the_public_key_as_secret_is_refused(issuer: Issuer) -> None:
    import jwt

    secret = "a-secret-that-is-long-enough-for-hs256!!"
    token = jwt.encode({"tid": TENANT}, secret, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(AuthError, match="algorithm"):
        make_auth(issuer).authenticate(bearer(token))


def principal_header(tid: str = TENANT, roles: tuple[str, ...] = (ROLE,)) -> str:
    claims = [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "oid-9"},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": tid},
        {"typ": "name", "val": "Grace"},
        *({"typ": "roles", "val": role} for role in roles),
    ]
    data = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(data).encode()).decode()


def test_easy_auth_header_only_when_the_platform_feature_is_on(issuer: Issuer) -> None:
    headers = {"X-MS-CLIENT-PRINCIPAL": principal_header()}
    with pytest.raises(AuthError) as caught:
        make_auth(issuer).authenticate(headers)
    assert caught.value.status == 401
    principal = make_auth(issuer, easy_auth=True).authenticate(headers)
    assert (principal.object_id, principal.name, principal.source) == ("oid-9", "Grace", "easyauth")
    with pytest.raises(AuthError):
        make_auth(issuer, easy_auth=True).authenticate(
            {"X-MS-CLIENT-PRINCIPAL": principal_header(roles=())}
        )
    with pytest.raises(AuthError):
        make_auth(issuer, easy_auth=True).authenticate(
            {"X-MS-CLIENT-PRINCIPAL": principal_header(tid=OTHER_TENANT)}
        )
    with pytest.raises(AuthError):
        make_auth(issuer, easy_auth=True).authenticate({"X-MS-CLIENT-PRINCIPAL": "%%%"})


def test_form_token_is_bound_to_proposal_plan_and_approver() -> None:
    token = form_token("s3cret", "rev-mai-1", "hash1", "oid-1", now=1000)
    check_form_token("s3cret", token, "rev-mai-1", "hash1", "OID-1", now=1001)
    for args in (
        ("other", "hash1", "oid-1"),
        ("rev-mai-1", "hash2", "oid-1"),
        ("rev-mai-1", "hash1", "oid-2"),
    ):
        with pytest.raises(AuthError):
            check_form_token("s3cret", token, *args, now=1001)
    with pytest.raises(AuthError):
        check_form_token("other-secret", token, "rev-mai-1", "hash1", "oid-1", now=1001)
    with pytest.raises(AuthError, match="expired"):
        check_form_token("s3cret", token, "rev-mai-1", "hash1", "oid-1", now=10**9)
    with pytest.raises(AuthError, match="malformed"):
        check_form_token("s3cret", "x", "rev-mai-1", "hash1", "oid-1", now=1001)


def test_jwks_failures_back_off_and_reveal_nothing(issuer: Issuer) -> None:
    clock = [1000.0]
    cache = JwksCache(issuer.url, httpx.Client(), min_refresh=0, clock=lambda: clock[0])
    auth = ApproverAuth(tenant_id=TENANT, audiences=(AUDIENCE,), role=ROLE, jwks=cache)
    issuer.status = 500
    for _ in range(20):  # a flood of tokens while the endpoint fails: one request
        with pytest.raises(AuthError) as caught:
            auth.authenticate(bearer(issuer.token(kid=f"kid-{_}")))
        message = str(caught.value)
        assert caught.value.status == 401 and "unavailable" in message
        assert "127.0.0.1" not in message and "500" not in message and "internal" not in message
    assert (cache.attempts, issuer.hits) == (1, 1)
    clock[0] += 6  # the first backoff (5 s) has passed: one more try, then 10 s
    with pytest.raises(AuthError):
        cache.key("k1")
    clock[0] += 6
    with pytest.raises(AuthError):
        cache.key("k1")
    assert cache.attempts == 2
    issuer.status = 200
    clock[0] += 5
    assert cache.key("k1") is not None  # recovered: the backoff is reset
    assert (cache.attempts, cache.fetches) == (3, 1)


def test_jwks_fetch_is_single_flight_and_holds_no_lock(issuer: Issuer) -> None:
    cache = JwksCache(issuer.url, httpx.Client(), min_refresh=0)
    assert cache.key("k1") is not None
    second = new_key()
    issuer.gate.clear()  # the endpoint hangs until the gate opens
    issuer.published.append(jwk(second, "k2"))
    found: list[object] = []
    waiters = [threading.Thread(target=lambda: found.append(cache.key("k2"))) for _ in range(4)]
    waiters[0].start()
    deadline = time.monotonic() + 10
    while issuer.hits < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert issuer.hits == 2  # the leader's fetch is in flight, blocked at the endpoint
    for thread in waiters[1:]:
        thread.start()
    started = time.monotonic()
    assert cache.key("k1") is not None  # a cached key is served while the fetch hangs
    assert time.monotonic() - started < 1.0
    time.sleep(0.2)
    issuer.gate.set()
    for thread in waiters:
        thread.join(timeout=20)
    assert len(found) == 4 and all(k is not None for k in found)
    assert issuer.hits == 2  # one fetch for the four callers
