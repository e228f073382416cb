"""Recording one run: diff against the committed state, write idempotently, commit last.

Order (docs/architecture.md, "Crash safety and recording"):
1. evidence blobs, and the manifest of the history rows the run will write;
2. history rows (`<hash>.<run key>`: keyed by the run, a replay writes the same rows);
3. new bucket versions (`<bucket>.<run key>`: invisible until committed, so sent while the
   diff goes on, before 1 and 2 have ended, by `versions.VersionWriter`; all landed before 4);
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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

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
from auditor.storage.packing import (
    MIN_WIDTH,
    bucket_width,
    merged_json,
    read_packed,
    version_operation,
    version_row,
)
from auditor.storage.tables import NotFound, Operation, Table
from auditor.storage.versions import Commit, Loaded, Versions, VersionWriter

__all__ = [
    "Diff",
    "diff_mailboxes",
    "diff_findings",
    "history_operations",
    "history_partitions",
    "org_change",
]

log = logging.getLogger("auditor.storage")


@dataclass(slots=True)
class Diff:
    """What a run writes for one kind of state, and what it found."""

    written: dict[str, str] = field(default_factory=dict)  # bucket -> new version row
    superseded: list[str] = field(default_factory=list)  # rows the new versions replace
    loaded: Loaded = field(default_factory=Loaded)
    mailbox_changes: list[MailboxChange] = field(default_factory=list)
    finding_events: list[FindingEvent] = field(default_factory=list)
    new_findings: tuple[str, ...] = ()
    baseline: bool = False
    known: int = 0  # records not marked removed before this run
    removed: int = 0
    width: int = MIN_WIDTH  # the bucket width of the versions `versions()` names
    migrated: bool = False  # every record rewritten at a wider width (a grown tenant)

    def versions(self) -> dict[str, str]:
        if self.migrated:
            return dict(self.written)  # the committed rows were all of the narrower width
        return {**self.loaded.rows, **self.written}


def _widths(commit: Commit, kind: str, loaded: Loaded, count: int, per_bucket: int) -> Diff:
    """A Diff whose `width` is what this run writes at: the committed width, or wider when the
    kind has outgrown it (then `migrated`: every record is rewritten, storage/packing.py)."""
    out = Diff(loaded=loaded)
    stored = commit.width(kind)
    if not loaded.rows:  # nothing committed: no layout to keep
        stored = MIN_WIDTH
    out.width = bucket_width(max(count, loaded.records), at_least=stored, per_bucket=per_bucket)
    out.migrated = bool(loaded.rows) and out.width != stored
    if out.migrated:  # every committed version is replaced by the wider ones
        out.superseded = list(loaded.rows.values())
    return out


_T = TypeVar("_T")


def _walk(
    contents: dict[str, bytes], stored: int, width: int, grouped: dict[str, list[_T]]
) -> Iterator[tuple[str, dict[str, Any], list[_T], dict[str, int]]]:
    """(bucket at `width`, its committed records, this run's members of it, the position of
    every committed record in state order), bucket after bucket in key order. The committed
    buckets (`stored` wide, `contents` emptied as it goes) are unpacked one at a time; when
    `width` is wider each is split into the buckets it becomes."""
    coarse: dict[str, list[str]] = {}
    for bucket in grouped:
        coarse.setdefault(bucket[:stored], []).append(bucket)
    seen = 0
    for outer in sorted(coarse.keys() | contents.keys()):
        content = contents.pop(outer, b"")
        raw: dict[str, Any] = read_packed(content) if content else {}
        order = {key: seen + index for index, key in enumerate(raw)}
        seen += len(raw)
        parts: dict[str, dict[str, Any]] = {}
        if width == stored:
            if raw:
                parts[outer] = raw
        else:
            for key, data in raw.items():
                parts.setdefault(key_hash(key)[:width], {})[key] = data
        for bucket in sorted(parts.keys() | set(coarse.get(outer, ()))):
            yield bucket, parts.get(bucket, {}), grouped.pop(bucket, []), order


def diff_mailboxes(
    versions: Versions,
    commit: Commit,
    snapshot: Snapshot,
    *,
    run_id: str,
    rkey: str,
    complete: bool,
    loaded: Loaded | None = None,
    per_bucket: int = 0,
    writer: VersionWriter,
) -> Diff:
    """Changes in the order `history.mailbox_changes` gives them for the whole snapshot. One
    bucket at a time: its records are unpacked, diffed and dropped, never all at once. The new
    versions go to `writer` as they are made: compressed and sent while the diff goes on."""
    loaded = loaded or versions.buckets("mailbox", commit)
    count = len(snapshot.mailboxes or ())
    out = _widths(commit, "mailbox", loaded, count, per_bucket)
    out.baseline = not out.loaded.records
    if snapshot.mailboxes is None:
        out.width, out.migrated = commit.width("mailbox"), False  # nothing read, nothing moved
        out.superseded = []
        return out
    stored = commit.width("mailbox") if loaded.rows else out.width
    width = out.width
    grouped: dict[str, list[tuple[int, Mailbox]]] = {}
    for index, mailbox in enumerate(snapshot.mailboxes):
        grouped.setdefault(bucket_of(mailbox.key, width), []).append((index, mailbox))
    ordered: list[tuple[tuple[int, int], MailboxChange]] = []
    for bucket, raw, members, order in _walk(dict(loaded.contents), stored, width, grouped):
        out.known += MailboxState.count_present(raw.values())
        part = replace(snapshot, mailboxes=tuple(mailbox for _, mailbox in members))
        # The committed records stay packed: only those of changed mailboxes are unpacked.
        writes, changes = mailbox_changes(
            raw, part, run_id, complete=complete, baseline=out.baseline
        )
        # Positions only for a bucket with changes (an unchanged night has next to none).
        position = {mailbox.key: index for index, mailbox in members} if changes else {}
        for change in changes:  # removals come after the snapshot's own, in state order
            removal = change.kind == "removed"
            rank = (1, order[change.key]) if removal else (0, position[change.key])
            ordered.append((rank, change))
            out.removed += removal
        if writes or (out.migrated and raw):
            _version(out, "mailbox", bucket, raw, writes, run_id, rkey, writer)
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
    loaded: Loaded | None = None,
    per_bucket: int = 0,
    writer: VersionWriter,
) -> Diff:
    """Events and new finding ids in the order `history.finding_changes` gives them; `writer`
    as for `diff_mailboxes`."""
    loaded = loaded or versions.buckets("finding", commit)
    out = _widths(commit, "finding", loaded, len(evaluation.findings), per_bucket)
    stored = commit.width("finding") if loaded.rows else out.width
    width = out.width
    grouped: dict[str, list[tuple[int, Finding]]] = {}
    for index, finding in enumerate(evaluation.findings):
        grouped.setdefault(bucket_of(finding.id, width), []).append((index, finding))
    ordered: list[tuple[tuple[int, int], FindingEvent]] = []
    new: list[tuple[int, str]] = []
    for bucket, raw, members, order in _walk(dict(loaded.contents), stored, width, grouped):
        writes, events = finding_changes(
            raw,
            (finding for _, finding in members),
            run_id,
            complete=complete,
            last_complete_run=last_complete,
        )
        position = {finding.id: index for index, finding in members} if events or writes else {}
        for event in events:  # resolutions come after the others, in state order
            resolved = event.kind == "resolved"
            ordered.append(((1, order[event.id]) if resolved else (0, position[event.id]), event))
        new.extend((position[fid], fid) for fid in writes if fid not in raw)
        if writes or (out.migrated and raw):
            _version(out, "finding", bucket, raw, writes, run_id, rkey, writer)
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
    writer: VersionWriter,
) -> None:
    document = merged_json(raw, writes)  # compressed and sent by `writer`, beside the diff
    writer.add(
        partial(version_operation, kind, bucket, len(raw), document, run_id=run_id, rkey=rkey)
    )
    row = version_row(bucket, rkey)
    out.written[bucket] = row
    if out.migrated:
        return  # all committed versions are superseded already (`_widths`)
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


def history_partitions(kind: str, digest: str, commit: Commit) -> list[str]:
    """The history partitions that may hold the rows of one mailbox (`mbx`) or finding
    (`fnd`) with key hash `digest`: `<kind>.<1 hex>` (16 partitions, issue 17), and in a store
    first written by an older version also `<kind>.<2 hex>` (256), where its older rows stay."""
    partitions = [f"{kind}.{digest[:1]}"]
    if commit.history_legacy:
        partitions.append(f"{kind}.{digest[:2]}")
    return partitions


def history_operations(
    rkey: str,
    changes: Iterable[MailboxChange],
    events: Iterable[FindingEvent],
    org: OrgChange | None,
) -> list[Operation]:
    """One row per change, keyed by the run: writing them again writes the same rows.

    Rows go to 16 partitions per kind (`mbx.<first hex digit of the key hash>`), so the rows
    of a run are written as batch transactions of up to 100 (about changes / 100 + 16
    requests, docs/architecture.md, "Bucket width"), and one mailbox's rows are still one
    RowKey range of one partition."""
    operations: list[Operation] = []
    for change in changes:
        digest = key_hash(change.key)
        entity: dict[str, Any] = {
            "PartitionKey": f"mbx.{digest[:1]}",
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
            "PartitionKey": f"fnd.{digest[:1]}",
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
