"""PURE: judge a snapshot against an allowlist on a given day.

No network, no clock, no environment: `today` and `evaluated_at` are arguments, so a stored
snapshot can be re-evaluated (replayed) and every rule is tested with plain data.

Effective state: the mailbox value wins; `null` follows the organisation; `true`
means *disabled* (the property is named ...Disabled); a missing property, a mailbox without a
CAS record, or `null` while the organisation value was not collected is `unknown`.
"""

from __future__ import annotations

import gc
import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from auditor.core.allowlist import match
from auditor.core.controls import control
from auditor.core.model import (
    Allowlist,
    AllowlistEntry,
    Effective,
    Evaluation,
    Finding,
    Mailbox,
    Snapshot,
    Status,
)

if TYPE_CHECKING:
    from auditor.core.usage import UsageEvidence

__all__ = ["evaluate", "effective_state", "finding_id", "DEFAULT_EXPIRING_DAYS"]

DEFAULT_EXPIRING_DAYS = 14
MAILBOX_COUNTS = (
    "mailboxes",
    "mailboxes_enabled",
    "mailboxes_enabled_explicit",
    "mailboxes_enabled_inherited",
    "mailboxes_disabled",
    "mailboxes_unknown",
)
EXPLICIT = "explicit"
INHERITED = "inherited"

ORG = "SMTPAUTH-ORG"
MAILBOX = "SMTPAUTH-MAILBOX"
UNMATCHED = "SMTPAUTH-ALLOWLIST-UNMATCHED"
AMBIGUOUS = "SMTPAUTH-ALLOWLIST-AMBIGUOUS"
INHERITED_CONTROL = "SMTPAUTH-ALLOWLIST-INHERITED"
UNUSED = "SMTPAUTH-ALLOWLIST-UNUSED"
EXPIRING = "SMTPAUTH-EXCEPTION-EXPIRING"
COLLECTION = "SMTPAUTH-COLLECTION"

_TYPE_NOTES = {
    "SharedMailbox": (
        "shared mailbox: nobody signs in to it, so SMTP AUTH here means a shared password"
    ),
    "RoomMailbox": "room mailbox: resource mailboxes rarely need SMTP AUTH",
    "EquipmentMailbox": "equipment mailbox: resource mailboxes rarely need SMTP AUTH",
}


def effective_state(
    setting: bool | None, setting_present: bool, org_disabled: bool | None
) -> tuple[Effective, str | None]:
    """(effective state, "explicit"/"inherited" for enabled) of one mailbox."""
    if not setting_present:
        return Effective.UNKNOWN, None
    if setting is False:
        return Effective.ENABLED, EXPLICIT
    if setting is True:
        return Effective.DISABLED, None
    if org_disabled is False:
        return Effective.ENABLED, INHERITED
    if org_disabled is True:
        return Effective.DISABLED, None
    return Effective.UNKNOWN, None


_SAFE_KEY = re.compile(r"[0-9a-z@._+-]{1,200}").fullmatch
_SAFE_BYTES = b"0123456789abcdefghijklmnopqrstuvwxyz@._+-"
_SAFE_SLICE = 8192
_MISSING = object()  # the raw value of a mailbox whose setting was not read


def _all_safe(keys: list[str]) -> bool:
    """Whether `_SAFE_KEY` holds for every key, checked in a few C passes over all of them at
    once (a tenant whose organisation allows SMTP AUTH has a finding per mailbox)."""
    if not keys:
        return True
    if min(map(len, keys)) < 1 or max(map(len, keys)) > 200:
        return False
    for start in range(0, len(keys), _SAFE_SLICE):  # a slice at a time: bounded memory
        joined = ".".join(keys[start : start + _SAFE_SLICE])  # "." is safe: changes nothing
        if not joined.isascii() or joined.encode("ascii").translate(None, _SAFE_BYTES):
            return False
    return True


def finding_id(control_id: str, subject_key: str) -> str:
    """Stable across runs for the same control and subject; safe as a Table Storage key.

    Readable (`SMTPAUTH-MAILBOX:<guid>`) when the subject key is made of safe characters,
    otherwise a digest marked with `~` so it can never equal a readable key.
    """
    if _SAFE_KEY(subject_key):
        return f"{control_id}:{subject_key}"
    digest = hashlib.sha256(subject_key.encode("utf-8")).hexdigest()[:24]
    return f"{control_id}:~{digest}"


