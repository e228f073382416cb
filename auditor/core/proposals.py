"""PURE: what a remediation proposal is — its kinds, targets, lifecycle states and records.

The planner (`auditor.remediation.plan`) makes `Proposal`s, the proposal store
(`auditor.storage.proposal_store`) keeps them as `Record`s, and the web layer shows them. The
types live here so that storage and web need not import the planner or each other.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from auditor.core.usage import BREAK_PREFIX as BREAK

__all__ = [
    "will_break",
    "type_counts",
    "break_line",
    "PlannedProposals",
    "Kind",
    "Role",
    "Target",
    "Proposal",
    "plan_hash",
    "canonical_items",
    "ORG_TARGET",
    "State",
    "TERMINAL",
    "OPEN",
    "Result",
    "TargetRecord",
    "Record",
    "AuditEvent",
    "Principal",
    "selected",
]

ORG_TARGET = "organisation"


class Kind(StrEnum):
    REVOCATION = "revocation"
    GRANT = "grant"


class Role(StrEnum):
    """What one target's change does to people."""

    REVOKE = "revoke"  # a mailbox loses SMTP AUTH
    PIN = "pin"  # an allowlisted mailbox pinned to false: kept working, no effective change
    ORG = "org"  # the organisation switch set to disabled
    GRANT = "grant"  # an allowlisted mailbox explicitly enabled


