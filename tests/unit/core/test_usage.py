"""Usage evidence: matching sign-ins to mailboxes, success vs failure, and the usage controls."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from auditor.core.model import Allowlist, Evaluation, Finding, Status
from auditor.core.policy import evaluate
from auditor.core.usage import (
    UsageEvidence,
    UsageState,
    break_note,
    decode_usage,
    encode_usage,
    match_usage,
    merge_signins,
    parse_signin,
)
from auditor.reports.findings import findings_document, render_text
from devkit.graph_emulator import signin_record
from tests.support.builders import allowlist, cas, mbx, snapshot
from tests.support.usage import NOW, collected, oid, signin, upn

TODAY = NOW.date()


def run(usage: UsageEvidence | None, allow: Allowlist | None = None, **kwargs: Any) -> Evaluation:
    return evaluate(snapshot(**kwargs), allow or Allowlist(), TODAY, evaluated_at=NOW, usage=usage)


def of(evaluation: Evaluation, control: str) -> list[Finding]:
    return [f for f in evaluation.findings if f.control == control]


def test_parse_keeps_only_smtp_auth_and_reads_status() -> None:
    ok = parse_signin(signin_record(upn="A@X.com", user_id="ID", at=NOW))
    assert ok is not None and ok.succeeded and ok.upn == "a@x.com" and ok.user_id == "id"
    failed = parse_signin(signin_record(upn="a@x.com", user_id="id", at=NOW, error_code=50126))
    assert failed is not None and not failed.succeeded and failed.error_code == 50126
    legacy = parse_signin(signin_record(upn="a@x.com", user_id="id", at=NOW, client_app="SMTP"))
    assert legacy is not None
    browser = signin_record(upn="a@x.com", user_id="id", at=NOW, client_app="Browser")
    assert parse_signin(browser) is None
    no_status = signin_record(upn="a@x.com", user_id="id", at=NOW)
    del no_status["status"]
    parsed = parse_signin(no_status)
    assert parsed is not None and not parsed.succeeded  # no readable status is never a use


def test_match_by_object_id_then_upn_case_insensitive() -> None:
    snap = snapshot(cas_records=[cas(1), cas(2), cas(3)], mailboxes=[mbx(1), mbx(2), mbx(3)])
    assert snap.mailboxes is not None
    evidence = collected(
        # object id of 1, with a UPN of 2: the object id wins
        signin(1, upn=upn(2), user_id=oid(1).upper()),
        # unknown object id, UPN of 2 in capitals: matched by UPN
        signin(2, upn=upn(2).upper(), user_id="99999999-0000-4000-8000-000000000000"),
        # nobody
        signin(upn="ghost@contoso.com", user_id="88888888-0000-4000-8000-000000000000"),
    )
    matched = match_usage(evidence, snap.mailboxes)
    by_guid = {m.guid: matched.of(m) for m in snap.mailboxes}
    first, second, third = (by_guid[f"00000000-0000-4000-8000-{n:012d}"] for n in (1, 2, 3))
    assert first is not None and first.successes == 1
    assert second is not None and second.successes == 1
    assert third is None
    assert matched.unmatched == 1


def test_success_and_failure_counted_apart_with_last_use() -> None:
    snap = snapshot(cas_records=[cas(1)], mailboxes=[mbx(1)])
    assert snap.mailboxes is not None
    evidence = collected(
        signin(1, at=NOW - timedelta(days=3), ip="198.51.100.1", app="Scanner"),
        signin(1, at=NOW - timedelta(days=1), ip="198.51.100.2", app="Printer"),
        signin(1, at=NOW - timedelta(hours=1), error_code=50126, ip="192.0.2.9"),
        signin(1, at=NOW - timedelta(days=40)),  # outside the 30-day window
    )
    use = match_usage(evidence, snap.mailboxes).of(snap.mailboxes[0])
    assert use is not None
    assert (use.successes, use.failures) == (2, 1)
    assert use.last_success == NOW - timedelta(days=1)
    assert (use.last_ip, use.last_app) == ("198.51.100.2", "Printer")  # last *successful* use
    assert use.last_failure == NOW - timedelta(hours=1)
    note = break_note(use)
    assert note.startswith("will break: last used 2026-11-26 03:00 UTC, from 198.51.100.2")


def test_failures_alone_are_not_use() -> None:
    evaluation = run(
        collected(signin(1, error_code=50126)), org=False, cas_records=[cas(1)], mailboxes=[mbx(1)]
    )
    assert of(evaluation, "SMTPAUTH-USAGE-UNAPPROVED") == []
    assert evaluation.readiness is not None
    assert (evaluation.readiness.used, evaluation.readiness.failures_only) == (0, 1)


def test_stale_exception_and_unapproved_use() -> None:
    allow = allowlist("user1@contoso.com\nuser2@contoso.com\n")
    evaluation = run(
        collected(
            signin(2, at=NOW - timedelta(days=2)),  # allowlisted, used: fine
            signin(3, at=NOW - timedelta(days=5), ip="203.0.113.50", app="Legacy CRM"),
            signin(1, at=NOW - timedelta(days=45)),  # allowlisted, used only before the window
        ),
        allow,
        org=False,
        cas_records=[cas(1, False), cas(2, False), cas(3), cas(4)],
        mailboxes=[mbx(1), mbx(2), mbx(3), mbx(4)],
    )
    stale = of(evaluation, "SMTPAUTH-EXCEPTION-STALE")
    assert [f.subject for f in stale] == ["user1@contoso.com"]
    assert stale[0].status is Status.WARNING
    assert "no successful SMTP AUTH sign-in" in stale[0].reason
    unapproved = of(evaluation, "SMTPAUTH-USAGE-UNAPPROVED")
    assert [f.subject for f in unapproved] == ["user3@contoso.com"]
    assert unapproved[0].status is Status.FAIL and unapproved[0].severity.value == "high"
    assert "203.0.113.50 (Legacy CRM)" in unapproved[0].reason
    assert "enabled (inherited)" in unapproved[0].reason
    r = evaluation.readiness
    assert r is not None and r.state == "collected"
    assert (r.used, r.used_allowlisted, r.used_not_allowlisted) == (2, 1, 1)
    assert (r.break_at_org_switch, r.break_at_revocation, r.stale_exceptions) == (1, 0, 1)
    fails = [f for f in evaluation.findings if f.status is Status.FAIL]
    assert evaluation.counts["fail"] == len(fails)


def test_lookback_days_narrows_the_window() -> None:
    allow = allowlist("user1@contoso.com\n")
    evidence = collected(signin(1, at=NOW - timedelta(days=10)), lookback_days=7)
    evaluation = run(evidence, allow, cas_records=[cas(1, False)], mailboxes=[mbx(1)])
    assert len(of(evaluation, "SMTPAUTH-EXCEPTION-STALE")) == 1


def test_unknown_evidence_is_one_unknown_finding_and_nothing_stale() -> None:
    allow = allowlist("user1@contoso.com\n")
    for reason in (
        "licence: Graph refused (Authentication_RequestFromNonPremiumTenantOrB2CTenant)",
        "permission: Graph refused the sign-in log (Authentication_MSGraphPermissionMissing)",
    ):
        evaluation = run(
            UsageEvidence.unknown(reason, collected_at=NOW),
            allow,
            org=True,
            cas_records=[cas(1, False), cas(2, False)],
            mailboxes=[mbx(1), mbx(2)],
        )
        unknown = of(evaluation, "SMTPAUTH-USAGE-EVIDENCE")
        assert len(unknown) == 1 and unknown[0].status is Status.UNKNOWN
        assert unknown[0].subject == "sign-in evidence" and reason in unknown[0].reason
        assert of(evaluation, "SMTPAUTH-EXCEPTION-STALE") == []
        assert of(evaluation, "SMTPAUTH-USAGE-UNAPPROVED") == []
        assert evaluation.readiness is not None and evaluation.readiness.state == "unknown"
        assert findings_document(evaluation)["readiness"]["reason"] == reason


def test_off_judges_nothing_and_reports_say_off() -> None:
    for usage in (None, UsageEvidence.off()):
        evaluation = run(usage, org=False, cas_records=[cas(1)], mailboxes=[mbx(1)])
        assert not [f for f in evaluation.findings if "USAGE" in f.control or "STALE" in f.control]
        assert "usage evidence: off" in render_text(evaluation)
        assert findings_document(evaluation)["readiness"]["state"] == "off"


def test_readiness_in_text_and_json() -> None:
    evaluation = run(
        collected(signin(1), signin(2)),
        allowlist("user1@contoso.com\n"),
        org=False,
        cas_records=[cas(1, False), cas(2)],
        mailboxes=[mbx(1), mbx(2)],
    )
    document = findings_document(evaluation)
    assert document["readiness"]["used"] == 2
    assert document["readiness"]["break_at_org_switch"] == 1
    text = " ".join(render_text(evaluation).split())  # the report wraps to the terminal width
    assert (
        "Readiness: SMTP AUTH sign-ins in the last 30 days: 2 mailbox(es) used it, "
        "1 allowlisted, 1 not allowlisted; 1 will break at the organisation switch" in text
    )


def test_stored_form_round_trips_and_merge_dedupes() -> None:
    a, b = signin(1, at=NOW - timedelta(days=1)), signin(2, at=NOW - timedelta(days=31))
    evidence = collected(a, b)
    again = decode_usage(encode_usage(evidence))
    assert again.signins == evidence.signins and again.state is UsageState.COLLECTED
    merged = merge_signins([a, b], [a], since=NOW - timedelta(days=30))
    assert merged == (a,)


def test_sign_ins_without_mailboxes_are_not_no_use() -> None:
    evaluation = run(collected(signin(1)), org=False, cas_records=None)
    assert evaluation.readiness is not None and evaluation.readiness.state == "unknown"
    assert not [f for f in evaluation.findings if f.control == "SMTPAUTH-EXCEPTION-STALE"]