def _org_finding(org_disabled: bool | None) -> Finding:
    meta = control(ORG)
    if org_disabled is True:
        status, reason = Status.PASS, "The organisation disables SMTP AUTH by default."
    elif org_disabled is False:
        status, reason = (
            Status.FAIL,
            "The organisation allows SMTP AUTH, so every mailbox that inherits (null) may use it.",
        )
    else:
        status, reason = (
            Status.UNKNOWN,
            "The organisation setting (Get-TransportConfig) was not collected.",
        )
    return Finding(
        id=finding_id(ORG, "organisation"),
        control=ORG,
        status=status,
        severity=meta.severity,
        subject="organisation",
        reason=reason,
        org_disabled=org_disabled,
    )


def _how(via: str | None, org_disabled: bool | None) -> str:
    if via == EXPLICIT:
        return "SMTP AUTH is explicitly enabled on the mailbox (false)"
    org = "allows" if org_disabled is False else "blocks"
    return f"SMTP AUTH is enabled by inheritance (null) because the organisation {org} it"


def _mailbox_finding(
    mailbox: Mailbox,
    effective: Effective,
    via: str | None,
    entries: list[AllowlistEntry],
    ambiguous: dict[str, int],
    org_disabled: bool | None,
    today: date,
) -> Finding:
    meta = control(MAILBOX)
    valid = [e for e in entries if e.key not in ambiguous]
    current = [e for e in valid if e.is_current(today)]
    entry: AllowlistEntry | None = None
    if effective is Effective.UNKNOWN:
        status = Status.UNKNOWN
        if not mailbox.setting_present:
            reason = "No SmtpClientAuthenticationDisabled value was read for this mailbox."
        else:
            reason = "The mailbox inherits (null) and the organisation setting was not collected."
        if current:
            entry = current[0]
            reason += f" It is allowlisted ({entry.where})."
    elif current:
        entry = current[0]
        status = Status.EXEMPT
        owner = f", owner {entry.owner}" if entry.owner else ""
        reason = f"{_how(via, org_disabled)}; allowlisted at {entry.where}{owner}."
    else:
        status = Status.FAIL
        if valid:
            entry = max(valid, key=lambda e: e.expires or date.max)
            reason = (
                f"{_how(via, org_disabled)}; its allowlist exception ({entry.where}) "
                f"expired on {entry.expires}."
            )
        elif entries:
            entry = entries[0]
            reason = (
                f"{_how(via, org_disabled)}; allowlist entry {entry.identity!r} ({entry.where}) "
                f"matches {ambiguous[entry.key]} mailboxes and so exempts none."
            )
        else:
            reason = f"{_how(via, org_disabled)} and the mailbox is not allowlisted."
    return Finding(
        id=finding_id(MAILBOX, mailbox.key),
        control=MAILBOX,
        status=status,
        severity=meta.severity,
        subject=mailbox.display,
        reason=reason,
        mailbox=mailbox,
        effective=effective,
        via=via,
        entry=entry,
        org_disabled=org_disabled,
        note=_TYPE_NOTES.get(mailbox.recipient_type_details or ""),
    )


def _entry_finding(
    control_id: str,
    status: Status,
    entry: AllowlistEntry,
    reason: str,
    mailbox: Mailbox | None = None,
    effective: Effective | None = None,
    via: str | None = None,
) -> Finding:
    return Finding(
        id=finding_id(control_id, entry.key),
        control=control_id,
        status=status,
        severity=control(control_id).severity,
        subject=entry.identity,
        reason=reason,
        mailbox=mailbox,
        effective=effective,
        via=via,
        entry=entry,
    )


