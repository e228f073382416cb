"""Protocol cases where a server would be awkward: httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from auditor.core.errors import CollectionFailed, PermissionDenied
from auditor.exchange.client import ExchangeClient
from auditor.exchange.transport import reset_seconds
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


MORE = (
    "There are more results available than are currently displayed. To view them, increase the "
    "value for the ResultSize parameter."
)


class RawStream(httpx.SyncByteStream):
    """A body httpx has not read (or decoded) yet, as it comes off a socket."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Any:
        yield self.data


def test_the_truncation_warning_next_to_a_next_link_is_ignored() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "skiptoken" not in str(request.url):
            body = page([{"Guid": "a"}], f"{ENDPOINT}?$skiptoken=2")
            body["@adminapi.warnings"] = [MORE]
            return httpx.Response(200, json=body)
        return httpx.Response(200, json=page([{"Guid": "b"}]))

    client, seen = client_for(handler)
    assert [r["Guid"] for r in client.get_cas_mailboxes()] == ["a", "b"]
    assert client.last_warnings == [] and len(seen) == 2


def test_the_truncation_warning_on_the_last_page_makes_the_read_incomplete() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "skiptoken" not in str(request.url):
            return httpx.Response(
                200, json={**page([{"Guid": "a"}], f"{ENDPOINT}?$skiptoken=2"), "x": 1}
            )
        return httpx.Response(200, json={"@adminapi.warnings": [MORE], "value": [{"Guid": "b"}]})

    client, _ = client_for(handler)
    with pytest.raises(CollectionFailed, match=r"truncated.*read is incomplete"):
        client.get_cas_mailboxes()


def test_a_set_answer_of_value_null_with_only_warnings_is_success() -> None:
    warning = "The command completed successfully but no settings of 'a' have been modified."

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"@adminapi.warnings": [warning], "value": None})

    client, seen = client_for(handler)
    client.set_cas_mailbox("a", True)
    assert client.last_warnings == [warning]
    assert "Prefer" not in seen[0].headers  # a write is not paged


def test_connection_id_is_one_per_client_and_request_id_one_per_call() -> None:
    calls = iter(range(100))

    def handler(request: httpx.Request) -> httpx.Response:
        n = next(calls)
        if n == 1:
            return httpx.Response(503, json={"error": {"code": "ServiceUnavailable"}})
        if n in (0, 2):
            return httpx.Response(200, json=page([{"Guid": str(n)}], f"{ENDPOINT}?$skiptoken={n}"))
        return httpx.Response(200, json=page([{"Guid": str(n)}]))

    client, seen = client_for(handler)
    client.get_cas_mailboxes()  # page 1, a 503 and its retry of page 2, page 3
    client.get_mailboxes()
    assert {r.headers["connection-id"] for r in seen} == {client.connection_id}
    first = {r.headers["client-request-id"] for r in seen[:4]}
    assert len(first) == 1 and seen[4].headers["client-request-id"] not in first


@pytest.mark.parametrize(
    "body", [b"", b"\x00" * 5000, b"\x1f\x8b\x08\x00garbage"], ids=["empty", "nul", "bad-gzip"]
)
def test_a_403_without_a_readable_body_is_a_permission_error(body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            403,
            stream=RawStream(body),
            headers={"Content-Encoding": "gzip", "request-id": "rid-403"},
        )

    client, seen = client_for(handler)
    with pytest.raises(PermissionDenied) as caught:
        client.get_mailboxes()
    message = str(caught.value)
    assert message.startswith("Get-Mailbox: HTTP 403, request-id rid-403: (empty body)")
    assert "View-Only Recipients" in message and "\x00" not in message
    assert len(seen) == 1  # not retried


def test_a_401_without_a_body_is_the_token_not_a_role() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, stream=RawStream(b""), headers={"request-id": "r"})

    client, seen = client_for(handler)
    with pytest.raises(CollectionFailed, match="refused again after one refresh") as caught:
        client.get_mailboxes()
    assert not isinstance(caught.value, PermissionDenied) and len(seen) == 2


