"""Alerts and alert settings for tests: one small alert built through the real pipeline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from auditor.alerts.decide import Alert, decide
from auditor.app.settings import Settings
from auditor.core.model import Allowlist
from auditor.core.policy import evaluate
from tests.support.builders import cas, mbx, snapshot

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
SIG = "sig=Zm9vYmFyU2VjcmV0U2lnbmF0dXJl"
TOKEN = "graph-token-abc.def.ghi"


def make_alert(violations: int = 3, **kwargs: Any) -> Alert:
    records = [cas(n, False) for n in range(1, violations + 1)]
    evaluation = evaluate(
        snapshot(cas_records=records, mailboxes=[mbx(n) for n in range(1, violations + 1)]),
        Allowlist(),
        NOW.date(),
        evaluated_at=NOW,
    )
    alert = decide(
        evaluation,
        None,
        run_id="20261127T020000Z-ab12",
        complete=kwargs.pop("complete", True),
        errors=kwargs.pop("errors", []),
        expiring_days=14,
        **kwargs,
    )
    assert alert is not None
    return alert


def settings_for(teams: str | None = None, graph: str | None = None, **extra: str) -> Settings:
    env = dict(extra)
    if teams is not None:
        env["ALERT_TEAMS_WEBHOOK_URL"] = teams
    if graph is not None:
        env.update(
            GRAPH_BASE_URL=graph,
            ALERT_EMAIL_FROM="alerts@contoso.com",
            ALERT_EMAIL_TO="secops@contoso.com, exo-admins@contoso.com",
        )
        env.setdefault("GRAPH_ACCESS_TOKEN", TOKEN)
    return Settings.from_env(env)


def webhook(base: str) -> str:
    return f"{base}/workflows/abc123/triggers/manual/paths/invoke?api-version=1&{SIG}"