def _expiry_findings(
    entries: Iterable[AllowlistEntry], today: date, expiring_days: int
) -> list[Finding]:
    out: list[Finding] = []
    horizon = today + timedelta(days=expiring_days)
    for entry in entries:
        if entry.expires is None:
            continue
        if entry.expires < today:
            reason = f"The exception expired on {entry.expires}; renew it or remove the entry."
        elif entry.expires <= horizon:
            days = (entry.expires - today).days
            reason = f"The exception expires on {entry.expires}, in {days} day(s)."
        else:
            continue
        out.append(_entry_finding(EXPIRING, Status.WARNING, entry, reason))
    return out


def evaluate(
    snapshot: Snapshot,
    allowlist: Allowlist,
    today: date,
    *,
    evaluated_at: datetime,
    expiring_days: int = DEFAULT_EXPIRING_DAYS,
    usage: UsageEvidence | None = None,
) -> Evaluation:
    """All findings of README, contracts for one snapshot, allowlist and day.

    With `usage` (sign-in evidence, `core.usage`) the usage controls are judged too
    (`core.usage_controls`); without it the evaluation is as before and says "usage: off"."""
    # A tenant whose organisation allows SMTP AUTH yields a finding per mailbox: hundreds of
    # thousands of small acyclic tuples, over which the cyclic garbage collector would walk
    # the whole snapshot again and again (about 40% of the time). Reference counting frees
    # them; the collector is restored as it was.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        evaluation = _evaluate(snapshot, allowlist, today, evaluated_at, expiring_days)
        if usage is not None:
            # Imported here: usage_controls builds on this module (finding_id).
            from auditor.core.usage_controls import judge_usage

            evaluation = judge_usage(evaluation, snapshot, usage)
        return evaluation
    finally:
        if was_enabled:
            gc.enable()