def test_parameters_missing_from_the_role_definition_name_the_role() -> None:
    message = (
        "|Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletAccessDeniedException|"
        "The following parameters aren't present in the role definition for the current user: "
        "SmtpClientAuthenticationDisabled."
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400,
            json={
                "error": {
                    "code": "BadRequest",
                    "message": "Invalid Operation",
                    "details": [{"code": "Client", "message": message}],
                }
            },
        )

    client, _ = client_for(handler)
    with pytest.raises(PermissionDenied, match="Mail Recipients"):
        client.set_cas_mailbox("a", True)


def test_error_details_lose_their_errid_and_type_prefix() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        text = "Ex6F9304|Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException|"
        return httpx.Response(
            404,
            json={"error": {"code": "NotFound", "details": [{"message": text + "a|b not found"}]}},
        )

    client, _ = client_for(handler)
    with pytest.raises(CollectionFailed, match=r"NotFound: a\|b not found$"):
        client.get_cas_mailbox("x")


def test_a_low_rate_limit_remaining_slows_down_before_the_next_request() -> None:
    waits: list[float] = []
    remaining = iter(["100", "2", "0", "50"])

    def handler(request: httpx.Request) -> httpx.Response:
        left = next(remaining)
        link = f"{ENDPOINT}?$skiptoken={left}" if left != "50" else None
        return httpx.Response(
            200,
            json=page([{"Guid": left}], link),
            headers={"Rate-Limit-Remaining": left, "Rate-Limit-Reset": "30"},
        )

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = ExchangeClient(
        base_url=BASE,
        tenant="contoso.onmicrosoft.com",
        tokens=StaticToken("t"),
        http=http,
        sleep=waits.append,
        max_slowdown=20.0,
    )
    assert len(client.get_cas_mailboxes()) == 4
    assert waits == [10.0, 20.0]  # 30 s / (2 + 1); 30 s / 1 capped at max_slowdown


def test_rate_limit_reset_formats() -> None:
    now = 1_800_000_000.0
    assert reset_seconds("12.5", now) == 12.5
    assert reset_seconds(str(now + 40), now) == 40
    assert reset_seconds("Fri, 15 Jan 2027 08:00:10 GMT", 1_800_000_000.0) is not None
    assert reset_seconds("2027-01-15T08:00:10Z", now) is not None
    assert reset_seconds("soon", now) is None and reset_seconds(None, now) is None


def test_a_redirect_to_the_regional_host_is_followed_and_its_links_accepted() -> None:
    regional = "https://emea04.outlook.office365.com/adminapi/beta/contoso.onmicrosoft.com"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "outlook.office365.com":
            return httpx.Response(302, headers={"Location": f"{regional}/InvokeCommand"})
        if "skiptoken" not in str(request.url):
            return httpx.Response(
                200, json=page([{"Guid": "a"}], f"{regional}/InvokeCommand?$skiptoken=2")
            )
        return httpx.Response(200, json=page([{"Guid": "b"}]))

    client, seen = client_for(handler)
    assert len(client.get_cas_mailboxes()) == 2
    assert len(client.get_mailboxes()) == 2
    assert [r.url.host for r in seen].count("outlook.office365.com") == 1
    assert seen[1].content == seen[0].content  # the same request, re-sent
    assert client.endpoint == f"{regional}/InvokeCommand"


@pytest.mark.parametrize(
    "location",
    [
        "http://emea04.outlook.office365.com/x",  # another scheme
        "https://emea04.outlook.office365.com:8443/x",  # another port
        "https://outlook.office365.com.evil.example/x",
        "https://a.b.outlook.office365.com/x",  # more than one label
        None,
    ],
)
def test_other_redirects_are_refused(location: str | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": location} if location else {})

    client, seen = client_for(handler)
    with pytest.raises(CollectionFailed, match="refused"):
        client.get_cas_mailboxes()
    assert len(seen) == 1
