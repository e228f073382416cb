"""Protocol cases where a server would be awkward: httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from auditor.core.errors import CollectionFailed
from auditor.exchange.client import ExchangeClient
from auditor.identity.tokens import StaticToken

BASE = "https://outlook.office365.com"
ENDPOINT = f"{BASE}/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand"


def page(value: list[dict[str, Any]], link: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"@adminapi.warnings": [], "value": value, **extra}
    if link:
        body["@odata.nextLink"] = link
    return body


def client_for(
    handler: Callable[[httpx.Request], httpx.Response], **kw: Any
) -> tuple[ExchangeClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    http = httpx.Client(transport=httpx.MockTransport(record))
    client = ExchangeClient(
        base_url=BASE,
        tenant="contoso.onmicrosoft.com",
        tokens=StaticToken("t"),
        http=http,
        sleep=lambda s: None,
        jitter=lambda: 0.0,
        **kw,
    )
    return client, seen


def test_next_link_to_another_host_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json=page([{"Guid": "a"}], "https://evil.example.com/InvokeCommand?$skiptoken=x"),
            headers={"request-id": "rid-1"},
        )

    client, seen = client_for(handler)
    with pytest.raises(CollectionFailed) as caught:
        client.get_cas_mailboxes()
    assert "another host (evil.example.com)" in str(caught.value)
    assert "Get-CASMailbox: HTTP 200, request-id rid-1" in str(caught.value)
    assert [r.url.host for r in seen] == ["outlook.office365.com"]


def test_relative_next_link_stays_on_the_endpoint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "skiptoken" in str(request.url):
            return httpx.Response(200, json=page([{"Guid": "b"}]))
        return httpx.Response(200, json=page([{"Guid": "a"}], "InvokeCommand?$skiptoken=2"))

    client, seen = client_for(handler)
    assert [r["Guid"] for r in client.get_cas_mailboxes()] == ["a", "b"]
    assert str(seen[1].url) == f"{ENDPOINT}?$skiptoken=2"


def test_a_repeating_next_link_fails() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=page([{"Guid": "a"}], f"{ENDPOINT}?$skiptoken=same"))

    client, _ = client_for(handler)
    with pytest.raises(CollectionFailed, match="repeats"):
        client.get_mailboxes()


@pytest.mark.parametrize(
    "content", [b'{"value": [', b"<html>busy</html>", b"\xff\xfe\x00", b'["not", "an object"]']
)
def test_malformed_json_fails_with_status_and_request_id(content: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=content, headers={"request-id": "rid-9"})

    client, _ = client_for(handler)
    with pytest.raises(CollectionFailed, match=r"Get-Mailbox: HTTP 200, request-id rid-9: the re"):
        client.get_mailboxes()


@pytest.mark.parametrize(
    "body",
    [
        {"@adminapi.warnings": []},
        {"value": {"Guid": "a"}},
        {"value": ["a string"]},
    ],
)
def test_a_page_without_a_record_list_fails(body: dict[str, Any]) -> None:
    client, _ = client_for(lambda r: httpx.Response(200, json=body))
    with pytest.raises(CollectionFailed, match="Get-CASMailbox: HTTP 200"):
        client.get_cas_mailboxes()


def test_claims_challenge_is_reported_not_looped() -> None:
    challenge = (
        'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
        'authorize", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnt9fQ=="'
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401, headers={"WWW-Authenticate": challenge, "request-id": "rid-c"}, content=b""
        )

    client, seen = client_for(handler)
    with pytest.raises(CollectionFailed) as caught:
        client.get_transport_config()
    assert "HTTP 401, request-id rid-c: claims challenge (insufficient_claims)" in str(caught.value)
    assert len(seen) == 1


def test_error_detail_comes_from_details_even_as_a_json_string() -> None:
    inner = json.dumps({"Message": "The object 'x' couldn't be found."})
    body = {
        "error": {
            "code": "BadRequest",
            "message": "Error executing cmdlet",
            "details": [{"code": "Context", "target": "", "message": inner}],
        }
    }
    client, _ = client_for(
        lambda r: httpx.Response(400, json=body, headers={"request-id": "rid-4"})
    )
    with pytest.raises(CollectionFailed) as caught:
        client.set_cas_mailbox("x", None)
    assert str(caught.value) == (
        "Set-CASMailbox: HTTP 400, request-id rid-4: BadRequest: The object 'x' couldn't be found."
    )


def test_forbidden_rbac_is_a_permission_error_naming_the_role() -> None:
    from auditor.core.errors import PermissionDenied

    body = {"error": {"code": "Forbidden", "message": "User is not allowed to call Set-CASMailbox"}}
    client, seen = client_for(lambda r: httpx.Response(403, json=body))
    with pytest.raises(PermissionDenied, match="Mail Recipients"):
        client.set_cas_mailbox("x", False)
    assert len(seen) == 1


def test_unparseable_retry_after_falls_back_to_backoff() -> None:
    waits: list[float] = []
    calls = iter([429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(calls)
        if status == 429:
            return httpx.Response(429, headers={"Retry-After": "soon"})
        return httpx.Response(200, json=page([{"SmtpClientAuthenticationDisabled": True}]))

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = ExchangeClient(
        base_url=BASE,
        tenant="contoso.onmicrosoft.com",
        tokens=StaticToken("t"),
        http=http,
        sleep=waits.append,
        jitter=lambda: 0.0,
    )
    assert client.get_transport_config() == {"SmtpClientAuthenticationDisabled": True}
    assert waits == [2.0]


def test_connection_refused_is_a_failure_without_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, _ = client_for(handler)
    with pytest.raises(CollectionFailed, match="Get-CASMailbox: HTTP none, request-id none"):
        client.get_cas_mailboxes()


def test_nested_annotations_are_dropped_and_null_is_kept() -> None:
    record = {
        "Guid@odata.type": "#Guid",
        "Guid": "a",
        "SmtpClientAuthenticationDisabled": None,
        "Nested": {"X@odata.type": "#String", "X": "y"},
    }
    client, _ = client_for(lambda r: httpx.Response(200, json=page([record])))
    assert client.get_cas_mailboxes() == [
        {"Guid": "a", "SmtpClientAuthenticationDisabled": None, "Nested": {"X": "y"}}
    ]


def test_the_token_is_never_in_a_failure_message() -> None:
    client, seen = client_for(lambda r: httpx.Response(500, text="boom"))
    with pytest.raises(CollectionFailed) as caught:
        client.get_mailboxes()
    assert seen[0].headers["Authorization"] == "Bearer t"
    assert "Bearer" not in str(caught.value)
