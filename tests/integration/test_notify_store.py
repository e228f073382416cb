"""Alert delivery with the real history store as its ledger (Azurite over HTTP): a retried
Function invocation does not send the same run's alert twice."""

from __future__ import annotations

from dataclasses import replace

import httpx

from auditor.alerts.deliver import ALREADY_SENT, EMAIL, FAILED, SENT, TEAMS, AlertLedger, deliver
from auditor.app.wiring import alert_channels
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
