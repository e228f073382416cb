"""An audit run end to end with alerts: the Exchange emulator over HTTP, the history store in
Azurite (also the alert ledger), and local Teams / Graph receivers. Each change is told exactly
once; a night without change is silent; a broken collection is told every time."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from auditor.app.alerting import run_alerter
from auditor.app.audit import AuditIncomplete, Collector, run_audit
from auditor.app.settings import Settings
from devkit.emulator import Emulator
from devkit.tenantgen import generate_tenant
from tests.support.builders import EMULATOR_TOKEN, emulator_collector
from tests.support.receivers import ReceiverPool, Reply
from tests.support.store_helpers import new_store

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    # Its own tenant: this test changes mailboxes and adds faults.
    with Emulator(generate_tenant(120, seed=23), token=EMULATOR_TOKEN) as emu:
        yield emu


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def collector(emu: Emulator, http: httpx.Client) -> Collector:
    return emulator_collector(emu, http, EMULATOR_TOKEN)


def cards(teams: Any) -> list[dict[str, Any]]:
    return [r.json()["attachments"][0]["content"] for r in teams.requests]


def headline_of(card: dict[str, Any]) -> str:
    container = card["body"][0]
    return str(container["items"][1]["inlines"][0]["text"])


def test_audit_runs_alert_exactly_once_per_change(
    azurite: str, emulator: Emulator, receivers: ReceiverPool, http: httpx.Client
) -> None:
    teams = receivers.start("teams", default=Reply(202))
    graph = receivers.start("graph", default=Reply(202))
    settings = Settings.from_env(
        {
            "ALERT_TEAMS_WEBHOOK_URL": f"{teams.url}/workflows/w1/invoke?sig=c2VjcmV0c2ln",
            "ALERT_EMAIL_FROM": "auditor@contoso.com",
            "ALERT_EMAIL_TO": "secops@contoso.com",
            "GRAPH_BASE_URL": graph.url,
            "GRAPH_ACCESS_TOKEN": "graph-test-token",
            "ALERT_REPORT_BASE_URL": "https://reports.contoso.example/runs",
        }
    )
    store = new_store(azurite)
    days = itertools.count()
    alerter = run_alerter(settings, http=http, ledger=store, sleep=lambda _: None)
    collect = collector(emulator, http)

    def audit() -> Any:
        return run_audit(
            store=store,
            collect=collect,
            tenant=emulator.domain,
            clock=lambda: T0 + timedelta(days=next(days)),
            alerter=alerter,
        )

    # Night 1: the baseline, one message per channel, however many violations.
    first = audit()
    assert first.baseline and first.counts["fail"] > 1
    assert first.alerts == {"teams": "sent", "email": "sent"}
    assert len(teams.requests) == 1 and len(graph.requests) == 1
    assert headline_of(cards(teams)[0]).startswith("First audit: baseline, ")
    subject = graph.requests[0].json()["message"]["subject"]
    assert subject == f"[SMTP AUTH] contoso: baseline, {first.counts['fail']} violations"
    assert cards(teams)[0]["actions"][0]["url"].endswith(first.run_id)

    # Night 2: nothing changed: silent.
    second = audit()
    assert second.alerts == {"decision": "nothing to tell"}
    assert len(teams.requests) == 1 and len(graph.requests) == 1

    # Night 3: one mailbox newly enabled explicitly: exactly that one is told.
    disabled = next(
        g
        for g, r in sorted(emulator.state.cas.items())
        if r.get("SmtpClientAuthenticationDisabled") is True
    )
    emulator.state.cas[disabled]["SmtpClientAuthenticationDisabled"] = False
    address = emulator.state.cas[disabled]["PrimarySmtpAddress"]
    third = audit()
    assert third.alerts == {"teams": "sent", "email": "sent"}
    assert len(teams.requests) == 2 and len(graph.requests) == 2
    card = cards(teams)[1]
    assert headline_of(card) == "What changed: 1 new violation"
    runs = [i["text"] for b in card["body"] if b["type"] == "RichTextBlock" for i in b["inlines"]]
    assert address in runs
    assert graph.requests[1].json()["message"]["subject"] == "[SMTP AUTH] contoso: 1 new violation"

    # The Function is retried for night 3: the ledger in Table Storage stops a second send.
    from auditor.alerts.decide import decide
    from auditor.alerts.deliver import deliver
    from auditor.app.wiring import alert_channels

    assert third.evaluation is not None
    again = decide(
        third.evaluation, None, run_id=third.run_id, complete=True, errors=[], expiring_days=14
    )
    assert again is not None
    report = deliver(again, alert_channels(settings), http=http, ledger=store)
    assert {r.status for r in report.results} == {"already-sent"}
    assert len(teams.requests) == 2 and len(graph.requests) == 2

    # Night 4: it is fixed again: told once as resolved.
    emulator.state.cas[disabled]["SmtpClientAuthenticationDisabled"] = True
    audit()
    assert len(teams.requests) == 3
    assert headline_of(cards(teams)[2]) == "What changed: 1 resolved"

    # Nights 5 and 6: the CAS listing is denied: told every night it persists, never "resolved".
    emulator.faults.add("deny", cmdlet="Get-CASMailbox", times=None)
    for night in (5, 6):
        with pytest.raises(AuditIncomplete):
            audit()
        assert len(teams.requests) == night - 1
        headline = headline_of(cards(teams)[-1])
        assert "audit incomplete" in headline and "resolved" not in headline
    # Secrets stayed out of what was posted.
    for request in [*teams.requests, *graph.requests]:
        assert b"c2VjcmV0c2ln" not in request.body and b"graph-test-token" not in request.body


def test_a_failed_collection_alerts_and_still_raises(
    azurite: str, receivers: ReceiverPool, http: httpx.Client
) -> None:
    from auditor.core.errors import CollectionFailed

    teams = receivers.start("teams", default=Reply(202))
    settings = Settings.from_env({"ALERT_TEAMS_WEBHOOK_URL": f"{teams.url}/w?sig=abcdefgh12"})
    store = new_store(azurite)

    def broken(now: datetime) -> dict[str, Any]:
        raise CollectionFailed("token endpoint unreachable")

    with pytest.raises(CollectionFailed, match="token endpoint unreachable"):
        run_audit(
            store=store,
            collect=broken,
            tenant="contoso.onmicrosoft.com",
            clock=lambda: T0,
            alerter=run_alerter(settings, http=http, ledger=store),
        )
    (card,) = cards(teams)
    assert "audit incomplete" in headline_of(card)
    texts = [i["text"] for b in card["body"] if b["type"] == "RichTextBlock" for i in b["inlines"]]
    assert ": token endpoint unreachable" in texts
    run_id = store.runs()[0].run_id
    assert store.alert_deliveries(run_id) == {"teams": "sent", "email": "not-configured"}


def test_alert_channel_down_does_not_fail_the_audit(
    azurite: str, emulator: Emulator, receivers: ReceiverPool, http: httpx.Client
) -> None:
    teams = receivers.start("teams", default=Reply(503))
    settings = Settings.from_env({"ALERT_TEAMS_WEBHOOK_URL": f"{teams.url}/w?sig=abcdefgh12"})
    store = new_store(azurite)
    summary = run_audit(
        store=store,
        collect=collector(emulator, http),
        tenant=emulator.domain,
        clock=lambda: T0,
        alerter=run_alerter(settings, http=http, ledger=store, sleep=lambda _: None),
    )
    assert summary.complete
    assert summary.alerts == {"teams": "failed", "email": "not-configured"}
    assert len(teams.requests) == 4
    assert "alert_teams=" in summary.log_line()


def test_alert_links_to_the_runs_remediation_proposal(
    azurite: str, emulator: Emulator, receivers: ReceiverPool, http: httpx.Client
) -> None:
    from azure.data.tables import TableServiceClient

    from auditor.app.wiring import proposer_from_settings

    teams = receivers.start("teams", default=Reply(202))
    graph = receivers.start("graph", default=Reply(202))
    settings = Settings.from_env(
        {
            "ALERT_TEAMS_WEBHOOK_URL": f"{teams.url}/workflows/w1/invoke?sig=c2VjcmV0c2ln",
            "ALERT_EMAIL_FROM": "auditor@contoso.com",
            "ALERT_EMAIL_TO": "secops@contoso.com",
            "GRAPH_BASE_URL": graph.url,
            "GRAPH_ACCESS_TOKEN": "graph-test-token",
            "REMEDIATION_PUBLIC_URL": "https://auditor.contoso.example",
            "AUDITOR_TABLE_PREFIX": f"lnk{datetime.now(UTC):%H%M%S%f}",
        }
    )
    store = new_store(azurite)
    summary = run_audit(
        store=store,
        collect=collector(emulator, http),
        tenant=emulator.domain,
        clock=lambda: T0,
        alerter=run_alerter(settings, http=http, ledger=store, sleep=lambda _: None),
        proposer=proposer_from_settings(
            settings, tables=TableServiceClient.from_connection_string(azurite)
        ),
    )
    revocations = [p for p in summary.proposals if p.startswith("rev-")]
    assert revocations, summary.proposals
    buttons = [a["url"] for a in cards(teams)[0]["actions"]]
    links = [u for u in buttons if "/api/remediations/" in u]
    # A button per open proposal: the organisation fix first (the organisation allows SMTP
    # AUTH), then the other revocations, then grants.
    order = sorted(
        summary.proposals,
        key=lambda p: (0 if p.startswith("rev-org") else 1 if p.startswith("rev-") else 2, p),
    )
    assert links == [f"https://auditor.contoso.example/api/remediations/{p}" for p in order]
    assert links[0].rsplit("/", 1)[1].startswith("rev-org")
    html = graph.requests[0].json()["message"]["body"]["content"]
    assert all(link in html for link in links)


def test_a_failed_delivery_is_told_again_by_the_next_run_once(
    azurite: str, emulator: Emulator, receivers: ReceiverPool, http: httpx.Client
) -> None:
    """The alert baseline is the last DELIVERED alert (issue 13): news whose delivery failed
    is told by the next run, exactly once."""
    teams = receivers.start("teams", default=Reply(202))
    settings = Settings.from_env({"ALERT_TEAMS_WEBHOOK_URL": f"{teams.url}/w?sig=abcdefgh12"})
    store = new_store(azurite)
    days = itertools.count()
    alerter = run_alerter(settings, http=http, ledger=store, sleep=lambda _: None)
    collect = collector(emulator, http)

    def audit() -> Any:
        return run_audit(
            store=store,
            collect=collect,
            tenant=emulator.domain,
            clock=lambda: T0 + timedelta(days=next(days)),
            alerter=alerter,
        )

    audit()  # the baseline, delivered
    disabled = next(
        g
        for g, r in sorted(emulator.state.cas.items())
        if r.get("SmtpClientAuthenticationDisabled") is True
    )
    emulator.state.cas[disabled]["SmtpClientAuthenticationDisabled"] = False
    address = emulator.state.cas[disabled]["PrimarySmtpAddress"]
    teams.script(*[Reply(500)] * 4)  # every attempt of the next delivery fails
    failed = audit()
    assert failed.alerts == {"teams": "failed", "email": "not-configured"}
    told = len(teams.requests)
    retold = audit()  # nothing changed since, but the news was never delivered
    assert retold.alerts["teams"] == "sent"
    assert address in teams.requests[told].body.decode()
    assert audit().alerts == {"decision": "nothing to tell"}  # and only once


def test_alert_says_who_enabled_it_and_that_a_deleted_room_is_gone(
    azurite: str, emulator: Emulator, receivers: ReceiverPool, http: httpx.Client
) -> None:
    """Issues 15 and 16: a mailbox enabled by a Set-CASMailbox the audit log records is told
    with who enabled it, in Teams and email; a room mailbox deleted between runs is resolved
    as "no longer in the tenant" with its real type, from the stored state."""
    from tests.integration.test_attribution_e2e import Clock, changes_from, client

    teams = receivers.start("teams", default=Reply(202))
    graph = receivers.start("graph", default=Reply(202))
    settings = Settings.from_env(
        {
            "ALERT_TEAMS_WEBHOOK_URL": f"{teams.url}/workflows/w1/invoke?sig=c2VjcmV0c2ln",
            "ALERT_EMAIL_FROM": "auditor@contoso.com",
            "ALERT_EMAIL_TO": "secops@contoso.com",
            "GRAPH_BASE_URL": graph.url,
            "GRAPH_ACCESS_TOKEN": "graph-test-token",
        }
    )
    store = new_store(azurite)
    clock = Clock(T0)
    emulator.auditlog.clock = clock
    exchange = client(emulator, http)
    alerter = run_alerter(settings, http=http, ledger=store, store=store, sleep=lambda _: None)
    collect = collector(emulator, http)

    def audit() -> Any:
        return run_audit(
            store=store,
            collect=collect,
            tenant=emulator.domain,
            clock=clock,
            alerter=alerter,
            changes=changes_from(exchange),
        )

    cas = emulator.state.cas
    room = next(
        g
        for g, m in sorted(emulator.state.mailboxes.items())
        if m.get("RecipientTypeDetails") == "RoomMailbox" and g in cas
    )
    cas[room]["SmtpClientAuthenticationDisabled"] = False  # an open room: a violation
    room_address = cas[room]["PrimarySmtpAddress"]
    target = next(
        g
        for g, r in sorted(cas.items())
        if r.get("SmtpClientAuthenticationDisabled") is True and g != room
    )
    address = cas[target]["PrimarySmtpAddress"]
    first = audit()  # the baseline
    assert first.baseline and first.alerts == {"teams": "sent", "email": "sent"}

    clock.now = T0 + timedelta(hours=12, minutes=2)
    emulator.auditlog.actor, emulator.auditlog.client_ip = "alice@contoso.com", "198.51.100.8"
    exchange.set_cas_mailbox(target, False)  # audited: alice enabled it at 14:02 UTC
    del cas[room], emulator.state.mailboxes[room]  # the room is deleted
    clock.now = T0 + timedelta(days=1)
    second = audit()
    assert second.alerts == {"teams": "sent", "email": "sent"}
    card = cards(teams)[1]
    assert headline_of(card) == "What changed: 1 new violation, 1 resolved"
    lines = [
        "".join(i["text"] for i in b["inlines"])
        for b in card["body"]
        if b["type"] == "RichTextBlock"
    ]
    told = next(line for line in lines if line.startswith(address))
    assert "enabled by alice@contoso.com at 14:02 UTC (from 198.51.100.8)" in told
    gone = next(line for line in lines if line.startswith(room_address))
    assert "RoomMailbox · Mailbox no longer in the tenant" in gone
    html = graph.requests[1].json()["message"]["body"]["content"]
    assert "enabled by alice@contoso.com at 14:02 UTC" in html
    assert "RoomMailbox" in html and "Mailbox no longer in the tenant" in html
