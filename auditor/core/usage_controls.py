"""PURE: judge usage evidence (`core.usage`) next to an evaluation's findings.

Called by `policy.evaluate(..., usage=...)`. Controls (controls.json):

- SMTPAUTH-EXCEPTION-STALE (warning): an allowlisted, effectively enabled mailbox with no
  successful SMTP AUTH sign-in in the window: the exception may no longer be needed.
- SMTPAUTH-USAGE-UNAPPROVED (fail): a mailbox that is not validly allowlisted signed in with
  SMTP AUTH in the window.
- SMTPAUTH-USAGE-EVIDENCE (unknown): the sign-in log could not be read; nothing is judged
  stale or unapproved on it (absence of evidence is not evidence of no use).

With usage off, nothing is judged and the readiness says "off".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

from auditor.core.controls import control
from auditor.core.model import Evaluation, Finding, Mailbox, Readiness, Snapshot, Status
from auditor.core.policy import finding_id
from auditor.core.usage import MailboxUsage, UsageEvidence, UsageMatch, UsageState, match_usage

__all__ = ["STALE", "UNAPPROVED", "EVIDENCE", "judge_usage", "validly_allowlisted"]

STALE = "SMTPAUTH-EXCEPTION-STALE"
UNAPPROVED = "SMTPAUTH-USAGE-UNAPPROVED"
EVIDENCE = "SMTPAUTH-USAGE-EVIDENCE"
_MAILBOX = "SMTPAUTH-MAILBOX"
_ALLOWLISTED_CONTROLS = ("SMTPAUTH-ALLOWLIST-UNUSED", "SMTPAUTH-ALLOWLIST-INHERITED")


def _stamp(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def validly_allowlisted(findings: tuple[Finding, ...]) -> set[str]:
    """Keys of mailboxes a current, unambiguous allowlist entry names, whatever their state.

    The policy says so with an exemption (enabled), an UNUSED/INHERITED warning (current
    entries only) or an unknown MAILBOX finding that carries its current entry."""
    keys: set[str] = set()
    for f in findings:
        if f.mailbox is None:
            continue
        if (
            f.control == _MAILBOX
            and (f.status is Status.EXEMPT or (f.status is Status.UNKNOWN and f.entry is not None))
        ) or f.control in _ALLOWLISTED_CONTROLS:
            keys.add(f.mailbox.key)
    return keys


def _used_text(usage: MailboxUsage, since: datetime) -> str:
    assert usage.last_success is not None
    origin = f" from {usage.last_ip}" if usage.last_ip else ""
    app = f" ({usage.last_app})" if usage.last_app else ""
    failures = f" and {usage.failures} failed attempt(s)" if usage.failures else ""
    return (
        f"{usage.successes} successful SMTP AUTH sign-in(s){failures} since {_stamp(since)}, "
        f"last {_stamp(usage.last_success)}{origin}{app}"
    )


def judge_usage(evaluation: Evaluation, snapshot: Snapshot, usage: UsageEvidence) -> Evaluation:
    """The evaluation with the usage findings added, its counts redone and its readiness set."""
    if usage.state is UsageState.OFF:
        readiness = Readiness(state=UsageState.OFF.value, reason=usage.reason)
        return replace(evaluation, readiness=readiness)
    if usage.state is UsageState.UNKNOWN or usage.collected_at is None:
        reason = usage.reason or "the sign-in log was not read"
        finding = Finding(
            id=finding_id(EVIDENCE, "signins"),
            control=EVIDENCE,
            status=Status.UNKNOWN,
            severity=control(EVIDENCE).severity,
            subject="sign-in evidence",
            reason=f"The SMTP AUTH sign-in evidence ({usage.source}) is unknown: {reason}. "
            "No exception is judged stale and no use is judged unapproved on it.",
        )
        readiness = Readiness(
            state=UsageState.UNKNOWN.value, reason=reason, lookback_days=usage.lookback_days
        )
        return _with(evaluation, [finding], readiness)
    since = usage.window_start
    assert since is not None
    if snapshot.mailboxes is None:  # nothing to match the sign-ins to: unknown, not "no use"
        readiness = Readiness(
            state=UsageState.UNKNOWN.value,
            reason="the mailboxes were not collected, so no sign-in could be matched",
            lookback_days=usage.lookback_days,
        )
        return replace(evaluation, readiness=readiness)
    mailboxes: tuple[Mailbox, ...] = snapshot.mailboxes or ()
    matched: UsageMatch = match_usage(usage, mailboxes)
    allowlisted = validly_allowlisted(evaluation.findings)
    mailbox_findings = {
        f.mailbox.key: f
        for f in evaluation.findings
        if f.control == _MAILBOX and f.mailbox is not None
    }
    extra: list[Finding] = []
    stale = 0
    # Stale: allowlisted and effectively enabled (exempt), and no successful use.
    for key, f in mailbox_findings.items():
        if f.status is not Status.EXEMPT or f.mailbox is None:
            continue
        used = matched.by_mailbox.get(key)
        if used is not None and used.used:
            continue
        tried = (
            f" ({used.failures} failed attempt(s), last {_stamp(used.last_failure)})"
            if used is not None and used.last_failure is not None
            else ""
        )
        where = f" at {f.entry.where}" if f.entry is not None else ""
        owner = f", owner {f.entry.owner}" if f.entry is not None and f.entry.owner else ""
        extra.append(
            Finding(
                id=finding_id(STALE, key),
                control=STALE,
                status=Status.WARNING,
                severity=control(STALE).severity,
                subject=f.subject,
                reason=f"Allowlisted{where}{owner} and SMTP AUTH is enabled, but no successful "
                f"SMTP AUTH sign-in since {_stamp(since)} ({usage.lookback_days} days){tried}; "
                "the exception may no longer be needed.",
                mailbox=f.mailbox,
                effective=f.effective,
                via=f.via,
                entry=f.entry,
                org_disabled=f.org_disabled,
            )
        )
        stale += 1
    used_allowlisted = used_unlisted = break_org = break_revoke = failures_only = 0
    by_key = {m.key: m for m in mailboxes}
    for key in sorted(matched.by_mailbox):
        use = matched.by_mailbox[key]
        if not use.used:
            failures_only += 1
            continue
        if key in allowlisted:
            used_allowlisted += 1
            continue
        used_unlisted += 1
        mailbox = by_key[key]
        judged = mailbox_findings.get(key)
        if judged is not None and judged.status is Status.FAIL:
            if judged.via == "inherited":
                break_org += 1
            else:
                break_revoke += 1
        now = "SMTP AUTH is now disabled for it"
        if judged is not None and judged.effective is not None:
            via = f" ({judged.via})" if judged.via else ""
            now = f"SMTP AUTH is now {judged.effective.value}{via} for it"
        extra.append(
            Finding(
                id=finding_id(UNAPPROVED, key),
                control=UNAPPROVED,
                status=Status.FAIL,
                severity=control(UNAPPROVED).severity,
                subject=mailbox.display,
                reason=f"Not allowlisted, yet {_used_text(use, since)}; {now}.",
                mailbox=mailbox,
                effective=judged.effective if judged is not None else None,
                via=judged.via if judged is not None else None,
                org_disabled=snapshot.org_disabled,
            )
        )
    readiness = Readiness(
        state=UsageState.COLLECTED.value,
        reason=usage.reason,
        lookback_days=usage.lookback_days,
        window_start=since,
        used=used_allowlisted + used_unlisted,
        used_allowlisted=used_allowlisted,
        used_not_allowlisted=used_unlisted,
        break_at_org_switch=break_org if snapshot.org_disabled is False else 0,
        break_at_revocation=break_revoke,
        stale_exceptions=stale,
        failures_only=failures_only,
        unmatched_signins=matched.unmatched,
        mailboxes={k: u for k, u in matched.by_mailbox.items() if u.used},
    )
    return _with(evaluation, extra, readiness)


def _with(evaluation: Evaluation, extra: list[Finding], readiness: Readiness) -> Evaluation:
    findings = (*evaluation.findings, *extra)
    counts = dict(evaluation.counts)
    tally = Counter(f.status for f in findings)
    for status in Status:
        counts[status.value] = tally[status]
    return replace(evaluation, findings=findings, counts=counts, readiness=readiness)
