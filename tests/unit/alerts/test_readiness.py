"""The alert says who used SMTP AUTH (readiness), on the card and in the mail."""

from __future__ import annotations

import json

from auditor.alerts.decide import decide
from auditor.alerts.mail import build_email
from auditor.alerts.teams import build_message
from auditor.core.model import Allowlist
from auditor.core.policy import evaluate
from auditor.core.usage import UsageEvidence
from tests.support.builders import allowlist, cas, mbx, snapshot
from tests.support.usage import NOW, collected, signin

EXPECTED = (
    "SMTP AUTH sign-ins in the last 30 days: 2 mailbox(es) used it, 1 allowlisted, "
    "1 not allowlisted; 1 will break at the organisation switch, 0 at the mailbox revocation; "
    "0 stale exception(s)"
)


def alert_for(usage: UsageEvidence | None, allow: Allowlist) -> object:
    evaluation = evaluate(
        snapshot(org=False, cas_records=[cas(1, False), cas(2)], mailboxes=[mbx(1), mbx(2)]),
        allow,
        NOW.date(),
        evaluated_at=NOW,
        usage=usage,
    )
    alert = decide(evaluation, None, run_id="r1", complete=True, errors=(), expiring_days=14)
    assert alert is not None
    return alert


def test_card_and_mail_show_the_readiness() -> None:
    alert = alert_for(collected(signin(1), signin(2)), allowlist("user1@contoso.com\n"))
    card = json.dumps(build_message(alert))  # type: ignore[arg-type]
    assert '"title": "Readiness"' in card and EXPECTED in card
    email = build_email(alert)  # type: ignore[arg-type]
    assert f"Readiness: {EXPECTED}" in email.text
    assert EXPECTED in email.html


def test_unknown_usage_is_said_and_off_says_nothing_new() -> None:
    alert = alert_for(UsageEvidence.unknown("licence: no P1"), Allowlist())
    assert "Readiness: usage evidence: unknown (licence: no P1)" in build_email(alert).text  # type: ignore[arg-type]
    off = alert_for(None, Allowlist())
    assert "Readiness" not in build_email(off).text  # type: ignore[arg-type]
