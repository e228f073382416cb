"""Recording one run: diff against the committed state, write idempotently, commit last.

Order (docs/architecture.md, "Crash safety and recording"):
1. evidence blobs, and the manifest of the history rows the run will write;
2. history rows (`<hash>.<run key>`: keyed by the run, a replay writes the same rows);
3. new bucket versions (`<bucket>.<run key>`: invisible until committed);
4. the commit record (one ETag-guarded request): from here the run's state is current;
5. the run entity (`complete`, `incomplete` or `suspect`); a copy is in the commit record;
6. superseded bucket versions deleted (best effort).
A run killed anywhere before 4 changed nothing any reader sees; the next run deletes its
history rows (by the manifest) and marks it `abandoned`. Killed between 4 and 5, the next run
writes its run entity from the commit record's copy.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from auditor.core.history import (
    FindingEvent,
    FindingState,
    MailboxChange,
    MailboxState,
    bucket_of,
    finding_changes,
    key_hash,
    mailbox_changes,
)
from auditor.core.model import Evaluation, Finding, Mailbox, Setting, Snapshot
from auditor.core.records import OrgChange
from auditor.storage.blobs import Blobs, IncompleteBlob
from auditor.storage.packing import packed_operation, version_row
from auditor.storage.tables import NotFound, Operation, Table
from auditor.storage.versions import Commit, Loaded, Versions

__all__ = ["Diff", "diff_mailboxes", "diff_findings", "history_operations", "org_change"]

log = logging.getLogger("auditor.storage")


@dataclass(slots=True)
class Diff:
    """What a run writes for one kind of state, and what it found."""

    operations: list[Operation] = field(default_factory=list)
    written: dict[str, str] = field(default_factory=dict)  # bucket -> new version row
    superseded: list[str] = field(default_factory=list)  # rows the new versions replace
    loaded: Loaded = field(default_factory=Loaded)
    mailbox_changes: list[MailboxChange] = field(default_factory=list)
    finding_events: list[FindingEvent] = field(default_factory=list)
    new_findings: tuple[str, ...] = ()
    baseline: bool = False
    known: int = 0  # records not marked removed before this run
    removed: int = 0

    def versions(self) -> dict[str, str]:
        return {**self.loaded.rows, **self.written}


def diff_mailboxes(
    versions: Versions,
    commit: Commit,
    snapshot: Snapshot,
    *,
    run_id: str,
    rkey: str,
    complete: bool,
    loaded: Loaded | None = None,
) -> Diff:
    """Changes in the order `history.mailbox_changes` gives them for the whole snapshot. One
    bucket at a time: its records are unpacked, diffed and dropped, never all at once."""
    out = Diff(loaded=loaded or versions.buckets("mailbox", commit))
    out.baseline = not out.loaded.records
    if snapshot.mailboxes is None:
        return out
    stored = dict(out.loaded.contents)
    grouped: dict[str, list[tuple[int, Mailbox]]] = {}
    for index, mailbox in enumerate(snapshot.mailboxes):
        grouped.setdefault(bucket_of(mailbox.key), []).append((index, mailbox))
    ordered: list[tuple[tuple[int, int], MailboxChange]] = []
    for bucket in sorted(grouped.keys() | stored.keys()):
        content = stored.pop(bucket, b"")
        raw: dict[str, Any] = json.loads(zlib.decompress(content)) if content else {}
        previous = {key: MailboxState.unpack(key, data) for key, data in raw.items()}
        out.known += sum(1 for state in previous.values() if not state.removed)
        members = grouped.pop(bucket, [])
        part = replace(snapshot, mailboxes=tuple(mailbox for _, mailbox in members))
        writes, changes = mailbox_changes(
            previous, part, run_id, complete=complete, baseline=out.baseline
        )
        position = {mailbox.key: index for index, mailbox in members}
        for change in changes:  # removals come after the snapshot's own, in state order
            order = (1, len(ordered)) if change.kind == "removed" else (0, position[change.key])
            ordered.append((order, change))
            out.removed += change.kind == "removed"
        if writes:
            _version(out, "mailbox", bucket, raw, writes, run_id, rkey)
    ordered.sort(key=lambda item: item[0])
    out.mailbox_changes = [change for _, change in ordered]
    return out


def diff_findings(
    versions: Versions,
    commit: Commit,
    evaluation: Evaluation,
    *,
    run_id: str,
    rkey: str,
    complete: bool,
    last_complete: str | None,
) -> Diff:
    """Events and new finding ids in the order `history.finding_changes` gives them."""
    out = Diff(loaded=versions.buckets("finding", commit))
    stored = dict(out.loaded.contents)
    grouped: dict[str, list[tuple[int, Finding]]] = {}
    for index, finding in enumerate(evaluation.findings):
        grouped.setdefault(bucket_of(finding.id), []).append((index, finding))
    ordered: list[tuple[tuple[int, int], FindingEvent]] = []
    new: list[tuple[int, str]] = []
    for bucket in sorted(grouped.keys() | stored.keys()):
        content = stored.pop(bucket, b"")
        raw: dict[str, Any] = json.loads(zlib.decompress(content)) if content else {}
        previous = {fid: FindingState.unpack(fid, data) for fid, data in raw.items()}
        members = grouped.pop(bucket, [])
        writes, events = finding_changes(
            previous,
            (finding for _, finding in members),
            run_id,
            complete=complete,
            last_complete_run=last_complete,
        )
        position = {finding.id: index for index, finding in members}
        for event in events:  # resolutions come after the others, in state order
            order = (1, len(ordered)) if event.kind == "resolved" else (0, position[event.id])
            ordered.append((order, event))
        new.extend((position[fid], fid) for fid in writes if fid not in previous)
        if writes:
            _version(out, "finding", bucket, raw, writes, run_id, rkey)
    ordered.sort(key=lambda item: item[0])
    new.sort()
    out.finding_events = [event for _, event in ordered]
    out.new_findings = tuple(fid for _, fid in new)
    return out


def _version(
    out: Diff,
    kind: str,
    bucket: str,
    raw: dict[str, Any],
    writes: dict[str, MailboxState] | dict[str, FindingState],
    run_id: str,
    rkey: str,
) -> None:
    out.operations.append(packed_operation(kind, bucket, raw, writes, run_id=run_id, rkey=rkey))
    row = version_row(bucket, rkey)
    out.written[bucket] = row
    old = out.loaded.rows.get(bucket)
    if old is not None and old != row:
        out.superseded.append(old)


def org_change(commit: Commit, run_id: str, value: bool | None) -> OrgChange | None:
    if value is None:
        return None  # not collected: the history keeps the last value read
    if not commit.org_known:
        return OrgChange(run_id, None, value, first=True)
    if commit.org == value:
        return None
    return OrgChange(run_id, commit.org, value, first=False)


def history_operations(
    rkey: str,
    changes: Iterable[MailboxChange],
    events: Iterable[FindingEvent],
    org: OrgChange | None,
) -> list[Operation]:
    """One row per change, keyed by the run: writing them again writes the same rows."""
    operations: list[Operation] = []
    for change in changes:
        digest = key_hash(change.key)
        entity: dict[str, Any] = {
            "PartitionKey": f"mbx.{digest[:2]}",
            "RowKey": f"{digest}.{rkey}",
            "mailbox": change.key,
            "run_id": change.run_id,
            "kind": change.kind,
            "fields": list(change.fields),
            "before": change.before,
            "after": change.after,
        }
        operations.append(("upsert", entity, {}))
    for event in events:
        digest = key_hash(event.id)
        entity = {
            "PartitionKey": f"fnd.{digest[:2]}",
            "RowKey": f"{digest}.{rkey}",
            "finding_id": event.id,
            "run_id": event.run_id,
            "kind": event.kind,
            "before": event.before,
            "after": event.after,
            "subject": event.subject[:1000],
            "control": event.control,
        }
        operations.append(("upsert", entity, {}))
    if org is not None:
        entity = {
            "PartitionKey": "org",
            "RowKey": rkey,
            "run_id": org.run_id,
            "before": Setting.text(org.before),
            "after": Setting.text(org.after),
            "first": org.first,
        }
        operations.append(("upsert", entity, {}))
    return operations


def manifest(operations: Iterable[Operation]) -> bytes:
    """The keys of a run's history rows: what to delete if the run never commits."""
    keys = [[op[1]["PartitionKey"], op[1]["RowKey"]] for op in operations]
    return json.dumps(keys, separators=(",", ":")).encode("utf-8")


def remove_history(history: Table, blobs: Blobs, rkey: str, run_id: str) -> int:
    """Delete the history rows a dead run wrote (listed in its manifest); rows already gone
    are fine. The number of rows the manifest listed."""
    try:
        data = blobs.read(rkey, "manifest", run_id)
    except IncompleteBlob:
        return 0  # cut short while written: the history rows come after it, none was written
    if not data:
        return 0
    keys = json.loads(data)
    groups: dict[str, list[Operation]] = {}
    for pk, rk in keys:
        groups.setdefault(pk, []).append(("delete", {"PartitionKey": pk, "RowKey": rk}, {}))
    for pk, operations in groups.items():
        try:
            history.submit(operations)
        except NotFound:
            for _, entity, _ in operations:  # some were never written: one at a time
                try:
                    history.delete(pk, entity["RowKey"])
                except NotFound:
                    continue
    return len(keys)
