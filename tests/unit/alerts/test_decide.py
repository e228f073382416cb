"""The pure alert decision across pairs of runs (issue 5): what is new, persisting, resolved,
unknown, expiring, an organisation flip, a first run, and runs that were incomplete."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from auditor.alerts.decide import SHOWN_MAX, Alert, AlertItem, decide, headline
from auditor.alerts.mail import build_email
from auditor.core.model import (
    Allowlist,
    CollectionError,
    Evaluation,
    PreviousRun,
    PriorFinding,
    Severity,
    Status,
)
from auditor.core.policy import evaluate
from tests.support.builders import MISSING, NOT_COLLECTED, allowlist, cas, mbx, snapshot

DAY1 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def run(
    when: datetime, allow: Allowlist | None = None, *, days: int = 14, **kwargs: Any
) -> Evaluation:
    return evaluate(
        snapshot(**kwargs), allow or Allowlist(), when.date(), evaluated_at=when, expiring_days=days
    )


def previous_of(
    evaluation: Evaluation, run_id: str = "run-1", complete: bool = True
) -> PreviousRun:
    return PreviousRun(
        run_id=run_id,
        evaluated_at=evaluation.evaluated_at,
        org_disabled=evaluation.org_disabled,
        complete=complete,
        findings={
            f.id: PriorFinding(f.id, f.control, f.status, f.subject) for f in evaluation.findings
        },
    )


def tell(
    current: Evaluation,
    previous: PreviousRun | None,
    *,
    complete: bool = True,
    errors: list[CollectionError] | None = None,
    **kwargs: Any,
) -> Alert | None:
    return decide(
        current,
        previous,
        run_id="run-2",
        complete=complete,
        errors=errors or [],
        expiring_days=14,
        **kwargs,
    )


def subjects(items: tuple[AlertItem, ...]) -> list[str]:
    return [i.subject for i in items]


# Org blocks; user1 explicitly enabled (fail), user2 disabled, user3 inherits (disabled).
BASE = [cas(1, False), cas(2, True), cas(3, None)]
BOXES = [mbx(1), mbx(2), mbx(3, "SharedMailbox"), mbx(4)]


def test_first_run_is_one_baseline_summary_not_one_alert_per_mailbox() -> None:
    records = [cas(n, False) for n in range(1, 51)]
    current = run(DAY1, cas_records=records, mailboxes=[mbx(n) for n in range(1, 51)])
    alert = tell(current, None)
    assert alert is not None
    assert alert.kind == "baseline"
    assert alert.triggers == ("baseline",)
    assert len(alert.new) == 50 and alert.open_violations == 50
    assert alert.severity is Severity.HIGH
    assert headline(alert) == "baseline, 50 violations"
    assert alert.previous_run_id is None


def test_a_section_lists_its_first_items_in_order_and_counts_them_all() -> None:
    many = 2 * SHOWN_MAX + 57
    numbers = range(many, 0, -1)  # read in reverse order, some explicitly, the rest inherited
    records = [cas(n, False if n % 3 == 0 else None) for n in numbers]
    boxes = [mbx(n) for n in numbers]
    day1 = run(DAY1, org=False, cas_records=records, mailboxes=boxes)
    baseline = tell(day1, None)
    assert baseline is not None
    assert len(baseline.new) == SHOWN_MAX and baseline.total("new") == many + 1  # + the org
    # The same first items as ordering them all: the organisation, explicit enables, the rest
    full = sorted(
        (f for f in day1.findings if f.status is Status.FAIL),
        key=lambda f: (f.control != "SMTPAUTH-ORG", f.via == "inherited", f.subject.lower()),
    )
    assert subjects(baseline.new) == [f.subject for f in full[:SHOWN_MAX]]
    assert headline(baseline) == f"baseline, {many + 1} violations"
    text = build_email(baseline).text
    assert f"Violations ({many + 1})" in text
    assert f"... and {many + 1 - SHOWN_MAX} more" in text

    # Every mailbox resolved by the organisation blocking, and every one unknown the next night
    day2 = run(DAY2, org=True, cas_records=records, mailboxes=boxes)
    flipped = tell(day2, previous_of(day1))
    assert flipped is not None
    explicit = many // 3
    assert flipped.total("resolved") == many - explicit + 1 and len(flipped.resolved) == SHOWN_MAX
    assert subjects(flipped.resolved)[0] == "organisation"
    assert headline(flipped).startswith(f"organisation now blocks SMTP AUTH, {many - explicit + 1}")
    gone = run(DAY2, org=False, cas_records=[cas(n, MISSING) for n in numbers], mailboxes=boxes)
    unknown = tell(gone, previous_of(day1))
    assert unknown is not None
    assert unknown.total("unknown") == many and len(unknown.unknown) == SHOWN_MAX
    assert f"{many} unknown" in headline(unknown)


def test_first_run_of_a_clean_tenant_is_still_a_baseline() -> None:
    current = run(DAY1, cas_records=[cas(1, True)], mailboxes=[mbx(1)])
    alert = tell(current, None)
    assert alert is not None and alert.kind == "baseline"
    assert alert.new == () and alert.severity is Severity.INFO


def test_persisting_violations_are_not_sent_again() -> None:
    day1 = run(DAY1, cas_records=BASE, mailboxes=BOXES[:3])
    day2 = run(DAY2, cas_records=BASE, mailboxes=BOXES[:3])
    assert tell(day2, previous_of(day1)) is None


def test_digest_when_nothing_changed() -> None:
    day1 = run(DAY1, cas_records=BASE, mailboxes=BOXES[:3])
    day2 = run(DAY2, cas_records=BASE, mailboxes=BOXES[:3])
    alert = tell(day2, previous_of(day1), digest=True)
    assert alert is not None
    assert alert.kind == "digest" and alert.triggers == ("digest",)
    assert alert.new == () and alert.resolved == ()
    assert alert.open_violations == 1 and alert.severity is Severity.INFO
    assert headline(alert) == "no change, 1 open violation"


def test_new_violation_only_the_new_one_with_how_and_since() -> None:
    day1 = run(DAY1, cas_records=BASE, mailboxes=BOXES[:3])
    day2 = run(DAY2, cas_records=[*BASE, cas(4, False)], mailboxes=BOXES)
    alert = tell(day2, previous_of(day1))
    assert alert is not None and alert.kind == "change"
    assert subjects(alert.new) == ["user4@contoso.com"]
    item = alert.new[0]
    assert item.via == "explicit" and item.mailbox_type == "UserMailbox"
    assert item.since == DAY2
    assert alert.triggers == ("new",) and alert.severity is Severity.HIGH
    assert headline(alert) == "1 new violation"


def test_since_comes_from_history_when_known() -> None:
    day1 = run(DAY1, cas_records=BASE, mailboxes=BOXES[:3])
    day2 = run(DAY2, cas_records=[*BASE, cas(4, False)], mailboxes=BOXES)
    new_id = next(f.id for f in day2.findings if f.subject == "user4@contoso.com")
    earlier = DAY1 - timedelta(days=30)
    alert = tell(day2, previous_of(day1), first_seen={new_id: earlier})
    assert alert is not None and alert.new[0].since == earlier


def test_resolved_when_previous_recorded_it_and_current_is_complete() -> None:
    day1 = run(DAY1, cas_records=BASE, mailboxes=BOXES[:3])
    fixed = [cas(1, True), cas(2, True), cas(3, None)]
    day2 = run(DAY2, cas_records=fixed, mailboxes=BOXES[:3])
    alert = tell(day2, previous_of(day1))
    assert alert is not None
    assert subjects(alert.resolved) == ["user1@contoso.com"]
    assert alert.new == () and alert.triggers == ("resolved",)
    assert alert.severity is Severity.LOW


def test_exempted_violation_counts_as_resolved() -> None:
    day1 = run(DAY1, cas_records=BASE, mailboxes=BOXES[:3])
    day2 = run(DAY2, allowlist("user1@contoso.com\n"), cas_records=BASE, mailboxes=BOXES[:3])
    alert = tell(day2, previous_of(day1))
    assert alert is not None and subjects(alert.resolved) == ["user1@contoso.com"]
    assert alert.resolved[0].status is Status.EXEMPT


def test_nothing_resolved_by_an_incomplete_run() -> None:
    day1 = run(DAY1, cas_records=BASE, mailboxes=BOXES[:3])
    # The CAS listing failed: no mailbox can be judged; user1's violation must not be "resolved".
    errors = [{"source": "Get-CASMailbox", "message": "HTTP 503 after 5 retries"}]
    day2 = run(DAY2, cas_records=None, mailboxes=BOXES[:3], errors=errors)
    failure = CollectionError("Get-CASMailbox", "HTTP 503 after 5 retries")
    alert = tell(day2, previous_of(day1), complete=False, errors=[failure])
    assert alert is not None
    assert alert.resolved == ()
    assert "incomplete" in alert.triggers and "unknown" in alert.triggers
    assert alert.errors == (failure,)
    # the collection finding is listed once, as an error, not again as an unknown item
    assert [i.control for i in alert.unknown] == ["SMTPAUTH-MAILBOX"]
    assert alert.severity is Severity.HIGH
    assert "audit incomplete" in headline(alert)


def test_violation_that_became_unknown_is_not_resolved() -> None:
    day1 = run(DAY1, cas_records=BASE, mailboxes=BOXES[:3])
    day2 = run(DAY2, cas_records=[cas(1, MISSING), cas(2, True), cas(3, None)], mailboxes=BOXES[:3])
    alert = tell(day2, previous_of(day1))
    assert alert is not None
    assert alert.resolved == ()
    assert subjects(alert.unknown) == ["user1@contoso.com"]


def test_unknown_evidence_alerts_every_run_it_persists() -> None:
    records = [cas(1, MISSING), cas(2, True)]
    day1 = run(DAY1, cas_records=records, mailboxes=BOXES[:2])
    day2 = run(DAY2, cas_records=records, mailboxes=BOXES[:2])
    for _ in range(2):  # the same unknown, night after night
        alert = tell(day2, previous_of(day1))
        assert alert is not None
        assert alert.triggers == ("unknown",)
        assert subjects(alert.unknown) == ["user1@contoso.com"]
        assert alert.unknown[0].since is None  # persisting, first-seen not known here
        assert alert.severity is Severity.HIGH


def test_failed_collection_alerts_even_without_unknown_findings() -> None:
    day1 = run(DAY1, cas_records=BASE, mailboxes=BOXES[:3])
    day2 = run(DAY2, cas_records=BASE, mailboxes=BOXES[:3])
    alert = tell(day2, previous_of(day1), complete=False, errors=["Get-Mailbox cut short"])
    assert alert is not None
    assert alert.triggers == ("incomplete",)
    assert alert.errors[0].message == "Get-Mailbox cut short"


def test_organisation_flip_to_allowed_is_high_and_lists_inherited_mailboxes() -> None:
    day1 = run(DAY1, org=True, cas_records=BASE, mailboxes=BOXES[:3])
    day2 = run(DAY2, org=False, cas_records=BASE, mailboxes=BOXES[:3])
    alert = tell(day2, previous_of(day1))
    assert alert is not None
    assert alert.org_change is not None and alert.org_change.now_allows
    assert "org-change" in alert.triggers and "new" in alert.triggers
    assert alert.severity is Severity.HIGH
    # the organisation first, then user3 who now inherits "enabled"
    assert subjects(alert.new) == ["organisation", "user3@contoso.com"]
    assert alert.new[1].via == "inherited" and alert.new[1].mailbox_type == "SharedMailbox"
    assert headline(alert).startswith("organisation now ALLOWS SMTP AUTH, 2 new violations")


def test_organisation_flip_to_blocked_is_good_news() -> None:
    day1 = run(DAY1, org=False, cas_records=BASE, mailboxes=BOXES[:3])
    day2 = run(DAY2, org=True, cas_records=BASE, mailboxes=BOXES[:3])
    alert = tell(day2, previous_of(day1))
    assert alert is not None
    assert alert.org_change is not None and not alert.org_change.now_allows
    assert sorted(subjects(alert.resolved)) == ["organisation", "user3@contoso.com"]
    assert alert.severity is Severity.LOW


def test_organisation_not_read_is_unknown_not_a_flip() -> None:
    day1 = run(DAY1, org=True, cas_records=BASE, mailboxes=BOXES[:3])
    day2 = run(DAY2, org=NOT_COLLECTED, cas_records=BASE, mailboxes=BOXES[:3])
    alert = tell(day2, previous_of(day1))
    assert alert is not None
    assert alert.org_change is None
    assert "organisation" in subjects(alert.unknown)


def expiring_allowlist(expires: date) -> Allowlist:
    text = f"Identity,Owner,Expires\nuser1@contoso.com,ops@contoso.com,{expires.isoformat()}\n"
    return allowlist(text, csv_format=True)


def test_exception_expiring_triggers_on_entering_the_window_and_reminders() -> None:
    expires = date(2026, 12, 6)
    allow = expiring_allowlist(expires)

    def day(n: int) -> datetime:
        return datetime(2026, 11, 1, 2, 0, tzinfo=UTC) + timedelta(days=n)

    def evaluation(when: datetime) -> Evaluation:
        return run(when, allow, cas_records=BASE, mailboxes=BOXES[:3])

    # 2026-11-21 is outside the 14-day window; 2026-11-22 enters it.
    outside, entering = evaluation(day(20)), evaluation(day(21))
    alert = tell(entering, previous_of(outside))
    assert alert is not None and alert.triggers == ("expiring",)
    assert subjects(alert.expiring) == ["user1@contoso.com"]
    item = alert.expiring[0]
    assert item.expires == expires and item.days_left == 14 and item.owner == "ops@contoso.com"
    assert alert.severity is Severity.MEDIUM

    # The next day it is still inside the window: no alert of its own.
    assert tell(evaluation(day(22)), previous_of(entering)) is None
    # Reminders at 7, 1 and 0 days left.
    for left in (7, 1, 0):
        today = datetime(2026, 12, 6, 2, 0, tzinfo=UTC) - timedelta(days=left)
        before = evaluation(today - timedelta(days=1))
        alert = tell(evaluation(today), previous_of(before))
        assert alert is not None and alert.triggers == ("expiring",), left
        assert alert.expiring[0].days_left == left
    # Expired: the mailbox's own finding fails (a new violation), no "expiring" item.
    last = evaluation(datetime(2026, 12, 6, 2, 0, tzinfo=UTC))
    alert = tell(evaluation(datetime(2026, 12, 7, 2, 0, tzinfo=UTC)), previous_of(last))
    assert alert is not None
    assert alert.expiring == ()
    assert subjects(alert.new) == ["user1@contoso.com"]


def test_expiring_items_ride_along_in_any_alert_sent() -> None:
    allow = expiring_allowlist(date(2026, 12, 1))
    day1 = run(DAY1, allow, cas_records=BASE, mailboxes=BOXES[:3])
    day2 = run(DAY2, allow, cas_records=[*BASE, cas(4, False)], mailboxes=BOXES)
    alert = tell(day2, previous_of(day1))
    assert alert is not None and alert.triggers == ("new",)
    assert subjects(alert.expiring) == ["user1@contoso.com"]


def test_after_an_incomplete_previous_run_violations_are_told_again() -> None:
    # The previous run could not read the CAS listing: it recorded no mailbox findings.
    day1 = run(DAY1, cas_records=None, mailboxes=BOXES[:3])
    previous = previous_of(day1, complete=False)
    day2 = run(DAY2, cas_records=BASE, mailboxes=BOXES[:3])
    alert = tell(day2, previous)
    assert alert is not None
    assert subjects(alert.new) == ["user1@contoso.com"]
    assert alert.unknown == ()


def test_incomplete_previous_run_still_lets_a_complete_run_resolve_what_it_recorded() -> None:
    day1 = run(DAY1, cas_records=BASE, mailboxes=BOXES[:3])
    previous = previous_of(day1, complete=False)
    fixed = [cas(1, True), cas(2, True), cas(3, None)]
    alert = tell(run(DAY2, cas_records=fixed, mailboxes=BOXES[:3]), previous)
    assert alert is not None and subjects(alert.resolved) == ["user1@contoso.com"]


def test_links_and_run_facts_are_carried() -> None:
    day1 = run(DAY1, cas_records=BASE, mailboxes=BOXES[:3])
    day2 = run(DAY2, cas_records=[*BASE, cas(4, False)], mailboxes=BOXES)
    alert = tell(
        day2,
        previous_of(day1),
        report_url="https://reports.example/run-2",
        remediation_url="https://approve.example/p/1",
    )
    assert alert is not None
    assert alert.report_url == "https://reports.example/run-2"
    assert alert.remediation_url == "https://approve.example/p/1"
    assert alert.run_id == "run-2" and alert.previous_run_id == "run-1"
    assert alert.tenant == "contoso.onmicrosoft.com" and alert.evaluated_at == DAY2
    assert alert.counts["new"] == 1 and alert.counts["fail"] == 2


def test_a_failed_collection_is_told_with_everything_unknown() -> None:
    from auditor.alerts.decide import failed_run_evaluation

    day1 = run(DAY1, cas_records=BASE, mailboxes=BOXES[:3])
    error = CollectionError("collection", "PermissionDenied: not allowed to call Get-Mailbox")
    failed = failed_run_evaluation("contoso.onmicrosoft.com", DAY2, [error])
    alert = tell(failed, previous_of(day1), complete=False, errors=[error])
    assert alert is not None
    assert alert.resolved == ()  # user1's violation is not resolved by a failed read
    assert alert.org_disabled is None and alert.org_change is None
    assert sorted(subjects(alert.unknown)) == ["all mailboxes", "organisation"]
    assert alert.errors == (error,)
    assert alert.severity is Severity.HIGH
    assert headline(alert) == "audit incomplete, 2 unknown"
