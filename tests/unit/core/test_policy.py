"""The judgement itself: effective state and every control."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from auditor.core.model import Allowlist, Effective, Evaluation, Finding, Status
from auditor.core.policy import effective_state, evaluate, finding_id
from tests.support.builders import MISSING, NOT_COLLECTED, allowlist, cas, mbx, snapshot

TODAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def run(allow: Allowlist | None = None, **kwargs: Any) -> Evaluation:
    return evaluate(snapshot(**kwargs), allow or Allowlist(), TODAY, evaluated_at=NOW)


def by_control(evaluation: Evaluation, control: str) -> list[Finding]:
    return [f for f in evaluation.findings if f.control == control]


def mailbox_finding(evaluation: Evaluation, n: int) -> Finding | None:
    for f in by_control(evaluation, "SMTPAUTH-MAILBOX"):
        if f.mailbox is not None and f.mailbox.guid == f"00000000-0000-4000-8000-{n:012d}":
            return f
    return None


# (organisation value, mailbox value, expected effective state, expected "via")
EFFECTIVE_TABLE = [
    (True, False, Effective.ENABLED, "explicit"),
    (False, False, Effective.ENABLED, "explicit"),
    (NOT_COLLECTED, False, Effective.ENABLED, "explicit"),
    (True, True, Effective.DISABLED, None),
    (False, True, Effective.DISABLED, None),
    (NOT_COLLECTED, True, Effective.DISABLED, None),
    (False, None, Effective.ENABLED, "inherited"),  # the case most tools miss
    (True, None, Effective.DISABLED, None),
    (NOT_COLLECTED, None, Effective.UNKNOWN, None),
    (MISSING, None, Effective.UNKNOWN, None),  # transport config without the property
    (True, MISSING, Effective.UNKNOWN, None),  # property missing is not null
    (False, MISSING, Effective.UNKNOWN, None),
]


@pytest.mark.parametrize(("org", "setting", "expected", "via"), EFFECTIVE_TABLE)
def test_effective_state_table(
    org: Any, setting: Any, expected: Effective, via: str | None
) -> None:
    evaluation = run(org=org, cas_records=[cas(1, setting)], mailboxes=[mbx(1)])
    finding = mailbox_finding(evaluation, 1)
    if expected is Effective.DISABLED:
        assert finding is None
        assert evaluation.counts["mailboxes_disabled"] == 1
    else:
        assert finding is not None
        assert finding.effective is expected
        assert finding.via == via
        assert finding.status is (Status.FAIL if expected is Effective.ENABLED else Status.UNKNOWN)


def test_polarity_trap_true_means_blocked() -> None:
    # SmtpClientAuthenticationDisabled=true is *disabled*; a tool that reads it as "enabled"
    # would report these the other way round.
    assert effective_state(True, True, False) == (Effective.DISABLED, None)
    assert effective_state(False, True, True) == (Effective.ENABLED, "explicit")
    org = run(org=True, cas_records=[])
    assert by_control(org, "SMTPAUTH-ORG")[0].status is Status.PASS
    org = run(org=False, cas_records=[])
    assert by_control(org, "SMTPAUTH-ORG")[0].status is Status.FAIL


def test_org_not_collected_is_unknown_and_exit_3() -> None:
    evaluation = run(org=NOT_COLLECTED, cas_records=[cas(1, True)])
    assert by_control(evaluation, "SMTPAUTH-ORG")[0].status is Status.UNKNOWN
    assert evaluation.exit_code() == 3


def test_mailboxes_not_collected_is_one_unknown_and_no_allowlist_verdicts() -> None:
    evaluation = run(org=True, cas_records=None, allow=allowlist("user1@contoso.com\n"))
    unknown = by_control(evaluation, "SMTPAUTH-MAILBOX")
    assert [f.status for f in unknown] == [Status.UNKNOWN]
    assert unknown[0].subject == "all mailboxes"
    # Nothing can be said of the entry: "unmatched" would be a false statement.
    assert by_control(evaluation, "SMTPAUTH-ALLOWLIST-UNMATCHED") == []
    assert evaluation.exit_code() == 3


def test_get_mailbox_record_without_cas_record_is_unknown_not_hidden() -> None:
    evaluation = run(
        org=True, cas_records=[cas(1, True)], mailboxes=[mbx(1), mbx(2, "SharedMailbox")]
    )
    finding = mailbox_finding(evaluation, 2)
    assert finding is not None
    assert finding.status is Status.UNKNOWN
    assert finding.note is not None and "shared" in finding.note
    assert evaluation.counts["mailboxes"] == 2


def test_collection_errors_are_unknown_findings() -> None:
    evaluation = run(
        org=True,
        cas_records=[cas(1, True)],
        errors=[{"source": "Get-Mailbox", "message": "HTTP 503 after 5 retries"}],
    )
    errors = by_control(evaluation, "SMTPAUTH-COLLECTION")
    assert len(errors) == 1 and errors[0].status is Status.UNKNOWN
    assert "503" in errors[0].reason
    assert evaluation.exit_code() == 3


def test_allowlisted_mailbox_is_exempt_by_any_identity() -> None:
    identities = [
        "00000000-0000-4000-8000-000000000001",
        "{00000000-0000-4000-8000-000000000001}",
        "11111111-0000-4000-8000-000000000001",
        "USER1@contoso.com",
        "alias1@CONTOSO.net",  # secondary smtp proxy address
        "smtp:alias1@contoso.net",
        "u1@contoso.onmicrosoft.com",  # UPN
        "user1",  # alias / name / identity
    ]
    for identity in identities:
        evaluation = run(
            org=True, cas_records=[cas(1, False)], mailboxes=[mbx(1)], allow=allowlist(identity)
        )
        finding = mailbox_finding(evaluation, 1)
        assert finding is not None and finding.status is Status.EXEMPT, identity
        assert evaluation.exit_code() == 0, identity


def test_x500_address_and_display_name_do_not_match() -> None:
    record = mbx(1, DisplayName="Printer Floor 2")
    for identity in ("/o=x/cn=u1", "X500:/o=x/cn=u1", "Printer Floor 2"):
        evaluation = run(
            org=True, cas_records=[cas(1, False)], mailboxes=[record], allow=allowlist(identity)
        )
        finding = mailbox_finding(evaluation, 1)
        assert finding is not None and finding.status is Status.FAIL, identity


def test_sam_account_name_matches() -> None:
    evaluation = run(
        org=True,
        cas_records=[cas(1, False, SamAccountName="$ABC123")],
        mailboxes=[mbx(1)],
        allow=allowlist("$abc123"),
    )
    finding = mailbox_finding(evaluation, 1)
    assert finding is not None and finding.status is Status.EXEMPT


def test_ambiguous_entry_exempts_none() -> None:
    # Two mailboxes share the name "printer".
    records = [cas(1, False, Name="printer"), cas(2, False, Name="printer")]
    evaluation = run(
        org=True, cas_records=records, mailboxes=[mbx(1), mbx(2)], allow=allowlist("printer")
    )
    assert {f.status for f in by_control(evaluation, "SMTPAUTH-MAILBOX")} == {Status.FAIL}
    ambiguous = by_control(evaluation, "SMTPAUTH-ALLOWLIST-AMBIGUOUS")
    assert len(ambiguous) == 1 and "2 mailboxes" in ambiguous[0].reason
    first = mailbox_finding(evaluation, 1)
    assert first is not None and "exempts none" in first.reason


def test_two_entries_for_one_mailbox_are_not_ambiguous() -> None:
    allow = allowlist("user1\nuser1@contoso.com\n")
    evaluation = run(org=True, cas_records=[cas(1, False)], mailboxes=[mbx(1)], allow=allow)
    finding = mailbox_finding(evaluation, 1)
    assert finding is not None and finding.status is Status.EXEMPT
    assert by_control(evaluation, "SMTPAUTH-ALLOWLIST-AMBIGUOUS") == []


def test_unmatched_entry_warns_or_is_unknown_without_directory() -> None:
    allow = allowlist("ghost@contoso.com")
    evaluation = run(org=True, cas_records=[cas(1, True)], mailboxes=[mbx(1)], allow=allow)
    [finding] = by_control(evaluation, "SMTPAUTH-ALLOWLIST-UNMATCHED")
    assert finding.status is Status.WARNING and "allow.txt:1" in finding.reason
    evaluation = run(org=True, cas_records=[cas(1, True)], mailboxes=None, allow=allow)
    [finding] = by_control(evaluation, "SMTPAUTH-ALLOWLIST-UNMATCHED")
    assert finding.status is Status.UNKNOWN


def test_inherited_and_unused_allowlist_findings() -> None:
    allow = allowlist("user1\nuser2\n")
    evaluation = run(
        org=False, cas_records=[cas(1, None), cas(2, True)], mailboxes=[mbx(1), mbx(2)], allow=allow
    )
    [inherited] = by_control(evaluation, "SMTPAUTH-ALLOWLIST-INHERITED")
    assert inherited.subject == "user1" and inherited.via == "inherited"
    [unused] = by_control(evaluation, "SMTPAUTH-ALLOWLIST-UNUSED")
    assert unused.subject == "user2"
    exempt = mailbox_finding(evaluation, 1)
    assert exempt is not None and exempt.status is Status.EXEMPT


def test_expired_exception_fails_and_names_the_date() -> None:
    allow = allowlist("Identity,Owner,Expires\nuser1,ops@contoso.com,2026-11-26\n", csv_format=True)
    evaluation = run(org=True, cas_records=[cas(1, False)], mailboxes=[mbx(1)], allow=allow)
    finding = mailbox_finding(evaluation, 1)
    assert finding is not None and finding.status is Status.FAIL
    assert "expired on 2026-11-26" in finding.reason
    # An expired entry is not "unused" and does not count as a valid exception.
    assert by_control(evaluation, "SMTPAUTH-ALLOWLIST-UNUSED") == []


def test_exception_valid_through_its_expiry_day_and_expiring_warning() -> None:
    allow = allowlist(
        "Identity,Expires\nuser1,2026-11-27\nuser2,2026-12-11\nuser3,2026-12-12\n", csv_format=True
    )
    evaluation = run(
        org=True,
        cas_records=[cas(1, False), cas(2, False), cas(3, False)],
        mailboxes=[mbx(1), mbx(2), mbx(3)],
        allow=allow,
    )
    assert {f.status for f in by_control(evaluation, "SMTPAUTH-MAILBOX")} == {Status.EXEMPT}
    expiring = {f.subject for f in by_control(evaluation, "SMTPAUTH-EXCEPTION-EXPIRING")}
    assert expiring == {"user1", "user2"}  # 0 and 14 days ahead; 15 days is outside the window


def test_finding_ids_are_stable_and_distinct() -> None:
    first = run(org=False, cas_records=[cas(1, False), cas(2, None)], mailboxes=[mbx(1), mbx(2)])
    second = run(org=False, cas_records=[cas(2, None), cas(1, False)], mailboxes=[mbx(2), mbx(1)])
    assert {f.id for f in first.findings} == {f.id for f in second.findings}
    assert len({f.id for f in first.findings}) == len(first.findings)
    assert finding_id("SMTPAUTH-ORG", "organisation") == by_control(first, "SMTPAUTH-ORG")[0].id
    for f in first.findings:
        assert not set(f.id) & set("/\\#?")


def test_references_and_exit_codes() -> None:
    evaluation = run(org=True, cas_records=[cas(1, True)], mailboxes=[mbx(1)])
    assert evaluation.exit_code() == 0
    evaluation = run(org=True, cas_records=[cas(1, False)], mailboxes=[mbx(1)])
    assert evaluation.exit_code() == 1
    evaluation = run(org=True, cas_records=[cas(1, MISSING)], mailboxes=[mbx(1)])
    assert evaluation.exit_code() == 3


def test_counts() -> None:
    evaluation = run(
        org=False,
        cas_records=[cas(1, False), cas(2, None), cas(3, True), cas(4, MISSING)],
        mailboxes=[mbx(1), mbx(2), mbx(3), mbx(4), mbx(5)],
    )
    c = evaluation.counts
    assert (c["mailboxes"], c["mailboxes_enabled"], c["mailboxes_enabled_explicit"]) == (5, 2, 1)
    assert (c["mailboxes_enabled_inherited"], c["mailboxes_disabled"], c["mailboxes_unknown"]) == (
        1,
        1,
        2,
    )
    assert c["fail"] == 3  # two mailboxes and the organisation
    assert c["unknown"] == 2
