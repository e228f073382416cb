"""Alert delivery with the real history store as its ledger (Azurite over HTTP): a retried
Function invocation does not send the same run's alert twice."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
from azure.data.tables import TableServiceClient

from auditor.alerts.deliver import ALREADY_SENT, EMAIL, FAILED, SENT, TEAMS, AlertLedger, deliver
from auditor.app.wiring import alert_channels
from auditor.core.errors import StoreError
from auditor.core.history import MailboxState
from auditor.storage.audit_store import AuditStore
from tests.support.alerting import make_alert, settings_for, webhook
from tests.support.receivers import ReceiverPool, Reply
from tests.support.store_helpers import new_store


def test_store_ledger_prevents_a_second_send(azurite: str, receivers: ReceiverPool) -> None:
    store = new_store(azurite)
    ledger: AlertLedger = store
    teams = receivers.start("teams", default=Reply(202))
    graph = receivers.start("graph", default=Reply(500))
    settings = settings_for(teams=webhook(teams.url), graph=graph.url)
    alert = replace(make_alert(2), run_id="20261127T020000123Z-ab12")
    with httpx.Client() as http:
        first = deliver(
            alert, alert_channels(settings), http=http, ledger=ledger, sleep=lambda s: None
        )
        assert first.status(TEAMS) == SENT and first.status(EMAIL) == FAILED
        assert store.alert_deliveries(alert.run_id) == {TEAMS: SENT, EMAIL: FAILED}

        graph.default = Reply(202)
        second = deliver(
            alert, alert_channels(settings), http=http, ledger=ledger, sleep=lambda s: None
        )
        assert second.status(TEAMS) == ALREADY_SENT and second.status(EMAIL) == SENT
        third = deliver(
            alert, alert_channels(settings), http=http, ledger=ledger, sleep=lambda s: None
        )
        assert {r.status for r in third.results} == {ALREADY_SENT}

    assert len(teams.requests) == 1
    assert len(graph.requests) == 4 + 1
    assert store.alert_deliveries(alert.run_id) == {TEAMS: SENT, EMAIL: SENT}


class _UnreadableStates(AuditStore):
    """A real store whose state records cannot be read (storage failing mid-alert)."""

    def mailbox_states_of(self, keys: Iterable[str]) -> dict[str, MailboxState]:
        raise StoreError("state table unavailable")


def test_unreadable_state_leaves_the_generic_reason_and_the_alert_goes_out(azurite: str) -> None:
    from auditor.alerts.decide import decide
    from auditor.app.alerting import run_facts
    from auditor.core.model import Allowlist, PreviousRun, PriorFinding
    from auditor.core.policy import evaluate
    from tests.support.builders import cas, mbx, snapshot

    store = _UnreadableStates(TableServiceClient.from_connection_string(azurite), prefix="unr1")
    day1 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    day2 = day1 + timedelta(days=1)
    before = evaluate(
        snapshot(cas_records=[cas(1, False)], mailboxes=[mbx(1, "RoomMailbox")]),
        Allowlist(),
        day1.date(),
        evaluated_at=day1,
    )
    after = evaluate(
        snapshot(cas_records=[], mailboxes=[]), Allowlist(), day2.date(), evaluated_at=day2
    )
    previous = PreviousRun(
        "run-1",
        day1,
        True,
        True,
        {f.id: PriorFinding(f.id, f.control, f.status, f.subject) for f in before.findings},
    )
    facts = run_facts(store, after, previous, run_id="run-2", complete=True)
    assert facts.removed == frozenset() and dict(facts.types) == {}
    alert = decide(
        after, previous, run_id="run-2", complete=True, errors=(), expiring_days=14, facts=facts
    )
    assert alert is not None
    (item,) = alert.resolved
    assert item.kind == "Mailbox"  # not known: never a guessed type
    assert item.reason.endswith("(or it was removed).")
