"""Search-UnifiedAuditLog session paging, de-duplication and refusals (httpx.MockTransport)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from auditor.exchange.auditlog import read_changes
from auditor.exchange.client import ExchangeClient
from auditor.identity.tokens import StaticToken

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 27, 2, 0, 0, 500000, tzinfo=UTC)


def row(n: int, count: int, rid: str | None = None) -> dict[str, Any]:
    data = {
        "CreationTime": (START + timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%S"),
        "Id": rid or f"id-{n}",
        "Operation": "Set-CASMailbox",
        "ResultStatus": "True",
        "UserId": "alice@contoso.com",
        "Parameters": [
            {"Name": "Identity", "Value": f"box{n}@contoso.com"},
            {"Name": "SmtpClientAuthenticationDisabled", "Value": "False"},
        ],
    }
    return {"AuditData": json.dumps(data), "ResultIndex": n, "ResultCount": count}


def client(pages: list[Any], seen: list[dict[str, Any]]) -> ExchangeClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        reply = pages.pop(0) if pages else []
        if isinstance(reply, httpx.Response):
            return reply
        return httpx.Response(200, json={"@adminapi.warnings": [], "value": reply})

    return ExchangeClient(
        base_url="https://outlook.office365.com",
        tenant="contoso.onmicrosoft.com",
        tokens=StaticToken("t"),
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        sleep=lambda _: None,
        jitter=lambda: 0.0,
    )


def test_one_session_until_result_count_deduplicated() -> None:
    seen: list[dict[str, Any]] = []
    pages = [[row(1, 3), row(2, 3)], [row(2, 3), row(3, 3)]]  # ReturnLargeSet repeats rows
    log = read_changes(client(pages, seen), start=START, end=END, session_id="s1")
    assert log.state == "collected"
    assert [c.id for c in log.changes] == ["id-1", "id-2", "id-3"]
    assert len(seen) == 2  # stopped at ResultIndex == ResultCount, no third call
    parameters = seen[0]["CmdletInput"]["Parameters"]
    assert seen[0]["CmdletInput"]["CmdletName"] == "Search-UnifiedAuditLog"
    assert parameters == {
        "StartDate": "2026-11-01T00:00:00Z",
        "EndDate": "2026-11-27T02:00:01Z",
        "RecordType": "ExchangeAdmin",
        "Operations": ["Set-CASMailbox", "Set-TransportConfig"],
        "SessionId": "s1",
        "SessionCommand": "ReturnLargeSet",
        "ResultSize": 5000,
    }
    assert seen[1]["CmdletInput"]["Parameters"] == parameters  # the same command, same session


def test_an_empty_call_ends_the_session() -> None:
    seen: list[dict[str, Any]] = []
    log = read_changes(client([[row(1, 5)], []], seen), start=START, end=END)
    assert log.state == "collected" and len(log.changes) == 1 and len(seen) == 2


def test_too_many_records_and_refusals_are_unknown() -> None:
    log = read_changes(client([[row(1, 60000)]], []), start=START, end=END)
    assert log.state == "unknown" and "narrow the window" in log.reason
    denied = httpx.Response(
        401,
        json={"error": {"code": "Unauthorized",
                        "message": "User is not allowed to call Search-UnifiedAuditLog."}},
    )  # fmt: skip
    log = read_changes(client([denied], []), start=START, end=END)
    assert log.state == "unknown" and log.reason.startswith("missing the View-Only Audit Logs role")
    broken = httpx.Response(200, content=b"{not json")
    log = read_changes(client([broken], []), start=START, end=END)
    assert log.state == "unknown" and log.reason.startswith("Search-UnifiedAuditLog failed")
