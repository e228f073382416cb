"""PURE: turn one run's findings into remediation proposals (docs/architecture.md).

No network, no clock, no environment: `run_id`, `created_at` and the options are arguments.

Two kinds, never mixed in one proposal, so an approver never enables and disables in one click:

- **revocation**: lowers effective states.
  * `revoke-mailboxes`: every failing mailbox with an explicit `false` gets `null` (back to
    organisation control) when the organisation disables SMTP AUTH, otherwise `true`;
    `force_true` always sets `true`.
  * `revoke-organisation`: when the organisation allows SMTP AUTH, one proposal that first pins
    every allowlisted (current, unambiguous) inheriting mailbox to `false` — their effective
    state does not change, they are "kept working" — and then sets the organisation to `true`.
    Every failing inheriting mailbox loses SMTP AUTH; the proposal lists them.
- **grant**: raises effective states. `grant-allowlist`: set `false` on allowlisted mailboxes
  flagged `SMTPAUTH-ALLOWLIST-UNUSED` or `SMTPAUTH-ALLOWLIST-INHERITED` (the policy only raises
  those for current, unambiguous entries).

Break impact: with usage evidence (the evaluation's readiness, or `usage`), every revoked
mailbox that signed in with SMTP AUTH in the window has its reason start with "will break: last
used ..., from ..." (`core.usage.break_note`), so the approver sees, and the plan hash covers,
who will notice; `Proposal.will_break` lists them first and apart.

Never acted upon: allowlisted (exempt) mailboxes are never lowered; evidence that is `unknown`
is never changed. The organisation-level revocation is not proposed at all while evidence that
decides who keeps SMTP AUTH is missing (see `org_blockers`): flipping the organisation blind
could cut off an approved sender.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from operator import attrgetter

import msgspec

from auditor.core.model import Effective, Evaluation, Finding, MailboxUsage, Status
from auditor.core.proposals import ORG_TARGET, Kind, Proposal, Role, Target, plan_hash
from auditor.core.usage import break_note

__all__ = [
    "Kind",
    "Role",
    "Target",
    "Proposal",
    "plan",
    "plan_grants",
    "org_blockers",
    "plan_hash",
    "DEFAULT_EXPIRY_DAYS",
    "ORG_TARGET",
]

DEFAULT_EXPIRY_DAYS = 7

_MAILBOX = "SMTPAUTH-MAILBOX"
_UNUSED = "SMTPAUTH-ALLOWLIST-UNUSED"
_INHERITED = "SMTPAUTH-ALLOWLIST-INHERITED"
_UNMATCHED = "SMTPAUTH-ALLOWLIST-UNMATCHED"
_COLLECTION = "SMTPAUTH-COLLECTION"


def _proposal_id(kind: Kind, scope: str, tenant: str, digest: str) -> str:
    """Same kind, scope, tenant and targets give the same id, whatever the run: an identical
    plan the next night is the same proposal. Safe as a Table Storage key."""
    seed = "\n".join((kind.value, scope, tenant.lower(), digest))
    short = hashlib.sha256(seed.encode("utf-8")).hexdigest()[:16]
    return f"{'rev' if kind is Kind.REVOCATION else 'grant'}-{scope[:3]}-{short}"


def _make(
    kind: Kind,
    scope: str,
    title: str,
    targets: list[Target],
    evaluation: Evaluation,
    run_id: str,
    created_at: datetime,
    expiry_days: int,
) -> Proposal:
    # By (step, key): by key, then by step, which a stable sort leaves in key order within a
    # step. Comparing strings alone, then small ints, is about 3 times faster than comparing
    # (step, key) tuples (90,000 targets at 100,000 mailboxes).
    ordered = sorted(targets, key=attrgetter("key"))
    ordered.sort(key=attrgetter("step"))
    digest = plan_hash(ordered)
    return Proposal(
        id=_proposal_id(kind, scope, evaluation.tenant, digest),
        kind=kind,
        scope=scope,
        tenant=evaluation.tenant,
        run_id=run_id,
        created_at=created_at,
        expires_at=created_at + timedelta(days=expiry_days),
        title=title,
        targets=tuple(ordered),
        plan_hash=digest,
    )


def _mailbox_target(
    finding: Finding, role: Role, after: bool | None, step: int, reason: str
) -> Target | None:
    mailbox = finding.mailbox
    if mailbox is None or not mailbox.guid:
        return None  # writes go by Guid; without one, nothing safe to target
    key = mailbox.guid.lower()
    if key == mailbox.key:
        key = mailbox.key  # the snapshot's string, not a copy per target (memory at 1,000,000)
    return Target(
        key=key,
        role=role,
        display=mailbox.display,
        before=mailbox.setting,
        after=after,
        step=step,
        reason=reason,
        guid=mailbox.guid,
        upn=mailbox.user_principal_name,
        address=mailbox.primary_smtp_address,
        mailbox_type=mailbox.recipient_type_details or None,
    )


def _breaks(
    target: Target | None, finding: Finding, used: Mapping[str, MailboxUsage]
) -> Target | None:
    """The target, its reason led by "will break: ..." if the mailbox used SMTP AUTH lately."""
    if target is None or finding.mailbox is None:
        return target
    usage = used.get(finding.mailbox.key)
    if usage is None or not usage.used:
        return target
    return msgspec.structs.replace(target, reason=f"{break_note(usage)}; {target.reason}")


def _failing(finding: Finding, via: str) -> bool:
    return (
        finding.control == _MAILBOX
        and finding.status is Status.FAIL
        and finding.effective is Effective.ENABLED
        and finding.via == via
        and finding.mailbox is not None
        and finding.mailbox.setting_present
    )


def org_blockers(evaluation: Evaluation) -> list[str]:
    """Why the organisation-level revocation cannot be planned safely; empty when it can.

    Flipping the organisation cuts off every inheriting mailbox, so it needs complete evidence of
    who is allowlisted and inheriting: no failed collection, every mailbox read, every allowlisted
    mailbox's state known, every allowlist entry checkable.
    """
    reasons: list[str] = []
    for f in evaluation.findings:
        if f.control == _COLLECTION:
            reasons.append(f"collection failed ({f.subject}): {f.reason}")
        elif f.control == _MAILBOX and f.status is Status.UNKNOWN:
            if f.mailbox is None:
                reasons.append("the per-mailbox settings were not collected")
            elif f.entry is not None:
                reasons.append(f"allowlisted mailbox {f.subject} has an unknown setting")
        elif f.control == _UNMATCHED and f.status is Status.UNKNOWN:
            reasons.append(f"allowlist entry {f.subject!r} could not be matched (no Get-Mailbox)")
        elif (
            f.control == _MAILBOX
            and f.status is Status.EXEMPT
            and f.via == "inherited"
            and (f.mailbox is None or not f.mailbox.guid)
        ):
            reasons.append(f"allowlisted mailbox {f.subject} has no Guid to pin")
    return reasons


def plan(
    evaluation: Evaluation,
    *,
    run_id: str,
    created_at: datetime,
    force_true: bool = False,
    expiry_days: int = DEFAULT_EXPIRY_DAYS,
    include_grants: bool = False,
    usage: Mapping[str, MailboxUsage] | None = None,
) -> list[Proposal]:
    """Revocation proposals for one run (and grant proposals with `include_grants`).

    At most one proposal per scope: `revoke-mailboxes` (explicit enables), `revoke-organisation`
    (pin-first, then the organisation switch), `grant-allowlist` (see `plan_grants`). `usage`
    (mailbox key -> use in the window; default: the evaluation's readiness) marks what breaks.
    """
    if expiry_days < 1:
        raise ValueError("expiry_days must be at least 1")
    if usage is None:
        usage = evaluation.readiness.mailboxes if evaluation.readiness is not None else {}
    org = evaluation.org_disabled
    proposals: list[Proposal] = []

    explicit: list[Target] = []
    for f in evaluation.findings:
        if not _failing(f, "explicit"):
            continue
        if force_true or org is not True:
            after: bool | None = True
            why = "explicitly enabled and not allowlisted: set to true (blocked)"
        else:
            after = None
            why = (
                "explicitly enabled and not allowlisted: back to organisation control (null), "
                "which blocks SMTP AUTH"
            )
        target = _breaks(_mailbox_target(f, Role.REVOKE, after, 1, why), f, usage)
        if target is not None:
            explicit.append(target)
    if explicit:
        proposals.append(
            _make(
                Kind.REVOCATION,
                "mailboxes",
                f"Revoke SMTP AUTH from {len(explicit)} explicitly enabled mailbox(es)",
                explicit,
                evaluation,
                run_id,
                created_at,
                expiry_days,
            )
        )

    if org is False and not org_blockers(evaluation):
        targets: list[Target] = []
        for f in evaluation.findings:
            if (
                f.control == _MAILBOX
                and f.status is Status.EXEMPT
                and f.via == "inherited"
                and f.mailbox is not None
                and f.mailbox.setting is None
            ):
                pin = _mailbox_target(
                    f,
                    Role.PIN,
                    False,
                    1,
                    "allowlisted and inheriting: pinned to false first so it keeps working",
                )
                if pin is not None:
                    targets.append(pin)
        losing = 0
        for f in evaluation.findings:
            if _failing(f, "inherited"):
                lose = _breaks(
                    _mailbox_target(
                        f,
                        Role.REVOKE,
                        None,
                        3,
                        "inherits (null) and is not allowlisted: loses SMTP AUTH with the "
                        "organisation",
                    ),
                    f,
                    usage,
                )
                if lose is not None:
                    # Informational: the mailbox itself is not written; the org flip revokes it.
                    targets.append(lose)
                    losing += 1
        targets.append(
            Target(
                key=ORG_TARGET,
                role=Role.ORG,
                display="organisation (Set-TransportConfig)",
                before=False,
                after=True,
                step=2,
                reason="the organisation allows SMTP AUTH: set to true (blocked by default)",
            )
        )
        pins = sum(1 for t in targets if t.role is Role.PIN)
        proposals.append(
            _make(
                Kind.REVOCATION,
                "organisation",
                f"Disable SMTP AUTH for the organisation: {losing} mailbox(es) lose it, "
                f"{pins} allowlisted mailbox(es) pinned first",
                targets,
                evaluation,
                run_id,
                created_at,
                expiry_days,
            )
        )

    if include_grants:
        proposals.extend(
            plan_grants(evaluation, run_id=run_id, created_at=created_at, expiry_days=expiry_days)
        )
    return proposals


def plan_grants(
    evaluation: Evaluation,
    *,
    run_id: str,
    created_at: datetime,
    expiry_days: int = DEFAULT_EXPIRY_DAYS,
) -> list[Proposal]:
    """One `grant` proposal: set false on allowlisted mailboxes flagged UNUSED or INHERITED.

    The policy raises those controls only for current, unambiguous entries that match exactly
    one mailbox; a mailbox whose setting is unknown is never a target.
    """
    targets: dict[str, Target] = {}
    for f in evaluation.findings:
        if f.control not in (_UNUSED, _INHERITED) or f.mailbox is None:
            continue
        if not f.mailbox.setting_present or f.mailbox.setting is False:
            continue
        if f.entry is None or not f.entry.is_current(created_at.date()):
            continue
        why = (
            "allowlisted but effectively disabled: set to false (enabled)"
            if f.control == _UNUSED
            else "allowlisted but enabled only by inheritance: set to false explicitly"
        )
        target = _mailbox_target(f, Role.GRANT, False, 1, f"{why} ({f.entry.where})")
        if target is not None:
            targets.setdefault(target.key, target)
    if not targets:
        return []
    return [
        _make(
            Kind.GRANT,
            "allowlist",
            f"Grant SMTP AUTH to {len(targets)} allowlisted mailbox(es)",
            list(targets.values()),
            evaluation,
            run_id,
            created_at,
            expiry_days,
        )
    ]
