"""What the store knows beyond the evaluation, in the alert (`RunFacts`, issues 15 and 16): who
made a new violation (the audit log's phrase, never a guess), and resolved items that say why,
with the mailbox's real type even when it is no longer in the evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from auditor.alerts.decide import Alert, RunFacts, decide, item_detail
from auditor.alerts.mail import build_email
from auditor.alerts.teams import build_message, serialize
from auditor.core.attribution import Attribution
from auditor.core.model import Allowlist, Evaluation, PreviousRun, PriorFinding
from auditor.core.policy import MAILBOX, ORG, evaluate, finding_id
from tests.support.builders import cas, mbx, snapshot

DAY1 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
ALICE = Attribution(
    "attributed",
    actor="alice@contoso.com",
    at=datetime(2026, 11, 26, 14, 2, tzinfo=UTC),
    client_ip="198.51.100.8",
)
UNREADABLE = Attribution(
    "unknown", reason="the audit log read failed: missing the View-Only Audit Logs role"
)


def fid(n: int) -> str:
    return finding_id(MAILBOX, f"00000000-0000-4000-8000-{n:012d}")


def run(
    when: datetime, org: bool, boxes: dict[int, bool | None], kinds: dict[int, str] | None = None
) -> Evaluation:
    kinds = kinds or {}
    return evaluate(
        snapshot(
            org=org,
            cas_records=[cas(n, v) for n, v in boxes.items()],
            mailboxes=[mbx(n, kinds.get(n, "UserMailbox")) for n in boxes],
        ),
        Allowlist(),
        when.date(),
        evaluated_at=when,
    )


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


def tell(current: Evaluation, previous: PreviousRun, facts: RunFacts) -> Alert:
    alert = decide(
        current,
        previous,
        run_id="run-2",
        complete=True,
        errors=(),
        expiring_days=14,
        facts=facts,
    )
    assert alert is not None
    return alert


def test_a_new_violation_says_who_enabled_it() -> None:
    before = run(DAY1, True, {1: True, 2: True})
    after = run(DAY2, True, {1: False, 2: False})
    alert = tell(after, previous_of(before), RunFacts(attributions={fid(1): ALICE}))
    by = {i.subject: i for i in alert.new}
    assert by["user1@contoso.com"].changed_by == (
        "enabled by alice@contoso.com at 14:02 UTC (from 198.51.100.8)"
    )
    detail = item_detail(by["user1@contoso.com"], section="new")
    assert "enabled by alice@contoso.com at 14:02 UTC" in detail
    # no record for the other one: nothing is said about who, never someone else's name
    assert by["user2@contoso.com"].changed_by is None
    assert "alice" not in item_detail(by["user2@contoso.com"], section="new")


def test_an_unreadable_audit_log_says_unknown_never_a_name() -> None:
    before = run(DAY1, True, {1: True})
    after = run(DAY2, True, {1: False})
    alert = tell(after, previous_of(before), RunFacts(attributions={fid(1): UNREADABLE}))
    (item,) = alert.new
    assert item_detail(item, section="new").endswith(
        "enabled by: unknown (the audit log read failed: missing the View-Only Audit Logs role)"
    )
    pending = Attribution("pending", reason="audit records can take up to 24 h")
    alert = tell(after, previous_of(before), RunFacts(attributions={fid(1): pending}))
    assert "enabled by: not yet in the audit log" in item_detail(alert.new[0], section="new")


def test_the_org_flip_and_root_cause_say_who_opened_it() -> None:
    before = run(DAY1, True, {1: None})
    after = run(DAY2, False, {1: None})
    bob = Attribution("attributed", actor="bob@contoso.com", at=DAY1.replace(hour=14, minute=2))
    alert = tell(after, previous_of(before), RunFacts(org=bob))
    assert alert.org_change is not None and alert.root_cause is not None
    assert alert.root_cause.changed_by == "enabled by bob@contoso.com at 14:02 UTC"
    org_item = next(i for i in alert.new if i.finding_id == finding_id(ORG, "organisation"))
    assert org_item.changed_by == "enabled by bob@contoso.com at 14:02 UTC"
    email = build_email(alert)
    assert (
        "Root cause: the organisation allows SMTP AUTH (enabled by bob@contoso.com at 14:02 UTC)."
        in email.text
    )
    assert (
        "(changed; was SMTP AUTH blocked (SmtpClientAuthenticationDisabled = true); enabled "
        "by bob@contoso.com at 14:02 UTC)"
    ) in email.text
    assert "enabled by bob@contoso.com at 14:02 UTC" in serialize(build_message(alert)).decode()


def test_removed_mailbox_is_told_as_gone_with_its_real_type() -> None:
    before = run(DAY1, True, {1: False, 2: False}, {2: "RoomMailbox"})
    after = run(DAY2, True, {1: False})  # the room was deleted
    facts = RunFacts(
        removed=frozenset({fid(2)}), looked_up=frozenset({fid(2)}), types={fid(2): "RoomMailbox"}
    )
    alert = tell(after, previous_of(before), facts)
    (item,) = alert.resolved
    assert item.subject == "user2@contoso.com"
    assert item.reason.startswith("Mailbox no longer in the tenant")
    assert item.kind == "RoomMailbox"
    assert item_detail(item, section="resolved").startswith("RoomMailbox · Mailbox no longer")


def test_disabled_mailbox_is_resolved_with_its_real_type() -> None:
    before = run(DAY1, True, {1: False}, {1: "SharedMailbox"})
    after = run(DAY2, True, {1: True}, {1: "SharedMailbox"})  # disabled: no finding any more
    facts = RunFacts(looked_up=frozenset({fid(1)}), types={fid(1): "SharedMailbox"})
    alert = tell(after, previous_of(before), facts)
    (item,) = alert.resolved
    assert item.kind == "SharedMailbox"
    assert item.reason == "Setting changed: SMTP AUTH is now disabled on the mailbox."
    # without the stored type it is only "Mailbox": the facts are what tell the type
    bare = tell(after, previous_of(before), RunFacts())
    assert bare.resolved[0].kind == "Mailbox"
    assert bare.resolved[0].reason.endswith("(or it was removed).")


def test_remediated_mailbox_names_the_proposal() -> None:
    before = run(DAY1, True, {1: False, 2: False})
    after = run(DAY2, True, {1: True, 2: True})
    facts = RunFacts(remediated={fid(1): "rev-mai-20261126-ab12", fid(2): ""})
    alert = tell(after, previous_of(before), facts)
    why = {i.subject: i.reason for i in alert.resolved}
    assert why == {
        "user1@contoso.com": "Fixed by an approved remediation (rev-mai-20261126-ab12).",
        "user2@contoso.com": "Fixed by an approved remediation.",
    }


def test_teams_card_and_email_say_who_enabled_it() -> None:
    before = run(DAY1, True, {1: True})
    after = run(DAY2, True, {1: False})
    alert = tell(after, previous_of(before), RunFacts(attributions={fid(1): ALICE}))
    card = serialize(build_message(alert)).decode()
    assert "enabled by alice@contoso.com at 14:02 UTC" in card
    email = build_email(alert)
    assert "enabled by alice@contoso.com at 14:02 UTC" in email.html
    assert "enabled by alice@contoso.com at 14:02 UTC" in email.text
