"""PURE: decide whether a run deserves an alert, and what it says.

No network, no clock, no environment: the current evaluation, the previous run and the run's own
facts are arguments, so every rule is tested with plain data. The channels (Teams,
email) only render and deliver the `Alert` decided here (`auditor.notify`).

What triggers an alert (issue 5):

- `new`: a `fail` finding that the previous run did not record as `fail` (so the same violation
  is not re-sent every night). A violation absent from an *incomplete* previous run counts as new:
  that run proved nothing about it, and re-telling is safer than staying silent.
- `resolved`: a finding the previous run recorded as `fail` that is no longer `fail` (absent,
  passing or exempt). Only when the current run is complete: a partial read resolves nothing.
  A finding that became `unknown` is not resolved; it is listed as unknown.
- `unknown` / `incomplete`: any `unknown` finding, any collection error, or an incomplete run.
  Always, on every run it persists: a broken audit is never silent.
- `expiring`: an allowlist exception expiring within `expiring_days`. It triggers when it enters
  the window and again 7, 1 and 0 days before it expires; while inside the window it is listed in
  every alert that is sent anyway.
- `org-change`: the organisation switch flipped either way (both runs read it).
- `baseline`: the first-ever run (no previous run) sends one summary, never one alert per mailbox.
- `digest`: with `digest=True`, a run where nothing changed still sends a short summary, so
  silence can be told apart from a dead auditor.

What the store knows beyond the evaluation comes in as `RunFacts` (read best effort by
`app.alerting`): who made this run's changes (the audit log, `core.attribution`), which absent
mailboxes were removed from the tenant and their type, and which remediation fixed what.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

from auditor.core.attribution import Attribution
from auditor.core.controls import control
from auditor.core.model import (
    Allowlist,
    CollectionError,
    Evaluation,
    Finding,
    PreviousRun,
    PriorFinding,
    Severity,
    Snapshot,
    Status,
)
from auditor.core.usage import readiness_text

__all__ = [
    "ActionLink",
    "RootCause",
    "proposal_title",
    "Alert",
    "AlertItem",
    "OrgFlip",
    "RunFacts",
    "decide",
    "org_line",
    "root_cause_text",
    "headline",
    "org_text",
    "item_detail",
    "failed_run_evaluation",
    "ordered_links",
    "REMINDER_DAYS",
    "SHOWN_MAX",
]

ORG = "SMTPAUTH-ORG"
MAILBOX = "SMTPAUTH-MAILBOX"
EXPIRING = "SMTPAUTH-EXCEPTION-EXPIRING"
COLLECTION = "SMTPAUTH-COLLECTION"
# Days before expiry on which an exception already inside the window triggers a reminder.
REMINDER_DAYS = (7, 1, 0)

FIXED = "Fixed by an approved remediation."

# The most items of one section any channel lists (the email; a Teams card lists fewer). A
# section keeps its first SHOWN_MAX items in order and `Alert.totals` counts them all: a
# baseline where the organisation allows SMTP AUTH has one violation per mailbox, and building
# 90,000 items to show 200 cost about 30 MiB at 100,000 mailboxes (docs/architecture.md,
# "Memory").
SHOWN_MAX = 200

_T = TypeVar("_T")

AlertKind = Literal["baseline", "change", "digest"]

_SEVERITY_ORDER = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2, Severity.INFO: 3}


@dataclass(frozen=True, slots=True)
class AlertItem:
    """One line of an alert: a mailbox (or the organisation, or an allowlist entry).

    `mailbox_type` is Exchange's `RecipientTypeDetails` when known; `via` is "explicit" or
    "inherited" for an enabled mailbox; `since` is when the finding was first seen, if known.
    """

    finding_id: str
    control: str
    status: Status
    severity: Severity
    subject: str
    reason: str
    mailbox_type: str | None = None
    via: str | None = None
    since: datetime | None = None
    expires: date | None = None
    days_left: int | None = None
    owner: str | None = None
    changed_by: str | None = None  # who made the change, from the audit log (`RunFacts`)

    @property
    def kind(self) -> str:
        """What the subject is, for a column "type": the mailbox type or the control."""
        if self.mailbox_type:
            return self.mailbox_type
        if self.control == ORG:
            return "Organisation"
        if self.control == EXPIRING:
            return "Allowlist exception"
        if self.control == COLLECTION:
            return "Collection"
        return "Mailbox" if self.control == "SMTPAUTH-MAILBOX" else self.control


@dataclass(frozen=True, slots=True)
class OrgFlip:
    """The organisation switch flipped. Values are `SmtpClientAuthenticationDisabled`."""

    before: bool
    after: bool
    changed_by: str | None = None  # who flipped it, from the audit log (`RunFacts`)

    @property
    def now_allows(self) -> bool:
        return self.after is False


@dataclass(frozen=True, slots=True)
class ActionLink:
    """A button: a confirmation page of one proposal (or the report). Opening it changes nothing."""

    title: str
    url: str
    proposal_id: str = ""


@dataclass(frozen=True, slots=True)
class RootCause:
    """The organisation allows SMTP AUTH: one change fixes `fixes` inheriting mailboxes."""

    fixes: int
    fix: str
    reason: str
    changed_by: str | None = None  # who made the organisation allow it, in this run


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the store knows about a run beyond its evaluation (`app.alerting.run_facts`).

    `removed`: finding ids of mailboxes no longer in the tenant; `looked_up`: the absent
    mailbox findings whose stored record was read (so one not in `removed` is still in the
    tenant); `types`: finding id -> RecipientTypeDetails of mailboxes absent from the
    evaluation (removed or now disabled); `remediated`: finding id -> the applied proposal that
    fixed it ("" when not known); `attributions`: mailbox finding id -> who made the change
    this run saw, and `org` the same for the organisation switch. All optional: without them
    the alert says what the evidence shows.
    """

    removed: frozenset[str] = frozenset()
    looked_up: frozenset[str] = frozenset()
    types: Mapping[str, str] = field(default_factory=dict)
    remediated: Mapping[str, str] = field(default_factory=dict)
    attributions: Mapping[str, Attribution] = field(default_factory=dict)
    org: Attribution | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """Everything a channel needs to tell one run's news; render-ready, channel-neutral."""

    kind: AlertKind
    tenant: str
    run_id: str
    evaluated_at: datetime
    org_disabled: bool | None
    complete: bool
    severity: Severity
    triggers: tuple[str, ...]
    counts: Mapping[str, int]
    new: tuple[AlertItem, ...] = ()
    resolved: tuple[AlertItem, ...] = ()
    unknown: tuple[AlertItem, ...] = ()
    expiring: tuple[AlertItem, ...] = ()
    errors: tuple[CollectionError, ...] = ()
    org_change: OrgFlip | None = None
    previous_run_id: str | None = None
    report_url: str | None = None
    remediation_url: str | None = None
    open_violations: int = 0
    readiness: str | None = None  # usage evidence summary (core.usage.readiness_text), if any
    # Every open proposal's confirmation page, the organisation fix first when it allows.
    links: tuple[ActionLink, ...] = ()
    root_cause: RootCause | None = None
    # Violations caused by an expired exception: listed in every alert.
    expired: tuple[AlertItem, ...] = ()
    # Items per section ("new", "resolved", "unknown", "expiring", "expired") when the
    # section lists only its first SHOWN_MAX; a section not named here lists all it has.
    totals: Mapping[str, int] = field(default_factory=dict)

    @property
    def headline(self) -> str:
        return headline(self)

    def total(self, section: str) -> int:
        """How many items a section has, listed or not."""
        listed: tuple[AlertItem, ...] = getattr(self, section)
        return self.totals.get(section, len(listed))

    @property
    def more_hint(self) -> str:
        """Where the items a list leaves out are: the report's link, else the command."""
        if self.report_url:
            return "see the full report"
        return f"run `python -m auditor show {self.run_id}` to list them"


