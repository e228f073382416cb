"""What the executor checks before it changes anything, trusting nothing it read from storage.

Whoever can write the storage account can flip a state, edit a target (and recompute the plain
plan hash), widen a subset or delete the approval. So before the first change:

1. `verify_approval`: the approval record's HMAC (APPROVAL_SIGNING_KEY, held by the app, not the
   storage account) verifies; it names this proposal; the stored targets hash to the plan hash
   it approved; it is recent (`APPROVAL_VALID_FOR`). The selection comes from that record only.
2. `check_invariants`: whatever the plan says, a revocation only lowers (explicit false → null
   or true; the organisation false → true; pins false only on inheriting mailboxes), a grant
   only sets false; kinds and roles are never mixed.
3. `named_now`: pins and grants are written only to mailboxes that the allowlist, re-read now,
   names validly (current, unambiguous) in a fresh read of every mailbox — by the live read's
   identities, not by the UPN or address stored in the plan.

A refusal is recorded (trail `refused`, state `failed`, the reason as outcome), nothing changed.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from auditor.core.allowlist import match
from auditor.core.approval import ApprovalRecord, subset_digest, verify
from auditor.core.errors import Refused
from auditor.core.model import Allowlist
from auditor.core.proposals import ORG_TARGET, Kind, Record, Role, TargetRecord, plan_hash
from auditor.core.snapshot import build_snapshot

__all__ = ["verify_approval", "check_invariants", "named_now", "APPROVAL_VALID_FOR"]

APPROVAL_VALID_FOR = timedelta(days=2)  # an approval older than this is not executed


def verify_approval(record: Record, key: bytes | None, now: datetime) -> ApprovalRecord:
    if key is None:
        raise Refused("unverified", "APPROVAL_SIGNING_KEY is not set: approvals cannot be checked")
    try:
        approval = verify(key, record.approval, record.approval_mac)
    except (ValueError, KeyError, TypeError) as exc:
        raise Refused("forged", f"approval record missing or invalid: {exc}") from None
    if approval.proposal_id != record.id:
        raise Refused("forged", f"the approval record is for proposal {approval.proposal_id}")
    digest = plan_hash([t.target for t in record.targets])
    if digest != approval.plan_hash or record.plan_hash != approval.plan_hash:
        raise Refused(
            "tampered", "the stored targets do not hash to the plan hash that was approved"
        )
    selected = [t.target.key for t in record.targets if t.selected]
    if approval.subset is None:
        if len(selected) != len(record.targets):
            raise Refused("tampered", "the stored selection differs from the approved subset")
    elif subset_digest(selected) != approval.subset or len(selected) != approval.subset_size:
        raise Refused("tampered", "the stored subset does not hash to the subset that was approved")
    try:
        approved_at = datetime.fromisoformat(approval.approved_at)
    except ValueError:
        raise Refused("forged", "the approval record's time is malformed") from None
    if now - approved_at > APPROVAL_VALID_FOR:
        raise Refused("expired", f"approved at {approval.approved_at}: too old to execute now")
    return approval


def _violation(kind: Kind, target: TargetRecord) -> str | None:
    t = target.target
    if kind is Kind.GRANT:
        if t.role is not Role.GRANT or t.after is not False or t.is_org or not t.guid:
            return "a grant may only set false on a mailbox"
        return None
    if t.role is Role.GRANT:
        return "a revocation may not grant"
    if t.role is Role.ORG:
        if not (t.key == ORG_TARGET and t.before is False and t.after is True):
            return "the organisation may only go from false to true"
    elif t.is_org:
        return "only the organisation switch may target the organisation"
    elif not t.guid:
        return "a mailbox change needs a Guid"
    elif t.role is Role.PIN:
        if not (t.before is None and t.after is False):
            return "a pin may only set false on an inheriting (null) mailbox"
    elif t.role is Role.REVOKE:
        if t.step == 3:
            if t.after is not None:
                return "a consequence of the organisation switch is never written"
        elif not (t.before is False and t.after in (None, True)):
            return "a revocation may only lower an explicit false to null or true"
    return None


def check_invariants(record: Record) -> None:
    """Refused("invariant") if any selected target would do what its kind may not."""
    bad = []
    for target in record.targets:
        if target.selected:
            why = _violation(record.kind, target)
            if why:
                bad.append(f"{target.target.display}: {why}")
    if bad:
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise Refused("invariant", "; ".join(bad[:5]) + more)


def named_now(
    cas_mailboxes: list[dict[str, object]],
    mailboxes: list[dict[str, object]],
    allowlist: Allowlist,
    tenant: str,
    today: date,
) -> tuple[dict[str, str], frozenset[str]]:
    """(mailbox GUID (lower case) -> where its current, unambiguous allowlist entry is,
    entry keys naming several mailboxes) from a fresh read of every mailbox."""
    snapshot = build_snapshot(
        {
            "schema": "smtp-auth-snapshot/1",
            "tenant": tenant,
            "collected_at": "1970-01-01T00:00:00Z",
            "transport_config": None,
            "cas_mailboxes": cas_mailboxes,
            "mailboxes": mailboxes,
            "errors": [],
        },
        source="re-check",
    )
    boxes = list(snapshot.mailboxes or ())
    matches = match(allowlist, boxes)
    named: dict[str, str] = {}
    for mailbox in boxes:
        entries = matches.valid_entries(mailbox, today)
        if entries and mailbox.guid:
            named[mailbox.guid.lower()] = entries[0].where
    return named, frozenset(matches.ambiguous())
