"""The sign-in adapter against the Graph stand-in (devkit.graph_emulator) over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from auditor.core.usage import UsageState
from auditor.graph.signins import SignInReader, signin_filter
from auditor.identity.tokens import StaticToken
from devkit.graph_emulator import GraphEmulator
from tests.support.usage import NOW, oid, upn

TOKEN = "graph-test-token"


@pytest.fixture
def graph() -> Iterator[GraphEmulator]:
    with GraphEmulator(token=TOKEN) as emulator:
        yield emulator


def reader(graph: GraphEmulator, http: httpx.Client, waits: list[float]) -> SignInReader:
    return SignInReader(
        base_url=graph.url, tokens=StaticToken(TOKEN), http=http, sleep=waits.append
    )


def seed(graph: GraphEmulator, count: int) -> None:
    for n in range(count):
        graph.add_signin(upn=upn(n), user_id=oid(n), at=NOW - timedelta(minutes=n))


def test_pages_through_next_links_with_filter_and_top(graph: GraphEmulator) -> None:
    seed(graph, 2500)
    graph.add_signin(upn=upn(1), user_id=oid(1), at=NOW, client_app="Browser")  # not SMTP
    graph.add_signin(upn=upn(1), user_id=oid(1), at=NOW - timedelta(days=40))  # too old
    waits: list[float] = []
    with httpx.Client(timeout=10) as http:
        evidence = reader(graph, http, waits).read(NOW - timedelta(days=30), now=NOW)
    assert evidence.state is UsageState.COLLECTED
    assert len(evidence.signins) == 2500 and evidence.pages == 3
    assert len({s.id for s in evidence.signins}) == 2500
    first = graph.requests[0].query
    assert first["$top"] == ["1000"]
    assert first["$filter"] == [signin_filter(NOW - timedelta(days=30))]
    assert first["$filter"][0] == (
        "(clientAppUsed eq 'Authenticated SMTP' or clientAppUsed eq 'SMTP') "
        "and createdDateTime ge 2026-10-28T03:00:00Z"
    )
    assert [r.query.get("$skiptoken") for r in graph.requests] == [None, ["1000"], ["2000"]]
    assert waits == [2.0, 2.0]  # spaced under the 5-per-10-seconds limit


def test_success_and_failure_both_read(graph: GraphEmulator) -> None:
    graph.add_signin(upn=upn(1), user_id=oid(1), at=NOW - timedelta(hours=1))
    graph.add_signin(upn=upn(1), user_id=oid(1), at=NOW - timedelta(hours=2), error_code=50126)
    with httpx.Client(timeout=10) as http:
        evidence = reader(graph, http, []).read(NOW - timedelta(days=1), now=NOW)
    assert sorted(s.error_code for s in evidence.signins) == [0, 50126]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("licence", "licence: Graph refused the sign-in log "
         "(Authentication_RequestFromNonPremiumTenantOrB2CTenant, HTTP 403"),
        ("permission", "permission: Graph refused the sign-in log "
         "(Authentication_MSGraphPermissionMissing, HTTP 403"),
    ],
)  # fmt: skip
def test_licence_and_permission_errors_are_unknown(
    graph: GraphEmulator, mode: str, expected: str
) -> None:
    seed(graph, 3)
    graph.mode = mode
    with httpx.Client(timeout=10) as http:
        evidence = reader(graph, http, []).read(NOW - timedelta(days=30), now=NOW)
    assert evidence.state is UsageState.UNKNOWN
    assert evidence.reason.startswith(expected)
    assert evidence.signins == ()
    # the licence error is intermittent on P1 tenants: asked twice; a permission error once
    assert len(graph.requests) == (2 if mode == "licence" else 1)


def test_throttling_waits_retry_after_then_gives_up_as_unknown(graph: GraphEmulator) -> None:
    seed(graph, 3)
    graph.throttle, graph.retry_after = 2, "7"
    waits: list[float] = []
    with httpx.Client(timeout=10) as http:
        evidence = reader(graph, http, waits).read(NOW - timedelta(days=30), now=NOW)
    assert evidence.state is UsageState.COLLECTED and len(evidence.signins) == 3
    assert waits.count(7.0) == 2
    graph.throttle = 100
    with httpx.Client(timeout=10) as http:
        evidence = reader(graph, http, []).read(NOW - timedelta(days=30), now=NOW)
    assert evidence.state is UsageState.UNKNOWN
    assert evidence.reason.startswith("throttled: HTTP 429 after 4 retries")


def test_broken_page_and_foreign_next_link_are_unknown(graph: GraphEmulator) -> None:
    seed(graph, 1500)
    graph.broken_page = 2
    with httpx.Client(timeout=10) as http:
        evidence = reader(graph, http, []).read(NOW - timedelta(days=30), now=NOW)
    assert evidence.state is UsageState.UNKNOWN and "page is not JSON" in evidence.reason
    assert evidence.signins == ()  # never the first page as if it were everything
    graph.broken_page, graph.foreign_link = None, True
    with httpx.Client(timeout=10) as http:
        evidence = reader(graph, http, []).read(NOW - timedelta(days=30), now=NOW)
    assert evidence.state is UsageState.UNKNOWN
    assert "nextLink at another host (graph.example.invalid); refused" in evidence.reason
    assert all("example.invalid" not in r.path for r in graph.requests)


def test_bad_token_is_unknown(graph: GraphEmulator) -> None:
    with httpx.Client(timeout=10) as http:
        evidence = SignInReader(
            base_url=graph.url, tokens=StaticToken("wrong"), http=http, sleep=lambda _: None
        ).read(NOW - timedelta(days=30), now=NOW)
    assert evidence.state is UsageState.UNKNOWN and "HTTP 401" in evidence.reason
