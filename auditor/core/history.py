"""PURE: what changed between the recorded state and a new run, for the history store.

No I/O here: `store.py` loads the recorded state, calls these functions and writes what they
return. Two kinds of state are kept, one record per mailbox and one per finding:

- `MailboxState`: the raw setting (`true` `false` `null` `missing`), the identities people
  recognise (address, UPN, type), first seen, since when unchanged, removed or not.
- `FindingState`: control, subject, status, first seen, status since, resolved by which run.

Rules that protect the history from partial reads (docs/architecture.md, semantics):
- Mailboxes are marked removed, and findings resolved, only by a *complete* run.
- An incomplete run never turns a known finding status into `unknown` (that is an artefact of
  the evidence it lacks; its errors are recorded with the run), and never rewrites identities
  it did not read (no Get-Mailbox data: UPN and type are kept).
- The first run of a store establishes the baseline: its records carry first-seen, and no
  history rows are written for it (a 100,000-mailbox tenant must not write 100,000 rows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from msgspec.structs import replace

from auditor.core.model import Finding, Mailbox, Setting, Snapshot, Status

__all__ = [
    "MailboxState",
    "MailboxChange",
    "FindingState",
    "FindingEvent",
    "BUCKETS",
    "bucket_of",
    "key_hash",
    "setting_code",
    "mailbox_changes",
    "finding_changes",
    "run_id_for",
    "run_key",
    "run_time",
]

BUCKETS = 256  # the fewest packed state buckets per kind (width 2); see storage/packing.py


def key_hash(value: str) -> str:
    """Hex digest used in table keys instead of any value read from Exchange."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def bucket_of(value: str, width: int = 2) -> str:
    """The state bucket of a key: the first `width` hex digits of its hash (16**width
    buckets; the store picks the width from the tenant's size, storage/packing.py)."""
    return key_hash(value)[:width]


# -- run ids ---------------------------------------------------------------------------------

_MAX_MS = 10**13 - 1