class Target(msgspec.Struct, frozen=True, gc=False):
    """One change. `key` is unique in its proposal (mailbox GUID, or "organisation").

    `before`/`after` are raw `SmtpClientAuthenticationDisabled` values (True = blocked, None =
    follow the organisation). `step` orders execution: pins (1) before the organisation (2).
    `upn` and `address` let the executor re-match the allowlist, since a Get-CASMailbox read
    carries no UPN. `mailbox_type` is Exchange's `RecipientTypeDetails` at planning time (for
    counts by type on the confirmation page); it describes the target, it is not part of the
    change, so the plan hash leaves it out (docs/architecture.md, "An approval").

    Frozen like the dataclasses here, but a msgspec Struct: a plan builds one per failing
    mailbox (90,000 at 100,000 mailboxes when the organisation allows SMTP AUTH), about four
    times faster. It holds only strings, booleans, an int and an enum: untracked by the
    cyclic collector.
    """

    key: str
    role: Role
    display: str
    before: bool | None
    after: bool | None
    step: int
    reason: str
    guid: str | None = None
    upn: str | None = None
    address: str | None = None
    mailbox_type: str | None = None

    @property
    def is_org(self) -> bool:
        return self.key == ORG_TARGET

    def to_dict(self) -> dict[str, Any]:
        """The stored form: the hashed fields, plus "type" when known."""
        data = self.hashed()
        if self.mailbox_type:
            data["type"] = self.mailbox_type
        return data

    def hashed(self) -> dict[str, Any]:
        """The fields the plan hash covers: the change itself."""
        return {
            "key": self.key,
            "role": self.role.value,
            "display": self.display,
            "before": self.before,
            "after": self.after,
            "step": self.step,
            "reason": self.reason,
            "guid": self.guid,
            "upn": self.upn,
            "address": self.address,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Target:
        return cls(
            key=str(data["key"]),
            role=Role(data["role"]),
            display=str(data["display"]),
            before=data["before"],
            after=data["after"],
            step=int(data["step"]),
            reason=str(data["reason"]),
            guid=data.get("guid"),
            upn=data.get("upn"),
            address=data.get("address"),
            mailbox_type=data.get("type"),  # rows stored before it was kept: None (unknown)
        )


@dataclass(frozen=True, slots=True)
class Proposal:
    """A set of changes an approver accepts or rejects as one, identified by its plan hash."""

    id: str
    kind: Kind
    scope: str  # "mailboxes", "organisation" or "allowlist"
    tenant: str
    run_id: str
    created_at: datetime
    expires_at: datetime
    title: str
    targets: tuple[Target, ...]
    plan_hash: str

    @property
    def loses(self) -> tuple[str, ...]:
        """Who loses SMTP AUTH when this is applied (the organisation flip included)."""
        return tuple(t.display for t in self.targets if t.role is Role.REVOKE)

    @property
    def kept(self) -> tuple[str, ...]:
        """Allowlisted mailboxes pinned to false so they keep working."""
        return tuple(t.display for t in self.targets if t.role is Role.PIN)

    @property
    def gains(self) -> tuple[str, ...]:
        return tuple(t.display for t in self.targets if t.role is Role.GRANT)

    @property
    def will_break(self) -> tuple[Target, ...]:
        """Revoked targets that used SMTP AUTH in the sign-in window (`remediation.plan`)."""
        return will_break(self.targets)


def type_counts(targets: Iterable[Target]) -> list[tuple[str, int]]:
    """(mailbox type, targets) of the mailbox targets, most first; "unknown type" for targets
    planned before the type was kept. The organisation target is not a mailbox."""
    counts = Counter(t.mailbox_type or "unknown type" for t in targets if not t.is_org)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def will_break(targets: Iterable[Target]) -> tuple[Target, ...]:
    """The revoked targets whose reason says "will break: last used ...", in order."""
    return tuple(t for t in targets if t.role is Role.REVOKE and t.reason.startswith(BREAK))


def break_line(target: Target) -> dict[str, str]:
    """A "will break" target as JSON: key, display, and the "will break: last used ..." note."""
    return {"key": target.key, "display": target.display, "detail": target.reason.split("; ")[0]}


def plan_hash(targets: tuple[Target, ...] | list[Target]) -> str:
    """sha256 of the canonical JSON of the targets, in order: what the approver saw.

    The bytes are those of `json.dumps(list, sort_keys=True, separators=(",", ":"),
    ensure_ascii=True)` of the targets' hashed fields, fed a chunk of targets at a time: a
    100,000-target plan is never held as one JSON document."""
    digest = hashlib.sha256(b"[")
    for start in range(0, len(targets), _HASH_CHUNK):
        if start:
            digest.update(b",")
        digest.update(canonical_items([t.hashed() for t in targets[start : start + _HASH_CHUNK]]))
    digest.update(b"]")
    return digest.hexdigest()


_HASH_CHUNK = 1000


def canonical_items(items: list[dict[str, Any]]) -> bytes:
    """The canonical JSON of `items`, comma-separated, without the list's brackets.

    msgspec writes the same bytes as `json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=True)` when the text is plain ASCII without DEL (json escapes DEL, every
    non-ASCII character and lone surrogates; msgspec writes the first two raw and refuses the
    last), about four times faster; otherwise the chunk is written by `json` itself. Tests pin
    the two to the same bytes."""
    try:
        encoded = msgspec.json.encode(items, order="sorted")
    except UnicodeEncodeError:  # a lone surrogate: json escapes it, msgspec cannot write it
        encoded = b"\x80"
    if encoded.isascii() and b"\x7f" not in encoded:
        return encoded[1:-1]
    return b",".join(
        json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        for item in items
    )


class State(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    RUNNING = "running"
    APPLIED = "applied"
    PARTIALLY_APPLIED = "partially_applied"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"  # a later audit planned something else (or nothing) instead


TERMINAL = frozenset(
    {
        State.APPLIED,
        State.PARTIALLY_APPLIED,
        State.FAILED,
        State.REJECTED,
        State.EXPIRED,
        State.SUPERSEDED,
    }
)
OPEN = frozenset({State.PROPOSED})  # still waiting for a decision


class Result(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"  # changed and verified by reading back
    VERIFIED = "verified"  # not written by us; its expected end state read back (org flip)
    SKIPPED = "skipped"  # not needed any more, or not safe; `detail` says why
    FAILED = "failed"
    NOT_SELECTED = "not_selected"


@dataclass(frozen=True, slots=True)
class TargetRecord:
    row: str
    target: Target
    selected: bool
    result: Result
    detail: str = ""
    observed_before: str = ""
    observed_after: str = ""
    at: str = ""


@dataclass(frozen=True, slots=True)
class Record:
    """A stored proposal with its state, approver, targets and the row's ETag."""

    id: str
    kind: Kind
    scope: str
    tenant: str
    run_id: str
    created_at: datetime
    expires_at: datetime
    title: str
    plan_hash: str
    state: State
    etag: str
    targets: tuple[TargetRecord, ...] = ()
    approver_oid: str | None = None
    approver_name: str | None = None
    approved_at: datetime | None = None
    subset: bool = False
    started_at: datetime | None = None
    attempts: int = 0
    finished_at: datetime | None = None
    outcome: str = ""
    rejected_by: str | None = None
    rejected_at: datetime | None = None
    reject_reason: str = ""
    last_confirmed: str = ""  # the latest audit run that planned exactly this
    superseded_by: str | None = None
    supersedes: str | None = None
    lease_until: datetime | None = None
    approval: dict[str, Any] | None = None  # the signed approval record (core.approval)
    approval_mac: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The public status document (`smtp-auth-remediation/1`)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat().replace("+00:00", "Z") if value else None

        return {
            "schema": "smtp-auth-remediation/1",
            "id": self.id,
            "kind": self.kind.value,
            "scope": self.scope,
            "tenant": self.tenant,
            "run_id": self.run_id,
            "title": self.title,
            "state": self.state.value,
            "plan_hash": self.plan_hash,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "approved_by": (
                {"object_id": self.approver_oid, "name": self.approver_name}
                if self.approver_oid
                else None
            ),
            "approved_at": iso(self.approved_at),
            "rejected_by": self.rejected_by,
            "rejected_at": iso(self.rejected_at),
            "reject_reason": self.reject_reason or None,
            "last_confirmed": self.last_confirmed or None,
            "superseded_by": self.superseded_by,
            "supersedes": self.supersedes,
            "lease_until": iso(self.lease_until),
            "approval_record": self.approval,  # as stored; the executor verifies its MAC
            "subset": self.subset,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "attempts": self.attempts,
            "outcome": self.outcome,
            "by_type": dict(type_counts(r.target for r in self.targets)),
            "will_break": [break_line(t) for t in will_break(r.target for r in self.targets)],
            "targets": [
                {
                    **t.target.to_dict(),
                    "selected": t.selected,
                    "result": t.result.value,
                    "detail": t.detail,
                    "observed_before": t.observed_before or None,
                    "observed_after": t.observed_after or None,
                    "at": t.at or None,
                }
                for t in self.targets
            ],
        }


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: str
    event: str
    actor: str
    detail: str


def selected(targets: Iterable[TargetRecord]) -> list[TargetRecord]:
    return [t for t in targets if t.selected]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated approver, as recorded in the audit trail."""

    object_id: str
    name: str
    tenant_id: str
    roles: tuple[str, ...]
    source: str  # "bearer" or "easyauth"


@dataclass(frozen=True, slots=True)
class PlannedProposals:
    """A run's remediation proposals, planned (pure) but not stored yet: the run's alert links
    them and is sent before `save()` stores them, so a failure storing them never loses it."""

    ids: tuple[str, ...]
    save: Callable[[], list[str]]