def _evaluate(
    snapshot: Snapshot,
    allowlist: Allowlist,
    today: date,
    evaluated_at: datetime,
    expiring_days: int,
) -> Evaluation:
    org = snapshot.org_disabled
    findings: list[Finding] = [_org_finding(org)]
    for error in snapshot.errors:
        findings.append(
            Finding(
                id=finding_id(COLLECTION, error.source),
                control=COLLECTION,
                status=Status.UNKNOWN,
                severity=control(COLLECTION).severity,
                subject=error.source,
                reason=f"Collection failed: {error.message}",
            )
        )
    counts = dict.fromkeys(MAILBOX_COUNTS, 0)
    entries = allowlist.entries
    if snapshot.mailboxes is None:
        findings.append(
            Finding(
                id=finding_id(MAILBOX, "*"),
                control=MAILBOX,
                status=Status.UNKNOWN,
                severity=control(MAILBOX).severity,
                subject="all mailboxes",
                reason="The per-mailbox settings (Get-CASMailbox) were not collected; "
                "no mailbox can be judged.",
                effective=Effective.UNKNOWN,
                org_disabled=org,
            )
        )
        findings.extend(_expiry_findings(entries, today, expiring_days))
        return _finish(snapshot, allowlist, evaluated_at, findings, counts)

    # Only mailboxes some entry names (a set look-up per mailbox) go to allowlist.match.
    allow_keys = frozenset(entry.key for entry in allowlist.entries)
    named: list[Mailbox] = []
    enabled, disabled, unknown = Effective.ENABLED, Effective.DISABLED, Effective.UNKNOWN
    # The hot path: a mailbox no allowlist entry names gets its finding at once, built
    # positionally from precomputed parts; allowlisted ones wait until ambiguity is known.
    fail, unknown_status, severity = Status.FAIL, Status.UNKNOWN, control(MAILBOX).severity
    not_listed = {
        EXPLICIT: f"{_how(EXPLICIT, org)} and the mailbox is not allowlisted.",
        INHERITED: f"{_how(INHERITED, org)} and the mailbox is not allowlisted.",
    }
    missing_reason = "No SmtpClientAuthenticationDisabled value was read for this mailbox."
    # Without Get-Mailbox data an entry may name a mailbox by its UPN or a proxy address the
    # CAS listing lacks: an enabled mailbox no entry names by the CAS listing may still be
    # allowlisted. Its verdict is unknown (the history keeps the last known one) rather than
    # a `fail` the next complete read would flip back.
    doubtful = 0
    if not snapshot.directory_collected and allow_keys:
        cas_keys = {key for mailbox in snapshot.mailboxes for key in mailbox.match_keys}
        doubtful = len(allow_keys - cas_keys)
    needs_directory = {
        how: (
            f"{_how(how, org)}, and no allowlist entry names it by the CAS listing; "
            f"{doubtful} entr{'y' if doubtful == 1 else 'ies'} match no mailbox without "
            "Get-Mailbox data (UPN, proxy addresses), which was not read: unknown evidence, "
            "the last known verdict stands."
        )
        for how in (EXPLICIT, INHERITED)
    }
    inherit_unknown = "The mailbox inherits (null) and the organisation setting was not collected."
    prefix = f"{MAILBOX}:"
    notes = _TYPE_NOTES.get
    listed: list[tuple[Mailbox, Effective, str | None]] = []
    state_of: dict[int, tuple[Effective, str | None]] = {}
    append = findings.append
    new_finding = tuple.__new__
    # Everything a mailbox's finding depends on but its identity, per raw value (true, false,
    # null, missing), worked out once: (tally slot, state, via, status, reason). Effectively
    # disabled mailboxes get no finding and share one case, `off`, so that the commonest path
    # (a tenant whose organisation blocks) is a look-up, a count and a set test.
    off = (0, disabled, None, None, "")
    cases: dict[object, tuple[int, Effective, str | None, Status | None, str]] = {}
    for slot, raw in enumerate((True, False, None, _MISSING)):
        value = None if raw is _MISSING else raw
        state, via = effective_state(value, raw is not _MISSING, org)  # type: ignore[arg-type]
        if state is disabled:
            cases[raw] = off
        elif state is enabled and doubtful:
            cases[raw] = (slot, state, via, unknown_status, needs_directory[via or EXPLICIT])
        elif state is enabled:
            cases[raw] = (slot, state, via, fail, not_listed[via or EXPLICIT])
        else:
            reason = missing_reason if raw is _MISSING else inherit_unknown
            cases[raw] = (slot, state, via, unknown_status, reason)
    tally = [0, 0, 0, 0]  # mailboxes per case
    waiting = [0, 0, 0, 0]  # of those, allowlisted ones whose finding is made further down
    hot_keys: list[str] = []  # the keys of the findings made here, in order
    n_disabled = 0
    off_state = (disabled, None)
    isdisjoint = allow_keys.isdisjoint
    on_true, on_false, on_null, on_missing = (cases[raw] for raw in (True, False, None, _MISSING))
    hot_start = len(findings)
    for mailbox in snapshot.mailboxes:
        if mailbox.setting_present:
            setting = mailbox.setting
            case = on_null if setting is None else on_true if setting else on_false
        else:
            case = on_missing
        if case is off:
            n_disabled += 1
            if not isdisjoint(mailbox.match_keys):
                named.append(mailbox)
                state_of[id(mailbox)] = off_state
            continue
        slot, state, via, status, reason = case
        tally[slot] += 1
        if not isdisjoint(mailbox.match_keys):
            named.append(mailbox)
            state_of[id(mailbox)] = (state, via)
            listed.append((mailbox, state, via))
            waiting[slot] += 1
            continue
        key = mailbox.key
        hot_keys.append(key)
        psmtp = mailbox.primary_smtp_address  # never blank: tested without reading it
        # tuple.__new__ directly: the NamedTuple's own __new__ is a Python-level wrapper.
        append(
            new_finding(
                Finding,
                (
                    prefix + key,  # readable, checked below for all at once
                    MAILBOX,
                    status,
                    severity,
                    psmtp if psmtp is not None else mailbox.display,
                    reason,
                    mailbox,
                    state,
                    via,
                    None,
                    org,
                    notes(mailbox.recipient_type_details),  # type: ignore[arg-type]
                ),
            )
        )
    hot = (hot_start, len(findings))
    if not _all_safe(hot_keys):  # some key needs a digest id (rare): those findings redone
        for offset, key in enumerate(hot_keys):
            if not _SAFE_KEY(key):
                at = hot_start + offset
                findings[at] = findings[at]._replace(id=finding_id(MAILBOX, key))
    del hot_keys
    counted: Counter[Status] = Counter()
    n_explicit = n_inherited = n_unknown = 0
    for slot, state, via, status, _ in cases.values():
        if status is not None:
            counted[status] += tally[slot] - waiting[slot]  # the findings made here
        if state is unknown:
            n_unknown += tally[slot]
        elif state is enabled:
            if via == EXPLICIT:
                n_explicit += tally[slot]
            else:
                n_inherited += tally[slot]
    counts.update(
        mailboxes=len(snapshot.mailboxes),
        mailboxes_enabled=n_explicit + n_inherited,
        mailboxes_enabled_explicit=n_explicit,
        mailboxes_enabled_inherited=n_inherited,
        mailboxes_disabled=n_disabled,
        mailboxes_unknown=n_unknown,
    )
    matches = match(allowlist, named)
    ambiguous = matches.ambiguous()
    for mailbox, state, via in listed:
        mine = matches.entries_of[id(mailbox)]
        findings.append(_mailbox_finding(mailbox, state, via, mine, ambiguous, org, today))

    for entry in entries:
        boxes = matches.mailboxes_of.get(entry.key, [])
        if not boxes:
            if snapshot.directory_collected:
                findings.append(
                    _entry_finding(
                        UNMATCHED,
                        Status.WARNING,
                        entry,
                        f"Allowlist entry {entry.identity!r} ({entry.where}) matches no mailbox.",
                    )
                )
            else:
                findings.append(
                    _entry_finding(
                        UNMATCHED,
                        Status.UNKNOWN,
                        entry,
                        f"Allowlist entry {entry.identity!r} ({entry.where}) matches no mailbox "
                        "in the CAS listing, and Get-Mailbox data (UPN, proxy addresses) was "
                        "not collected to check further.",
                    )
                )
            continue
        if len(boxes) > 1:
            names = ", ".join(sorted(b.display for b in boxes)[:5])
            findings.append(
                _entry_finding(
                    AMBIGUOUS,
                    Status.WARNING,
                    entry,
                    f"Allowlist entry {entry.identity!r} ({entry.where}) matches {len(boxes)} "
                    f"mailboxes ({names}) and exempts none of them.",
                )
            )
            continue
        if not entry.is_current(today):
            continue
        mailbox = boxes[0]
        state, via = state_of[id(mailbox)]
        if state is enabled and via == INHERITED:
            findings.append(
                _entry_finding(
                    INHERITED_CONTROL,
                    Status.WARNING,
                    entry,
                    f"{mailbox.display} is allowlisted but enabled only because the organisation "
                    "allows SMTP AUTH; it stops working when the organisation is fixed. "
                    "Set it to false explicitly.",
                    mailbox,
                    state,
                    via,
                )
            )
        elif state is disabled:
            findings.append(
                _entry_finding(
                    UNUSED,
                    Status.WARNING,
                    entry,
                    f"{mailbox.display} is allowlisted but SMTP AUTH is effectively disabled "
                    "for it.",
                    mailbox,
                    state,
                    via,
                )
            )
    findings.extend(_expiry_findings(entries, today, expiring_days))
    return _finish(snapshot, allowlist, evaluated_at, findings, counts, counted, hot)


def _finish(
    snapshot: Snapshot,
    allowlist: Allowlist,
    evaluated_at: datetime,
    findings: list[Finding],
    counts: dict[str, int],
    counted: Counter[Status] | None = None,
    skip: tuple[int, int] = (0, 0),
) -> Evaluation:
    """The Evaluation; `counted` holds the statuses of `findings[skip[0]:skip[1]]`, already
    counted (the hot loop's findings: counting them again would touch each one once more)."""
    start, end = skip
    tally = Counter(finding.status for finding in findings[:start])
    tally.update(finding.status for finding in findings[end:])
    if counted:
        tally.update(counted)
    for status in Status:
        counts[status.value] = tally[status]
    return Evaluation(
        tenant=snapshot.tenant,
        evaluated_at=evaluated_at,
        snapshot_collected_at=snapshot.collected_at,
        org_disabled=snapshot.org_disabled,
        findings=tuple(findings),
        counts=counts,
        warnings=allowlist.warnings,
    )
