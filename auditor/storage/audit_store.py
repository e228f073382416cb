"""History of audits in Azure Table Storage (azure-data-tables, sync clients): the facade.

Modules: `runs` (runs table, run lock), `packing` (packed state buckets), `blobs` (evidence),
`ledger` (alert ledger); this one records a run and answers questions about the history.

Tables (prefix `smtpauth` by default) and what makes each question cheap:

- `runs`: PartitionKey `run`, RowKey inverted time + suffix: one entity per run, newest
  first (status, counts, changes, errors, durations).
- `state`: PartitionKey `mailbox` / `finding`, RowKey bucket `00`..`ff`: the current state of
  every mailbox / finding, packed (compressed JSON in binary properties); `org`/`current` the
  organisation's current value; `lock`/`audit` the run lock (ETag + expiry).
- `history`: `mbx.<bucket>` / `<sha256(mailbox)>.<run key>`: one row per change of one
  mailbox (before/after); `fnd.<bucket>` / `<sha256(finding id)>.<run key>`: one row per
  transition of one finding; `org` / run key: the organisation setting when first read and at
  every change.
- `evidence`: PartitionKey run key, RowKey `snapshot.NNNN` / `allowlist.NNNN`: the raw snapshot
  document and the allowlist of the run, zlib, split in 64 KiB binary properties.
- `alerts`: PartitionKey run key, RowKey channel: the alert delivery ledger.

- Runs newest first: one partition query, no sort.
- One mailbox's history: one range query (`RowKey` prefix = its hash); its state as of a run:
  that history plus the org history (effective state = setting + organisation value).
- A steady-state run writes O(changes): the packed state buckets it touches, one history row
  per change, a few evidence entities, the run entity. The first run writes the baseline in
  256 + 256 packed entities and no history rows.
- No value read from Exchange is ever a key: mailboxes and findings are addressed by hashes.
- A run lock (an entity with an owner and an expiry, taken and released with ETags) keeps two
  runs from interleaving; a lock left by a crashed run expires after `lock_ttl`.
- An incomplete collection is recorded as such, with its errors; it never resolves findings
  and never marks mailboxes removed (see `history.py`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from azure.data.tables import TableServiceClient

from auditor.core.errors import StoreError
from auditor.core.history import (
    BUCKETS,
    FindingEvent,
    FindingState,
    MailboxChange,
    MailboxState,
    bucket_of,
    finding_changes,
    key_hash,
    mailbox_changes,
    run_key,
)
from auditor.core.model import (
    CollectionError,
    Evaluation,
    Finding,
    Mailbox,
    PreviousRun,
    PriorFinding,
    Setting,
    Snapshot,
    Status,
)
from auditor.core.records import OrgChange, RecordResult, RunRecord
from auditor.storage.blobs import Blobs
from auditor.storage.ledger import AlertLedgerTable
from auditor.storage.packing import packed_operation, record_count, unpack
from auditor.storage.runs import RunHandle, RunInProgress, Runs, as_json, run_record
from auditor.storage.tables import OpCounter, Operation, Table

__all__ = [
    "AuditStore",
    "RunInProgress",
    "RunHandle",
    "BUCKETS",
]


class AuditStore:
    """The history store. Give it a `TableServiceClient`; it creates nothing at import time."""

    def __init__(
        self,
        service: TableServiceClient,
        *,
        prefix: str = "smtpauth",
        lock_ttl: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] | None = None,
        workers: int = 8,
    ) -> None:
        if not prefix.isalnum() or not prefix[:1].isalpha() or len(prefix) > 50:
            raise StoreError(f"table prefix must be letters and digits, got {prefix!r}")
        self.counter = OpCounter()
        self.lock_ttl = lock_ttl
        self.workers = workers
        self._clock = clock or (lambda: datetime.now(UTC))
        self.runs_table = Table(service, f"{prefix}runs", self.counter)
        self.state = Table(service, f"{prefix}state", self.counter)
        self.history = Table(service, f"{prefix}history", self.counter)
        self.evidence = Table(service, f"{prefix}evidence", self.counter)
        self.alerts = Table(service, f"{prefix}alerts", self.counter)
        self._ready = False
        self._runs = Runs(self.runs_table, self.state, lock_ttl=lock_ttl, clock=self._clock)
        self._blobs = Blobs(self.evidence, workers=workers)
        self._ledger = AlertLedgerTable(self.alerts, self._clock)

    def ensure_tables(self) -> None:
        if self._ready:
            return
        for table in (self.runs_table, self.state, self.history, self.evidence, self.alerts):
            table.create()
        self._ready = True

    # -- the run lock (runs.py) -----------------------------------------------------------------

    def begin_run(self, *, tenant: str, now: datetime | None = None) -> RunHandle:
        """Take the run lock and record a `running` run. RunInProgress if another run holds it."""
        self.ensure_tables()
        return self._runs.begin(tenant=tenant, now=now)

    def _check_lock(self, handle: RunHandle) -> None:
        self._runs.check_lock(handle)

    def release(self, handle: RunHandle) -> None:
        """Drop the lock if this run still holds it (a taken-over lock is left alone)."""
        self._runs.release(handle)

    # -- recording ----------------------------------------------------------------------------

    def record_run(
        self,
        handle: RunHandle,
        *,
        snapshot: Snapshot,
        evaluation: Evaluation,
        evidence: bytes,
        allowlist: bytes,
        allowlist_source: str,
        today: date,
        expiring_days: int,
        durations: Mapping[str, float],
        finished_at: datetime | None = None,
    ) -> RecordResult:
        """Store evidence, changes and the run summary. Order: evidence, history rows, state,
        run entity — a run cut short leaves duplicates at worst, never a lost change."""
        self._check_lock(handle)
        complete = (
            not snapshot.errors
            and snapshot.org_disabled is not None
            and snapshot.mailboxes is not None
        )
        rkey = run_key(handle.run_id)
        # Compressing and uploading the evidence (zlib releases the GIL) overlaps the diff.
        uploader = ThreadPoolExecutor(max_workers=1)
        upload = uploader.submit(
            self._write_blobs, rkey, {"snapshot": evidence, "allowlist": allowlist}
        )
        uploader.shutdown(wait=False)

        last_complete = self._last_complete_run()
        org_change = self._org_change(handle.run_id, snapshot.org_disabled)
        mailbox_ops, changes, baseline = self._diff_mailboxes(handle.run_id, snapshot, complete)
        finding_ops, events, new_findings = self._diff_findings(
            handle.run_id, evaluation, complete, last_complete
        )

        evidence_bytes = upload.result()  # evidence first: it must exist before the changes
        self._check_lock(handle)
        self._write_history(rkey, changes, events, org_change)
        self.state.submit(mailbox_ops)
        self.state.submit(finding_ops)
        if org_change is not None:
            self.state.replace(
                {
                    "PartitionKey": "org",
                    "RowKey": "current",
                    "setting": Setting.text(org_change.after),
                    "since": handle.run_id,
                }
            )
        kinds = {"added": 0, "changed": 0, "removed": 0, "returned": 0}
        for change in changes:
            kinds[change.kind] += 1
        change_counts = {
            **{f"mailboxes_{k}": v for k, v in kinds.items()},
            "findings_new": len(new_findings),
            "findings_changed": sum(1 for e in events if e.kind in ("status", "reopened")),
            "findings_resolved": sum(1 for e in events if e.kind == "resolved"),
            "org_changed": int(org_change is not None and not org_change.first),
        }
        run = RunRecord(
            run_id=handle.run_id,
            tenant=snapshot.tenant,
            status="complete" if complete else "incomplete",
            started_at=handle.started_at,
            finished_at=finished_at or self._clock(),
            complete=complete,
            org_disabled=snapshot.org_disabled,
            counts=dict(evaluation.counts),
            changes=change_counts,
            durations=dict(durations),
            errors=snapshot.errors,
            allowlist_source=allowlist_source,
            today=today,
            expiring_days=expiring_days,
            exit_code=evaluation.exit_code(),
            evidence_bytes=evidence_bytes,
        )
        self._write_run(run)
        return RecordResult(
            run=run,
            mailbox_changes=tuple(changes),
            finding_events=tuple(events),
            new_findings=new_findings,
            org_change=org_change,
            baseline=baseline,
        )

    def fail_run(
        self,
        handle: RunHandle,
        *,
        errors: Iterable[CollectionError],
        durations: Mapping[str, float],
        evidence: bytes | None = None,
    ) -> RunRecord:
        """Record a run whose collection failed outright: its errors, nothing else changes."""
        evidence_bytes = 0
        if evidence is not None:
            evidence_bytes = self._write_blobs(run_key(handle.run_id), {"snapshot": evidence})
        run = RunRecord(
            run_id=handle.run_id,
            tenant=handle.tenant,
            status="failed",
            started_at=handle.started_at,
            finished_at=self._clock(),
            complete=False,
            errors=tuple(errors),
            durations=dict(durations),
            exit_code=3,
            evidence_bytes=evidence_bytes,
        )
        self._write_run(run)
        return run

    def _write_run(self, run: RunRecord) -> None:
        self._runs.write(run)

    def _write_blobs(self, rkey: str, blobs: Mapping[str, bytes]) -> int:
        return self._blobs.write(rkey, blobs)

    def read_blob(self, run_id: str, name: str) -> bytes | None:
        """A blob stored with a run (`snapshot`, `allowlist`), or None if it has none."""
        return self._blobs.read(run_key(run_id), name, run_id)

    # -- packed state -------------------------------------------------------------------------

    def _load_packed(
        self, kind: str, decode: Callable[[str, list[Any]], Any]
    ) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        """(records, bucket -> (ETag, compressed content)) of one kind of packed state."""
        records: dict[str, Any] = {}
        buckets: dict[str, tuple[str, bytes]] = {}
        for entity in self.state.partition(kind):
            packed = unpack(entity)
            buckets[entity["RowKey"]] = (entity["_etag"], packed)
            for key, data in json.loads(zlib.decompress(packed)).items():
                records[key] = decode(key, data)
        return records, buckets

    # The previous state is compared one bucket at a time: a bucket's records are unpacked,
    # diffed against the mailboxes (findings) that hash to it, and dropped; what is kept is the
    # changes and the rewritten buckets, compressed. Never the whole previous state at once.

    def _stored_buckets(self, kind: str) -> tuple[dict[str, tuple[str, bytes]], int]:
        """(bucket -> (ETag, compressed content), records) of one kind of packed state."""
        buckets: dict[str, tuple[str, bytes]] = {}
        records = 0
        for entity in self.state.partition(kind):
            content = unpack(entity)
            buckets[str(entity["RowKey"])] = (str(entity["_etag"]), content)
            records += record_count(entity, content)
        return buckets, records

    def _diff_mailboxes(
        self, run_id: str, snapshot: Snapshot, complete: bool
    ) -> tuple[list[Operation], list[MailboxChange], bool]:
        """(state writes, changes in the order `history.mailbox_changes` gives them for the
        whole snapshot, baseline)."""
        stored, records = self._stored_buckets("mailbox")
        baseline = not records
        if snapshot.mailboxes is None:
            return [], [], baseline
        grouped: dict[str, list[tuple[int, Mailbox]]] = {}
        for index, mailbox in enumerate(snapshot.mailboxes):
            grouped.setdefault(bucket_of(mailbox.key), []).append((index, mailbox))
        operations: list[Operation] = []
        ordered: list[tuple[tuple[int, int], MailboxChange]] = []
        for bucket in sorted(grouped.keys() | stored.keys()):
            etag, content = stored.pop(bucket, (None, b""))
            raw: dict[str, Any] = json.loads(zlib.decompress(content)) if content else {}
            previous = {key: MailboxState.unpack(key, data) for key, data in raw.items()}
            members = grouped.pop(bucket, [])
            part = replace(snapshot, mailboxes=tuple(mailbox for _, mailbox in members))
            writes, changes = mailbox_changes(
                previous, part, run_id, complete=complete, baseline=baseline
            )
            position = {mailbox.key: index for index, mailbox in members}
            for change in changes:  # removals come after the snapshot's own, in state order
                order = (1, len(ordered)) if change.kind == "removed" else (0, position[change.key])
                ordered.append((order, change))
            if writes:
                operations.append(packed_operation("mailbox", bucket, raw, writes, etag))
        ordered.sort(key=lambda item: item[0])
        return operations, [change for _, change in ordered], baseline

    def _diff_findings(
        self,
        run_id: str,
        evaluation: Evaluation,
        complete: bool,
        last_complete: str | None,
    ) -> tuple[list[Operation], list[FindingEvent], tuple[str, ...]]:
        """(state writes, events and new finding ids in the order `history.finding_changes`
        gives them for all findings at once)."""
        stored, _ = self._stored_buckets("finding")
        grouped: dict[str, list[tuple[int, Finding]]] = {}
        for index, finding in enumerate(evaluation.findings):
            grouped.setdefault(bucket_of(finding.id), []).append((index, finding))
        operations: list[Operation] = []
        ordered: list[tuple[tuple[int, int], FindingEvent]] = []
        new: list[tuple[int, str]] = []
        for bucket in sorted(grouped.keys() | stored.keys()):
            etag, content = stored.pop(bucket, (None, b""))
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
                operations.append(packed_operation("finding", bucket, raw, writes, etag))
        ordered.sort(key=lambda item: item[0])
        new.sort()
        return operations, [event for _, event in ordered], tuple(fid for _, fid in new)

    def _write_history(
        self,
        rkey: str,
        changes: list[MailboxChange],
        events: list[FindingEvent],
        org: OrgChange | None,
    ) -> None:
        operations: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        for change in changes:
            digest = key_hash(change.key)
            operations.append(
                (
                    "upsert",
                    {
                        "PartitionKey": f"mbx.{digest[:2]}",
                        "RowKey": f"{digest}.{rkey}",
                        "mailbox": change.key,
                        "run_id": change.run_id,
                        "kind": change.kind,
                        "fields": list(change.fields),
                        "before": change.before,
                        "after": change.after,
                    },
                    {},
                )
            )
        for event in events:
            digest = key_hash(event.id)
            operations.append(
                (
                    "upsert",
                    {
                        "PartitionKey": f"fnd.{digest[:2]}",
                        "RowKey": f"{digest}.{rkey}",
                        "finding_id": event.id,
                        "run_id": event.run_id,
                        "kind": event.kind,
                        "before": event.before,
                        "after": event.after,
                        "subject": event.subject[:1000],
                        "control": event.control,
                    },
                    {},
                )
            )
        if org is not None:
            operations.append(
                (
                    "upsert",
                    {
                        "PartitionKey": "org",
                        "RowKey": rkey,
                        "run_id": org.run_id,
                        "before": Setting.text(org.before),
                        "after": Setting.text(org.after),
                        "first": org.first,
                    },
                    {},
                )
            )
        self.history.submit_partitions(operations, workers=self.workers)

    def _org_change(self, run_id: str, value: bool | None) -> OrgChange | None:
        if value is None:
            return None  # not collected: the history keeps the last value read
        current = self.state.get("org", "current")
        if current is None:
            return OrgChange(run_id, None, value, first=True)
        before = Setting.parse(current.get("setting"))
        if before == value:
            return None
        return OrgChange(run_id, before, value, first=False)

    # -- questions ----------------------------------------------------------------------------

    def runs(self, *, limit: int = 50) -> list[RunRecord]:
        """Recorded runs, newest first."""
        self.ensure_tables()
        return self._runs.list(limit=limit)

    def run(self, run_id: str) -> RunRecord:
        """One run by id, or `latest`. InputError if there is no such run."""
        self.ensure_tables()
        return self._runs.get(run_id)

    def _last_complete_run(self) -> str | None:
        return self._runs.last_complete()

    def mailbox_states(self) -> dict[str, MailboxState]:
        self.ensure_tables()
        return self._load_packed("mailbox", MailboxState.unpack)[0]

    def mailbox_state(self, key: str) -> MailboxState | None:
        self.ensure_tables()
        entity = self.state.get("mailbox", bucket_of(key))
        if entity is None:
            return None
        data = json.loads(zlib.decompress(unpack(entity))).get(key)
        return None if data is None else MailboxState.unpack(key, data)

    def mailbox_changes(self, key: str) -> list[MailboxChange]:
        """Every recorded change of one mailbox, newest first."""
        self.ensure_tables()
        digest = key_hash(key)
        rows = self.history.rows_between(f"mbx.{digest[:2]}", f"{digest}.", f"{digest}.~")
        out = [
            MailboxChange(
                key=str(row["mailbox"]),
                kind=str(row["kind"]),
                run_id=str(row["run_id"]),
                before=as_json(row.get("before")),
                after=as_json(row.get("after")),
                fields=tuple(as_json(row.get("fields")) or ()),
            )
            for row in rows
        ]
        return sorted(out, key=lambda c: c.run_id, reverse=True)

    def org_history(self) -> list[OrgChange]:
        """The organisation setting when first read and at every change, newest first."""
        self.ensure_tables()
        rows = self.history.partition("org")
        out = [
            OrgChange(
                run_id=str(row["run_id"]),
                before=Setting.parse(row.get("before")),
                after=Setting.parse(row.get("after")),
                first=bool(row.get("first")),
            )
            for row in rows
        ]
        return sorted(out, key=lambda c: c.run_id, reverse=True)

    def finding_states(self) -> dict[str, FindingState]:
        self.ensure_tables()
        return self._load_packed("finding", FindingState.unpack)[0]

    def finding_state(self, finding_id: str) -> FindingState | None:
        self.ensure_tables()
        entity = self.state.get("finding", bucket_of(finding_id))
        if entity is None:
            return None
        data = json.loads(zlib.decompress(unpack(entity))).get(finding_id)
        return None if data is None else FindingState.unpack(finding_id, data)

    def finding_events(self, finding_id: str) -> list[FindingEvent]:
        """Transitions of one finding (status changes, resolved, reopened), newest first."""
        self.ensure_tables()
        digest = key_hash(finding_id)
        rows = self.history.rows_between(f"fnd.{digest[:2]}", f"{digest}.", f"{digest}.~")
        out = [
            FindingEvent(
                id=str(row["finding_id"]),
                kind=str(row["kind"]),
                run_id=str(row["run_id"]),
                before=row.get("before"),
                after=row.get("after"),
                subject=str(row.get("subject", "")),
                control=str(row.get("control", "")),
            )
            for row in rows
        ]
        return sorted(out, key=lambda e: e.run_id, reverse=True)

    def previous_run(self) -> PreviousRun | None:
        """The last recorded (finished) run and the findings it left open.

        For a complete run these are exactly its findings. After an incomplete run they are
        the last known findings (it resolved nothing), and `complete` is False.
        """
        self.ensure_tables()
        for entity in self.runs_table.partition("run", limit=20):
            record = run_record(entity)
            if record.status in ("complete", "incomplete"):
                break
        else:
            return None
        findings = {
            fid: PriorFinding(id=fid, control=s.control, status=Status(s.status), subject=s.subject)
            for fid, s in self.finding_states().items()
            if s.open
        }
        return PreviousRun(
            run_id=record.run_id,
            evaluated_at=record.finished_at or record.started_at,
            org_disabled=record.org_disabled,
            complete=record.complete,
            findings=findings,
        )

    # -- alert delivery ledger (ledger.py) --------------------------------------------------------

    def alert_deliveries(self, run_id: str) -> dict[str, str]:
        """channel -> status of the alerts already sent for a run."""
        self.ensure_tables()
        return self._ledger.deliveries(run_id)

    def record_alert_delivery(self, run_id: str, channel: str, status: str, detail: str) -> None:
        self.ensure_tables()
        self._ledger.record(run_id, channel, status, detail)
