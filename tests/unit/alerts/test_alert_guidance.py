"""What an alert tells a reader to do: the organisation root cause, buttons for every open
proposal (the organisation fix first when it allows), resolved items that say why, expired
exceptions always listed, and "N more" that says where the rest are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from auditor.alerts.decide import decide
from auditor.alerts.mail import build_email
from auditor.core.model import Allowlist, Evaluation, PreviousRun, PriorFinding
from auditor.core.policy import evaluate
from tests.support.builders import allowlist, cas, mbx, snapshot
from tests.support.report_fixtures import demo_evaluation

DAY1 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def previous_of(evaluation: Evaluation) -> PreviousRun:
    return PreviousRun(
        run_id="run-1",
        evaluated_at=evaluation.evaluated_at,
        org_disabled=evaluation.org_disabled,
        complete=True,
        findings={
            f.id: PriorFinding(f.id, f.control, f.status, f.subject) for f in evaluation.findings
        },
    )


def run(when: datetime, allow: Allowlist, org: bool, boxes: dict[int, bool | None]) -> Evaluation:
    return evaluate(
        snapshot(
            org=org,
            cas_records=[cas(n, v) for n, v in boxes.items()],
            mailboxes=[mbx(n, "SharedMailbox") for n in boxes],
        ),
        allow,
        when.date(),
        evaluated_at=when,
    )


def test_resolved_items_say_why_with_the_mailbox_type() -> None:
    before = run(DAY1, Allowlist(), True, {1: False, 2: False, 3: False, 4: None})
    allow = allowlist("user3@contoso.com\n")
    after = run(DAY2, allow, True, {1: True, 3: False, 4: None})  # 2 deleted, 3 allowlisted
    gone = {f.id for f in before.findings if f.subject == "user2@contoso.com"}
    alert = decide(
        after,
        previous_of(before),
        run_id="run-2",
        complete=True,
        errors=(),
        expiring_days=14,
        removed=gone,
    )
    assert alert is not None
    why = {i.subject: (i.reason, i.kind) for i in alert.resolved}
    assert (
        why["user1@contoso.com"][0] == "Setting changed: SMTP AUTH is now disabled on the mailbox."
    )
    assert why["user2@contoso.com"][0].startswith("Mailbox no longer in the tenant")
    assert why["user3@contoso.com"] == ("Now allowlisted (allow.txt:1).", "SharedMailbox")


def test_the_org_flip_resolves_inherited_mailboxes_by_name() -> None:
    before = run(DAY1, Allowlist(), False, {1: None})
    after = run(DAY2, Allowlist(), True, {1: None})
    alert = decide(
        after, previous_of(before), run_id="run-2", complete=True, errors=(), expiring_days=14
    )
    assert alert is not None
    mailbox = next(i for i in alert.resolved if i.subject == "user1@contoso.com")
    assert mailbox.reason.startswith("Fixed by the organisation change")


def test_fixed_by_remediation() -> None:
    before = run(DAY1, Allowlist(), True, {1: False})
    after = run(DAY2, Allowlist(), True, {1: True})
    fixed = {f.id for f in before.findings if f.subject == "user1@contoso.com"}
    alert = decide(
        after,
        previous_of(before),
        run_id="run-2",
        complete=True,
        errors=(),
        expiring_days=14,
        remediated=fixed,
    )
    assert alert is not None
    assert [i.reason for i in alert.resolved] == ["Fixed by an approved remediation."]


def test_root_cause_links_and_expired_in_the_baseline_email() -> None:
    alert = decide(
        demo_evaluation(inherited=300),
        None,
        run_id="run-1",
        complete=True,
        errors=(),
        expiring_days=14,
        remediation_links=[
            ("rev-mai-1", "https://a.example/m"),
            ("rev-org-1", "https://a.example/o"),
        ],
    )
    assert alert is not None
    assert alert.root_cause is not None and alert.root_cause.fixes == 300
    assert [link.proposal_id for link in alert.links] == ["rev-org-1", "rev-mai-1"]
    assert [i.subject for i in alert.expired] == ["user2@contoso.com"]
    email = build_email(alert)
    assert email.subject.startswith("[SMTP AUTH] contoso: ")
    text = email.text
    assert (
        text.index("Root cause") < text.index("Expired exceptions (1)") < text.index("Violations")
    )
    assert text.index("Review the organisation fix: https://a.example/o") < text.index(
        "Review the mailbox revocations: https://a.example/m"
    )
    assert "1 change fixes 300 mailboxes" in email.html
    assert "see the full report" not in text  # no report link: the hint names the command


def test_org_fix_is_not_first_when_the_org_already_blocks() -> None:
    evaluation = run(DAY1, Allowlist(), True, {1: False})
    alert = decide(
        evaluation,
        None,
        run_id="run-1",
        complete=True,
        errors=(),
        expiring_days=14,
        remediation_links=[
            ("rev-org-1", "https://a.example/o"),
            ("rev-mai-1", "https://a.example/m"),
        ],
    )
    assert alert is not None and alert.root_cause is None
    assert [link.proposal_id for link in alert.links] == ["rev-mai-1", "rev-org-1"]