def run_id_for(moment: datetime, suffix: str) -> str:
    """`20261127T020007123Z-ab12`: sortable, readable, unique with a random suffix."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S}{moment.microsecond // 1000:03d}Z-{suffix}"


def run_time(run_id: str) -> datetime:
    stamp, _, suffix = run_id.partition("-")
    if len(stamp) != 19 or not stamp.endswith("Z") or not suffix or not suffix.isalnum():
        raise ValueError(f"not a run id: {run_id!r}")
    base = datetime.strptime(stamp[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return base.replace(microsecond=int(stamp[15:18]) * 1000)


def run_key(run_id: str) -> str:
    """RowKey of a run: inverted milliseconds, so a plain query lists newest first."""
    moment = run_time(run_id)
    millis = int(moment.timestamp() * 1000)
    return f"{_MAX_MS - millis:013d}-{run_id.partition('-')[2]}"


# -- mailboxes -------------------------------------------------------------------------------


def setting_code(mailbox: Mailbox) -> str:
    return Setting.code(mailbox.setting, mailbox.setting_present)


class MailboxState(msgspec.Struct, frozen=True, gc=False):
    """A mailbox as the state buckets keep it. A msgspec Struct, as `FindingState`: the first
    run builds one per mailbox, about four times faster than a frozen dataclass."""

    key: str
    setting: str
    address: str | None
    upn: str | None
    rtype: str | None
    first_seen: str
    since: str
    removed: bool = False

    def facts(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "address": self.address,
            "upn": self.upn,
            "type": self.rtype,
            "removed": self.removed,
        }

    def pack(self) -> list[Any]:
        return [
            self.setting,
            self.address,
            self.upn,
            self.rtype,
            self.first_seen,
            self.since,
            1 if self.removed else 0,
        ]

    @classmethod
    def unpack(cls, key: str, data: list[Any]) -> MailboxState:
        return cls(key, data[0], data[1], data[2], data[3], data[4], data[5], bool(data[6]))

    @staticmethod
    def count_present(packed: Iterable[list[Any]]) -> int:
        """How many of these packed records are of mailboxes not marked removed (without
        unpacking them)."""
        return sum(1 for data in packed if not data[6])


@dataclass(frozen=True, slots=True)
class MailboxChange:
    """One change of one mailbox in one run. `kind`: added, changed, removed, returned."""

    key: str
    kind: str
    run_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    fields: tuple[str, ...]

    @property
    def label(self) -> str:
        for facts in (self.after, self.before):
            if facts and (facts.get("address") or facts.get("upn")):
                return str(facts.get("address") or facts.get("upn"))
        return self.key


_TRACKED = ("setting", "address", "upn", "type")


def mailbox_changes(
    previous: Mapping[str, list[Any]],
    snapshot: Snapshot,
    run_id: str,
    *,
    complete: bool,
    baseline: bool | None = None,
) -> tuple[dict[str, MailboxState], list[MailboxChange]]:
    """(records to write, changes to log). Nothing at all when the CAS listing is missing.

    `previous`: the recorded states, packed (`MailboxState.pack`, as the state buckets hold
    them); one is unpacked only when its mailbox changed, so an unchanged night builds no
    state object at all. `baseline` (default: `previous` is empty) says no mailbox was
    recorded before, so none is logged as added; give it when `previous` and `snapshot` are
    one bucket of the whole.
    """
    if snapshot.mailboxes is None:
        return {}, []
    if baseline is None:
        baseline = not previous
    directory = snapshot.directory_collected
    writes: dict[str, MailboxState] = {}
    changes: list[MailboxChange] = []
    seen: set[str] = set()
    for mailbox in snapshot.mailboxes:
        key = mailbox.key
        seen.add(key)
        packed = previous.get(key)
        upn, rtype = mailbox.user_principal_name, mailbox.recipient_type_details
        if not directory and packed is not None:
            upn, rtype = packed[2], packed[3]  # not read this time: keep what we knew
        setting, address = setting_code(mailbox), mailbox.primary_smtp_address
        if (
            packed is not None
            and not packed[6]  # not removed
            and packed[0] == setting
            and packed[1] == address
            and packed[2] == upn
            and packed[3] == rtype
        ):
            continue  # unchanged (the common case): nothing to write, nothing to log
        old = None if packed is None else MailboxState.unpack(key, packed)
        new = MailboxState(key, setting, address, upn, rtype, run_id, run_id)
        if old is None:
            writes[key] = new
            if not baseline:
                changes.append(MailboxChange(key, "added", run_id, None, new.facts(), _TRACKED))
            continue
        before, after = old.facts(), new.facts()
        fields = tuple(f for f in _TRACKED if before[f] != after[f])
        if old.removed:
            new = replace(new, first_seen=old.first_seen)
            writes[key] = new
            changes.append(MailboxChange(key, "returned", run_id, old.facts(), new.facts(), fields))
        elif fields:
            new = replace(new, first_seen=old.first_seen)
            writes[key] = new
            changes.append(MailboxChange(key, "changed", run_id, old.facts(), new.facts(), fields))
    if complete:
        for key, packed in previous.items():
            if key in seen or packed[6]:  # seen, or removed already
                continue
            old = MailboxState.unpack(key, packed)
            gone = replace(old, since=run_id, removed=True)
            writes[key] = gone
            changes.append(
                MailboxChange(key, "removed", run_id, old.facts(), gone.facts(), ("removed",))
            )
    return writes, changes


# -- findings --------------------------------------------------------------------------------


class FindingState(msgspec.Struct, frozen=True, gc=False):
    id: str
    control: str
    subject: str
    status: str
    first_seen: str
    since: str
    resolved: str | None = None
    last_seen: str | None = None  # set when resolved: the last complete run that had it

    @property
    def open(self) -> bool:
        return self.resolved is None

    def pack(self) -> list[Any]:
        return [
            self.control,
            self.subject,
            self.status,
            self.first_seen,
            self.since,
            self.resolved,
            self.last_seen,
        ]

    @classmethod
    def unpack(cls, finding_id: str, data: list[Any]) -> FindingState:
        return cls(finding_id, data[0], data[1], data[2], data[3], data[4], data[5], data[6])

    @staticmethod
    def brief(data: list[Any]) -> list[Any] | None:
        """[control, status, subject] of a packed record of an open finding, None for a
        resolved one (without unpacking: what the alert baseline keeps of it)."""
        return None if data[5] is not None else [data[0], data[2], data[1]]


@dataclass(frozen=True, slots=True)
class FindingEvent:
    """A transition of one finding: `status` (changed), `resolved`, `reopened`, `opened`."""

    id: str
    kind: str
    run_id: str
    before: str | None
    after: str | None
    subject: str
    control: str


def finding_changes(
    previous: Mapping[str, list[Any]],
    findings: Iterable[Finding],
    run_id: str,
    *,
    complete: bool,
    last_complete_run: str | None,
) -> tuple[dict[str, FindingState], list[FindingEvent]]:
    """(records to write, events to log). Opening is in the record (first_seen), not a row.
    `previous`: the recorded states, packed (`FindingState.pack`); one is unpacked only when
    its finding changed."""
    writes: dict[str, FindingState] = {}
    events: list[FindingEvent] = []
    seen: set[str] = set()
    for finding in findings:
        fid, status = finding.id, finding.status.value
        seen.add(fid)
        packed = previous.get(fid)
        if packed is not None and packed[5] is None and packed[2] == status:
            if packed[1] != finding.subject:  # open, same status: only its subject moved
                writes[fid] = replace(FindingState.unpack(fid, packed), subject=finding.subject)
            continue  # unchanged (the common case)
        old = None if packed is None else FindingState.unpack(fid, packed)
        if old is None:
            writes[fid] = FindingState(
                fid, finding.control, finding.subject, status, run_id, run_id
            )
            continue
        if not complete and status == Status.UNKNOWN.value and old.status != status and old.open:
            continue  # missing evidence does not overwrite what a complete read established
        if not old.open:
            writes[fid] = replace(
                old,
                subject=finding.subject,
                status=status,
                since=run_id,
                resolved=None,
                last_seen=None,
            )
            events.append(
                FindingEvent(
                    fid, "reopened", run_id, "resolved", status, finding.subject, finding.control
                )
            )
        else:  # open, its status changed (same status and open took the fast path above)
            writes[fid] = replace(old, subject=finding.subject, status=status, since=run_id)
            events.append(
                FindingEvent(
                    fid, "status", run_id, old.status, status, finding.subject, finding.control
                )
            )
    if complete:
        for fid, packed in previous.items():
            if fid in seen or packed[5] is not None:  # seen, or resolved already
                continue
            old = FindingState.unpack(fid, packed)
            # Only complete runs resolve, so the last complete run (or a later run in which the
            # finding first appeared or changed) is the last that saw it.
            candidates = [r for r in (last_complete_run, old.first_seen, old.since) if r]
            writes[fid] = replace(old, resolved=run_id, last_seen=max(candidates))
            events.append(
                FindingEvent(
                    fid, "resolved", run_id, old.status, "resolved", old.subject, old.control
                )
            )
    return writes, events
