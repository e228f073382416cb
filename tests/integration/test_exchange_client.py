"""ExchangeClient against the emulator over real HTTP: paging, $select, every fault, retries,
token refresh, RBAC, Set-* round-trips."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from auditor.core.errors import CollectionFailed, PermissionDenied
from auditor.core.model import Allowlist, Status
from auditor.core.policy import evaluate
from auditor.core.snapshot import build_snapshot
from auditor.exchange.client import CAS_PROPERTIES, MAILBOX_PROPERTIES, ExchangeClient
from auditor.exchange.collect import collect_snapshot
from auditor.identity.tokens import CachedTokens, StaticToken
from devkit.emulator import Emulator
from tests.conftest import EMULATOR_TOKEN

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


class Sleeps:
    """Records the waits the client asks for instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Rotating:
    """A token provider that hands out tokens in order, one per forced refresh."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.index = 0
        self.forced = 0

    def get_token(self, *, force_refresh: bool = False) -> str:
        if force_refresh:
            self.forced += 1
            self.index = min(self.index + 1, len(self.tokens) - 1)
        return self.tokens[self.index]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def make_client(emu: Emulator, http: httpx.Client, **kw: Any) -> ExchangeClient:
    options: dict[str, Any] = {
        "tokens": StaticToken(EMULATOR_TOKEN),
        "sleep": Sleeps(),
        "jitter": lambda: 0.0,
        "page_size": 20,
    }
    options.update(kw)
    return ExchangeClient(base_url=emu.base_url, tenant=emu.domain, http=http, **options)


def cas_requests(emu: Emulator, cmdlet: str = "Get-CASMailbox") -> list[Any]:
    return [r for r in emu.requests if r.cmdlet == cmdlet]


def test_pages_through_every_mailbox_with_the_documented_headers(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    emu = exchange_emulator
    records = make_client(emu, http, page_size=7).get_cas_mailboxes()
    assert [r["Guid"] for r in records] == list(emu.state.cas)
    sent = cas_requests(emu)
    assert len(sent) == 36  # 250 mailboxes, 7 per page
    first = sent[0]
    assert first.query == "$select=" + ",".join(CAS_PROPERTIES)
    assert first.body == {
        "CmdletInput": {"CmdletName": "Get-CASMailbox", "Parameters": {"ResultSize": "Unlimited"}}
    }
    assert first.headers["x-responseformat"] == "json"
    assert first.headers["prefer"] == "odata.maxpagesize=7"
    assert first.headers["x-anchormailbox"] == (
        f"APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{emu.domain}"
    )
    assert {r.headers["client-request-id"] for r in sent} == {first.headers["client-request-id"]}
    assert all("$skiptoken=" in r.query for r in sent[1:])


def test_select_projects_drops_annotations_and_keeps_null_apart_from_false(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    emu = exchange_emulator
    records = make_client(emu, http).get_cas_mailboxes()
    for record in records:
        assert set(record) == set(CAS_PROPERTIES)
        expected = emu.state.cas[record["Guid"]]["SmtpClientAuthenticationDisabled"]
        assert record["SmtpClientAuthenticationDisabled"] is expected
    values = {r["SmtpClientAuthenticationDisabled"] for r in records}
    assert values == {None, False, True}
    directory = make_client(emu, http).get_mailboxes()
    assert set(directory[0]) <= set(MAILBOX_PROPERTIES)
    assert isinstance(directory[0]["EmailAddresses"], list)


def test_a_property_missing_from_a_record_stays_missing(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    emu = exchange_emulator
    guid = next(iter(emu.state.cas))
    del emu.state.cas[guid]["SmtpClientAuthenticationDisabled"]
    record = make_client(emu, http).get_cas_mailbox(guid)
    # The emulator derives the full record, where the property's default is null.
    assert record["SmtpClientAuthenticationDisabled"] is None


@pytest.mark.parametrize(
    ("kind", "page", "needle"),
    [
        ("adminapi_error", 3, "@adminapi.errors"),
        ("drop", 3, "was cut"),
        ("malformed", 2, "not valid JSON"),
    ],
)
def test_a_broken_page_fails_the_read_never_shortens_it(
    exchange_emulator: Emulator, http: httpx.Client, kind: str, page: int, needle: str
) -> None:
    emu = exchange_emulator
    emu.faults.add(kind, cmdlet="Get-CASMailbox", page=page)
    with pytest.raises(CollectionFailed) as caught:
        make_client(emu, http).get_cas_mailboxes()
    message = str(caught.value)
    assert needle in message
    assert message.startswith("Get-CASMailbox: HTTP 200, request-id ")
    assert "request-id none" not in message


def test_truncation_warning_is_a_failure(exchange_emulator: Emulator, http: httpx.Client) -> None:
    with pytest.raises(CollectionFailed, match="truncated: There are more results available"):
        make_client(exchange_emulator, http).invoke(
            "Get-CASMailbox", {"ResultSize": 100}, select=CAS_PROPERTIES
        )


def test_page_limit_fails_the_read(exchange_emulator: Emulator, http: httpx.Client) -> None:
    with pytest.raises(CollectionFailed, match="more than 3 pages"):
        make_client(exchange_emulator, http, page_size=10, max_pages=3).get_cas_mailboxes()


def test_retry_after_is_honoured_and_the_call_completes(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    emu = exchange_emulator
    emu.faults.add("throttle", cmdlet="Get-CASMailbox", page=2, times=2, retry_after="0.25")
    sleeps = Sleeps()
    records = make_client(emu, http, sleep=sleeps).get_cas_mailboxes()
    assert len(records) == 250
    assert sleeps.calls == [0.25, 0.25]
    page2 = [r for r in cas_requests(emu) if r.page == 2]
    assert [r.status for r in page2] == [429, 429, 200]
    assert len({r.headers["client-request-id"] for r in page2}) == 1


def test_retry_after_is_capped(exchange_emulator: Emulator, http: httpx.Client) -> None:
    emu = exchange_emulator
    emu.faults.add("throttle", cmdlet="Get-TransportConfig", retry_after="7200")
    sleeps = Sleeps()
    make_client(emu, http, sleep=sleeps, max_retry_after=30.0).get_transport_config()
    assert sleeps.calls == [30.0]


def test_persistent_throttling_gives_up_after_five_retries(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    emu = exchange_emulator
    emu.faults.add("throttle", cmdlet="Get-Mailbox", times=None, retry_after="0.5")
    sleeps = Sleeps()
    with pytest.raises(CollectionFailed, match=r"Get-Mailbox: HTTP 429, .*after 5 retries"):
        make_client(emu, http, sleep=sleeps).get_mailboxes()
    assert sleeps.calls == [0.5] * 5
    assert len(cas_requests(emu, "Get-Mailbox")) == 6


@pytest.mark.parametrize("status", [503, 504])
def test_unavailable_backs_off_exponentially(
    exchange_emulator: Emulator, http: httpx.Client, status: int
) -> None:
    emu = exchange_emulator
    emu.faults.add("unavailable", cmdlet="Get-CASMailbox", times=None, status=status)
    sleeps = Sleeps()
    with pytest.raises(CollectionFailed, match=f"HTTP {status}"):
        make_client(emu, http, sleep=sleeps, jitter=lambda: 0.5).get_cas_mailboxes()
    assert sleeps.calls == [3.0, 5.0, 9.0, 17.0, 33.0]  # 2 s x 2^n plus half of 2 s jitter


def test_transient_exchange_exception_is_retried(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    emu = exchange_emulator
    emu.faults.add("transient", cmdlet="Get-CASMailbox", page=4)
    sleeps = Sleeps()
    assert len(make_client(emu, http, sleep=sleeps).get_cas_mailboxes()) == 250
    assert sleeps.calls == [2.0]


def test_expired_token_is_refreshed_exactly_once(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    emu = exchange_emulator
    emu.tokens = {"fresh"}
    tokens = Rotating("stale", "fresh")
    assert (
        make_client(emu, http, tokens=tokens).get_transport_config()[
            "SmtpClientAuthenticationDisabled"
        ]
        is False
    )
    assert tokens.forced == 1
    assert [r.status for r in emu.requests] == [401, 200]


def test_a_refused_refreshed_token_stops(exchange_emulator: Emulator, http: httpx.Client) -> None:
    emu = exchange_emulator
    emu.tokens = {"never-issued"}
    tokens = Rotating("stale", "also-stale", "third")
    with pytest.raises(CollectionFailed, match="refused again after one refresh") as caught:
        make_client(emu, http, tokens=tokens).get_cas_mailboxes()
    assert not isinstance(caught.value, PermissionDenied)
    assert tokens.forced == 1
    assert len(emu.requests) == 2


def test_a_long_run_renews_its_token_before_expiry(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    emu = exchange_emulator
    emu.tokens = {"t1", "t2", "t3", "t4", "t5"}
    now = [0.0]

    def clock() -> float:
        now[0] += 60.0  # every token request is a minute later
        return now[0]

    issued: list[str] = []

    def acquire(renew: bool) -> tuple[str, float]:
        issued.append(f"t{len(issued) + 1}")
        return issued[-1], now[0] + 600.0

    tokens = CachedTokens(acquire, clock=clock, renew_before=300.0)
    assert len(make_client(emu, http, tokens=tokens, page_size=25).get_cas_mailboxes()) == 250
    assert len(issued) >= 2
    assert all(r.status == 200 for r in emu.requests)


def test_rbac_refusal_names_the_role_and_is_not_retried(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    emu = exchange_emulator
    emu.faults.add("deny", cmdlet="Get-Mailbox", times=None)
    tokens = Rotating(EMULATOR_TOKEN, EMULATOR_TOKEN)
    with pytest.raises(PermissionDenied) as caught:
        make_client(emu, http, tokens=tokens).get_mailboxes()
    message = str(caught.value)
    assert "User is not allowed to call Get-Mailbox" in message
    assert "View-Only Recipients" in message
    assert "HTTP 401, request-id " in message
    assert tokens.forced == 0
    assert len(emu.requests) == 1


def test_claims_challenge_is_not_retried(exchange_emulator: Emulator, http: httpx.Client) -> None:
    emu = exchange_emulator
    emu.faults.add("claims", cmdlet="Get-CASMailbox")
    with pytest.raises(CollectionFailed, match="claims challenge"):
        make_client(emu, http).get_cas_mailboxes()
    assert len(emu.requests) == 1


def test_set_cas_mailbox_round_trips_true_false_and_null(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    emu = exchange_emulator
    client = make_client(emu, http)
    setting = "SmtpClientAuthenticationDisabled"
    guid = next(g for g, r in emu.state.cas.items() if r[setting] is None)
    for value in (True, False, None):
        client.set_cas_mailbox(guid, value)
        assert client.get_cas_mailbox(guid)["SmtpClientAuthenticationDisabled"] is value
        assert emu.state.cas[guid]["SmtpClientAuthenticationDisabled"] is value
    sent = [r for r in emu.requests if r.cmdlet == "Set-CASMailbox"][-1]
    assert sent.body["CmdletInput"]["Parameters"] == {
        "Identity": guid,
        "SmtpClientAuthenticationDisabled": None,
    }
    assert "prefer" not in sent.headers
    client.set_cas_mailbox(guid, None)
    assert client.last_warnings and "no settings" in client.last_warnings[0]


def test_set_transport_config_and_its_boolean_only_rule(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    client = make_client(exchange_emulator, http)
    client.set_transport_config(True)
    assert client.get_transport_config()["SmtpClientAuthenticationDisabled"] is True
    with pytest.raises(TypeError):
        client.set_transport_config(None)  # type: ignore[arg-type]
    with pytest.raises(CollectionFailed, match=r"Set-TransportConfig: HTTP 400.*System.Boolean"):
        client.invoke("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": None})


def test_unknown_mailbox_is_a_clear_failure(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    client = make_client(exchange_emulator, http)
    with pytest.raises(CollectionFailed, match="couldn't be found"):
        client.set_cas_mailbox("00000000-0000-0000-0000-000000000000", False)
    with pytest.raises(CollectionFailed, match=r"Get-CASMailbox: HTTP 404"):
        client.get_cas_mailbox("nobody@contoso.com")


def test_collect_snapshot_complete(exchange_emulator: Emulator, http: httpx.Client) -> None:
    emu = exchange_emulator
    document = collect_snapshot(make_client(emu, http), tenant=emu.domain, now=NOW)
    assert document["errors"] == []
    assert document["collected_at"] == "2026-11-26T02:00:00Z"
    snapshot = build_snapshot(document)
    assert snapshot.org_disabled is False
    assert snapshot.mailboxes is not None and len(snapshot.mailboxes) == 250
    assert snapshot.directory_collected


def test_collect_snapshot_partial_leaves_evidence_unknown(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    emu = exchange_emulator
    emu.faults.add("drop", cmdlet="Get-CASMailbox", page=5)
    emu.faults.add("deny", cmdlet="Get-TransportConfig", times=None)
    document = collect_snapshot(make_client(emu, http), tenant=emu.domain, now=NOW)
    assert document["transport_config"] is None
    assert document["cas_mailboxes"] is None
    assert len(document["mailboxes"]) == 250
    sources = [e["source"] for e in document["errors"]]
    assert sources == ["Get-TransportConfig", "Get-CASMailbox"]
    assert "View-Only Configuration" in document["errors"][0]["message"]
    snapshot = build_snapshot(document)
    evaluation = evaluate(snapshot, Allowlist(), NOW.date(), evaluated_at=NOW)
    assert evaluation.exit_code() == 3
    assert snapshot.mailboxes is None  # not "no mailboxes": unknown
    unknown = {f.control for f in evaluation.findings if f.status == Status.UNKNOWN}
    assert {"SMTPAUTH-ORG", "SMTPAUTH-COLLECTION"} <= unknown


def test_state_changes_between_runs_are_seen(
    exchange_emulator: Emulator, http: httpx.Client
) -> None:
    emu = exchange_emulator
    client = make_client(emu, http)
    guid = next(iter(emu.state.cas))
    emu.state.cas[guid]["SmtpClientAuthenticationDisabled"] = False
    emu.state.org_disabled = True
    document = collect_snapshot(client, tenant=emu.domain, now=NOW)
    by_guid = {r["Guid"]: r for r in document["cas_mailboxes"]}
    assert by_guid[guid]["SmtpClientAuthenticationDisabled"] is False
    assert document["transport_config"]["SmtpClientAuthenticationDisabled"] is True