def org_text(org_disabled: bool | None) -> str:
    """The organisation switch in words (the property says *Disabled*: true = blocked)."""
    return {
        True: "SMTP AUTH blocked (SmtpClientAuthenticationDisabled = true)",
        False: "SMTP AUTH allowed (SmtpClientAuthenticationDisabled = false)",
        None: "unknown (not read)",
    }[org_disabled]


def org_line(alert: Alert) -> str:
    """The organisation fact of an alert: its switch, what it was if it flipped, and who
    flipped it when the audit log says so (one text for Teams and email)."""
    org = org_text(alert.org_disabled)
    flip = alert.org_change
    if flip is not None:
        who = f"; {flip.changed_by}" if flip.changed_by else ""
        org += f" (changed; was {org_text(flip.before)}{who})"
    return org


def root_cause_text(root: RootCause) -> str:
    """The root-cause sentence of an alert (Teams and email)."""
    mailboxes = "mailbox" if root.fixes == 1 else "mailboxes"
    who = f" ({root.changed_by})" if root.changed_by else ""
    return (
        f"Root cause: the organisation allows SMTP AUTH{who}. 1 change fixes "
        f"{root.fixes} {mailboxes}."
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def headline(alert: Alert) -> str:
    """One line that sorts and filters well, e.g. "3 new violations, 1 resolved"."""
    if alert.kind == "baseline":
        parts = [f"baseline, {_plural(alert.open_violations, 'violation')}"]
    elif alert.kind == "digest":
        parts = [f"no change, {_plural(alert.open_violations, 'open violation')}"]
    else:
        parts = []
        if alert.org_change is not None:
            parts.append(
                "organisation now ALLOWS SMTP AUTH"
                if alert.org_change.now_allows
                else "organisation now blocks SMTP AUTH"
            )
        if alert.new:
            parts.append(_plural(alert.total("new"), "new violation"))
        if alert.resolved:
            parts.append(f"{alert.total('resolved')} resolved")
        if alert.expiring and "expiring" in alert.triggers:
            parts.append(f"{_plural(alert.total('expiring'), 'exception')} expiring")
    if not alert.complete or alert.errors:
        parts.append("audit incomplete")
    if alert.unknown:
        parts.append(f"{alert.total('unknown')} unknown")
    return ", ".join(parts) if parts else "no change"


def _today(moment: datetime) -> date:
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(UTC).date()


def _item(
    finding: Finding, since: datetime | None, today: date, changed_by: str | None = None
) -> AlertItem:
    mailbox = finding.mailbox
    entry = finding.entry
    expires = entry.expires if entry is not None else None
    return AlertItem(
        finding_id=finding.id,
        control=finding.control,
        status=finding.status,
        severity=finding.severity,
        subject=finding.subject,
        reason=finding.reason,
        mailbox_type=mailbox.recipient_type_details if mailbox is not None else None,
        via=finding.via,
        since=since,
        expires=expires,
        days_left=(expires - today).days if expires is not None else None,
        owner=entry.owner if entry is not None else None,
        changed_by=changed_by,
    )


def _resolved_reason(
    prior: PriorFinding,
    current: Finding | None,
    org_change: OrgFlip | None,
    removed: Collection[str],
    remediated: Mapping[str, str],
    looked_up: Collection[str] = frozenset(),
) -> str:
    """Why a violation is gone, in words: fixed by a remediation, the mailbox was removed, it
    is now allowlisted, the setting changed, or the organisation now blocks what it inherited.

    A disabled mailbox has no finding, so an absent mailbox finding is told apart by `removed`
    (finding ids of mailboxes no longer in the tenant; `looked_up`: those whose stored record
    was read) and `remediated` (fixed by an applied proposal) when the caller knows them, and
    by the organisation flip otherwise.
    """
    if prior.id in remediated:
        proposal = remediated[prior.id]
        return f"Fixed by an approved remediation ({proposal})." if proposal else FIXED
    if current is None:
        if prior.control != MAILBOX:
            return "No longer reported: the allowlist or the evidence it was about changed."
        if prior.id in removed:
            return "Mailbox no longer in the tenant (deleted, or no longer a mailbox)."
        if org_change is not None and not org_change.now_allows:
            return (
                "Fixed by the organisation change: SMTP AUTH is now blocked for the organisation."
            )
        if removed or prior.id in looked_up:
            return "Setting changed: SMTP AUTH is now disabled on the mailbox."
        return "Setting changed: SMTP AUTH is now disabled on the mailbox (or it was removed)."
    if current.status is Status.EXEMPT:
        where = f" ({current.entry.where})" if current.entry is not None else ""
        return f"Now allowlisted{where}."
    return f"Now {current.status.value}: {current.reason}"


def _prior_item(
    prior: PriorFinding,
    current: Finding | None,
    org_change: OrgFlip | None,
    removed: Collection[str],
    remediated: Mapping[str, str],
    facts: RunFacts,
) -> AlertItem:
    """A resolved finding: what the previous run recorded, plus today's state if still present
    (else the type its stored state record keeps, `types`)."""
    severity = current.severity if current is not None else control(prior.control).severity
    mailbox_type = facts.types.get(prior.id)
    if current is not None and current.mailbox is not None:
        mailbox_type = current.mailbox.recipient_type_details
    return AlertItem(
        finding_id=prior.id,
        control=prior.control,
        status=current.status if current is not None else Status.PASS,
        severity=severity,
        subject=prior.subject,
        reason=_resolved_reason(prior, current, org_change, removed, remediated, facts.looked_up),
        mailbox_type=mailbox_type,
    )


def _rank(
    severity: Severity, control_id: str, via: str | None, subject: str
) -> tuple[int, bool, bool, str]:
    """Most severe first; the organisation before mailboxes; explicit enables before inherited
    ones (the organisation fix does not cover them); then by subject."""
    return (_SEVERITY_ORDER[severity], control_id != ORG, via == "inherited", subject.lower())


def _finding_rank(finding: Finding) -> tuple[int, bool, bool, str]:
    return _rank(finding.severity, finding.control, finding.via, finding.subject)


def _first(
    found: Sequence[_T], rank: Callable[[_T], Any], build: Callable[[_T], AlertItem]
) -> tuple[AlertItem, ...]:
    """The first SHOWN_MAX of `found` in `rank` order (ties keep their order), as items: only
    those are built."""
    return tuple(build(x) for x in heapq.nsmallest(SHOWN_MAX, found, key=rank))


def _errors(errors: Iterable[CollectionError | str]) -> tuple[CollectionError, ...]:
    out: list[CollectionError] = []
    for error in errors:
        if isinstance(error, CollectionError):
            out.append(error)
        else:
            out.append(CollectionError(source="collection", message=str(error)))
    return tuple(out)


def decide(
    current: Evaluation,
    previous: PreviousRun | None,
    *,
    run_id: str,
    complete: bool,
    errors: Iterable[CollectionError | str],
    expiring_days: int,
    digest: bool = False,
    report_url: str | None = None,
    remediation_url: str | None = None,
    first_seen: Mapping[str, datetime] | None = None,
    remediation_links: Sequence[tuple[str, str]] = (),
    removed: Collection[str] = frozenset(),
    remediated: Collection[str] = frozenset(),
    facts: RunFacts | None = None,
) -> Alert | None:
    """The alert this run deserves, or None when there is nothing to tell.

    `complete` is False when the collection failed or was cut short; `errors` are the run's
    collection errors. `first_seen` (finding id -> first time seen, from history) fills the
    "since" of each item when known; a new violation is otherwise first seen in this run.
    `removed` and `remediated` (finding ids) add to what `facts` says (see `RunFacts`).
    """
    facts = facts or RunFacts()
    gone = {*removed, *facts.removed}
    fixed = {**{fid: "" for fid in remediated}, **facts.remediated}
    who = facts.attributions
    today = _today(current.evaluated_at)
    seen = first_seen or {}
    run_errors = _errors(errors)
    prior = previous.findings if previous is not None else {}
    by_id = {f.id: f for f in current.findings}

    def since_first(finding: Finding) -> datetime | None:
        return seen.get(finding.id, current.evaluated_at)

    def new_item(finding: Finding) -> AlertItem:
        made = who.get(finding.id) if finding.control != ORG else facts.org
        changed_by = made.text("enabled") if made is not None else None
        return _item(finding, since_first(finding), today, changed_by)

    def unknown_item(finding: Finding) -> AlertItem:
        since = seen.get(finding.id)
        before = prior.get(finding.id)
        if since is None and (before is None or before.status is not Status.UNKNOWN):
            since = current.evaluated_at
        return _item(finding, since, today)

    def days_left(finding: Finding) -> int:
        assert finding.entry is not None and finding.entry.expires is not None
        return (finding.entry.expires - today).days

    # The findings of each section; only the first SHOWN_MAX of each become items (`_first`).
    new: list[Finding] = []
    unknown: list[Finding] = []
    expiring: list[Finding] = []
    expiring_trigger = False
    error_sources = {e.source for e in run_errors}
    for finding in current.findings:
        before = prior.get(finding.id)
        if finding.status is Status.FAIL:
            if previous is None or before is None or before.status is not Status.FAIL:
                new.append(finding)
        elif finding.status is Status.UNKNOWN:
            if finding.control == COLLECTION and finding.subject in error_sources:
                continue  # the same failure is listed once, under the run's errors
            unknown.append(finding)
        elif finding.control == EXPIRING and finding.entry is not None:
            if finding.entry.expires is None or not 0 <= days_left(finding) <= expiring_days:
                continue  # already expired: the mailbox's own finding says so
            expiring.append(finding)
            entered = before is None or before.control != EXPIRING
            if entered or days_left(finding) in REMINDER_DAYS:
                expiring_trigger = True

    expired = [
        f
        for f in current.findings
        if f.status is Status.FAIL
        and f.entry is not None
        and f.entry.expires is not None
        and f.entry.expires < today
    ]

    org_change: OrgFlip | None = None
    if (
        previous is not None
        and previous.org_disabled is not None
        and current.org_disabled is not None
        and previous.org_disabled != current.org_disabled
    ):
        flipped = current.org_disabled is False
        org_change = OrgFlip(
            before=previous.org_disabled,
            after=current.org_disabled,
            changed_by=(
                facts.org.text("enabled" if flipped else "disabled")
                if facts.org is not None
                else None
            ),
        )

    resolved: list[tuple[PriorFinding, Finding | None]] = []
    if complete and previous is not None:
        for finding_id, before in prior.items():
            if before.status is not Status.FAIL:
                continue
            now = by_id.get(finding_id)
            if now is not None and now.status in (Status.FAIL, Status.UNKNOWN):
                continue
            resolved.append((before, now))

    def resolved_rank(pair: tuple[PriorFinding, Finding | None]) -> tuple[int, bool, bool, str]:
        before, now = pair
        severity = now.severity if now is not None else control(before.control).severity
        return _rank(severity, before.control, None, before.subject)

    def resolved_item(pair: tuple[PriorFinding, Finding | None]) -> AlertItem:
        return _prior_item(*pair, org_change, gone, fixed, facts)

    open_violations = sum(1 for f in current.findings if f.status is Status.FAIL)
    broken = not complete or bool(run_errors) or bool(unknown)
    triggers: list[str] = []
    if previous is None:
        triggers.append("baseline")
    else:
        if new:
            triggers.append("new")
        if resolved:
            triggers.append("resolved")
        if org_change is not None:
            triggers.append("org-change")
        if expiring_trigger:
            triggers.append("expiring")
    if not complete or run_errors:
        triggers.append("incomplete")
    if unknown:
        triggers.append("unknown")

    kind: AlertKind
    if previous is None:
        kind = "baseline"
    elif triggers:
        kind = "change"
    elif digest:
        kind = "digest"
        triggers.append("digest")
    else:
        return None

    # New violations (on a baseline: any violation), a broken audit, or the organisation opening
    # SMTP AUTH to every inheriting mailbox are high; reminders medium; good news low.
    if broken or new or (org_change is not None and org_change.now_allows):
        severity = Severity.HIGH
    elif expiring_trigger:
        severity = Severity.MEDIUM
    elif resolved or org_change is not None:
        severity = Severity.LOW
    else:
        severity = Severity.INFO

    totals = {
        "new": len(new),
        "resolved": len(resolved),
        "unknown": len(unknown),
        "expiring": len(expiring),
        "expired": len(expired),
    }
    counts = dict(current.counts)
    counts.update(
        new=totals["new"],
        resolved=totals["resolved"],
        unknown_items=totals["unknown"],
        expiring=totals["expiring"],
    )
    return Alert(
        kind=kind,
        tenant=current.tenant,
        run_id=run_id,
        evaluated_at=current.evaluated_at,
        org_disabled=current.org_disabled,
        complete=complete,
        severity=severity,
        triggers=tuple(triggers),
        counts=counts,
        new=_first(new, _finding_rank, new_item),
        resolved=_first(resolved, resolved_rank, resolved_item),
        unknown=_first(unknown, _finding_rank, unknown_item),
        expiring=_first(
            expiring,
            lambda f: (days_left(f), f.subject.lower()),
            lambda f: _item(f, seen.get(f.id), today),
        ),
        errors=run_errors,
        org_change=org_change,
        previous_run_id=previous.run_id if previous is not None else None,
        report_url=report_url,
        remediation_url=remediation_url,
        open_violations=open_violations,
        readiness=readiness_text(current.readiness) if current.readiness is not None else None,
        links=ordered_links(remediation_links, current.org_disabled),
        root_cause=_root_cause(current, org_change),
        expired=_first(expired, _finding_rank, lambda f: _item(f, since_first(f), today)),
        totals=totals,
    )


def _root_cause(current: Evaluation, flip: OrgFlip | None) -> RootCause | None:
    org = next((f for f in current.findings if f.control == ORG), None)
    if org is None or org.status is not Status.FAIL:
        return None
    fixes = sum(1 for f in current.findings if f.status is Status.FAIL and f.via == "inherited")
    # Who opened it, when this run saw the organisation flip to allow.
    changed_by = flip.changed_by if flip is not None and flip.now_allows else None
    return RootCause(fixes=fixes, fix=control(ORG).fix, reason=org.reason, changed_by=changed_by)


def proposal_title(proposal_id: str) -> str:
    """A button's words for a proposal, from its id (`rev-org-…`, `rev-mai-…`, `grant-…`)."""
    if proposal_id.startswith("rev-org"):
        return "Review the organisation fix"
    if proposal_id.startswith("rev-"):
        return "Review the mailbox revocations"
    if proposal_id.startswith("grant-"):
        return "Review the allowlist grants"
    return "Review the proposed fix"


def ordered_links(
    links: Iterable[tuple[str, str]], org_disabled: bool | None
) -> tuple[ActionLink, ...]:
    """(proposal id, url) pairs as buttons: the organisation fix first when it allows SMTP AUTH,
    then the other revocations, then grants."""

    def rank(pair: tuple[str, str]) -> tuple[int, str]:
        pid = pair[0]
        if pid.startswith("rev-org"):
            return (0 if org_disabled is False else 1, pid)
        return (1 if pid.startswith("rev-") else 2, pid)

    return tuple(
        ActionLink(title=proposal_title(pid), url=url, proposal_id=pid)
        for pid, url in sorted(links, key=rank)
    )


def item_detail(item: AlertItem, *, section: str) -> str:
    """The words after the subject on one alert line, e.g. "SharedMailbox · inherited · since
    2026-11-26". `section` is "new", "resolved", "unknown" or "expiring"."""
    parts = [item.kind]
    if section == "expiring":
        if item.expires is not None:
            left = item.days_left if item.days_left is not None else 0
            parts.append(f"expires {item.expires.isoformat()} (in {_plural(left, 'day')})")
        if item.owner:
            parts.append(f"owner {item.owner}")
        return " · ".join(parts)
    if item.via:
        parts.append(f"enabled {item.via}")
    if item.since is not None:
        parts.append(f"since {_today(item.since).isoformat()}")
    if item.changed_by:
        parts.append(item.changed_by)
    if section in ("unknown", "resolved"):
        parts.append(item.reason)
    return " · ".join(parts)


def failed_run_evaluation(
    tenant: str, evaluated_at: datetime, errors: Iterable[CollectionError | str]
) -> Evaluation:
    """The evaluation of a run whose collection failed outright: nothing was read, so the
    organisation and every mailbox are `unknown` (never a pass, never an empty list). Lets a
    failed run be told through `decide` like any other, with `complete=False`."""
    from auditor.core.policy import (
        evaluate,  # pure; imported here to keep this module's surface small
    )

    snapshot = Snapshot(
        tenant=tenant,
        collected_at=evaluated_at,
        org_disabled=None,
        mailboxes=None,
        directory_collected=False,
        errors=_errors(errors),
    )
    return evaluate(snapshot, Allowlist(), _today(evaluated_at), evaluated_at=evaluated_at)
