"""History of audits in Azure Table Storage (azure-data-tables, sync clients): the facade.

Modules: `runs` (runs table, the run lease), `packing` (packed state buckets), `versions` (the
commit record naming the current bucket versions), `recording` (diffs, history rows, the write
order), `blobs` (evidence), `ledger` (alert ledger); this one runs a recording and answers
questions about the history. Design: docs/architecture.md, "Crash safety and recording".

Tables (prefix `smtpauth` by default) and what makes each question cheap:

- `runs`: PartitionKey `run`, RowKey inverted time + suffix: one entity per run, newest
  first (status, counts, changes, errors, durations).
- `state`: PartitionKey `mailbox` / `finding`, RowKey `<bucket>.<run key>`: versions of the
  packed state of every mailbox / finding (compressed JSON in binary properties; buckets of
  2-4 hex digits, as many as the kind's size needs, packing.py); `commit` / `state` names the
  current version of each bucket (a compressed bucket map), the organisation value and the
  run that committed them; `lock`/`audit` the run lease (owner, write token, expiry; ETags).
- `history`: `mbx.<h>` / `<sha256(mailbox)>.<run key>`: one row per change of one mailbox
  (before/after); `fnd.<h>` / `<sha256(finding id)>.<run key>`: one row per transition of one
  finding (`<h>`: the hash's first hex digit; stores from before issue 17 also have rows in
  `mbx.<2 hex>` / `fnd.<2 hex>`); `org` / run key: the organisation setting when first read
  and at every change.
- `evidence`: PartitionKey run key, RowKey `snapshot.NNNN` / `allowlist.NNNN` /
  `manifest.NNNN` / `alerted.NNNN`: the raw snapshot document, the allowlist, the keys of the
  run's history rows and the findings its alert was decided on; zlib, 64 KiB binary pieces.
- `alerts`: PartitionKey run key, RowKey channel: the alert delivery ledger; `delivered` /
  `last`: the last run whose alert was delivered (what the next alert is decided against).

- A steady-state run writes O(changes) requests: the bucket versions it touches (sent as
  the diff makes them) and the history rows, both in batches of up to 100 sent in parallel,
  the evidence, the commit and the run entity (docs/architecture.md, "Bucket width"). The
  first run writes the baseline in one packed entity per bucket (256 per kind up to 131,072
  records) and no history rows.
- No value read from Exchange is ever a key: mailboxes and findings are addressed by hashes.
- An incomplete collection is recorded as such, with its errors; it never resolves findings
  and never marks mailboxes removed (see `history.py`); nor does a `suspect` one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from azure.data.tables import TableServiceClient

from auditor.core.errors import StoreError
from auditor.core.evidence import Compressed
from auditor.core.history import (
    BUCKETS,
    run_key,
)
from auditor.core.model import (
    CollectionError,
    Evaluation,
    Setting,
    Snapshot,
)
from auditor.core.records import RecordResult, RunRecord
from auditor.core.screen import read_whole
from auditor.core.spread import name_spread
from auditor.storage.blobs import Blobs
from auditor.storage.ledger import AlertLedgerTable
from auditor.storage.questions import HistoryQuestions
from auditor.storage.recording import (
    Diff,
    diff_findings,
    diff_mailboxes,
    history_operations,
    manifest,
    org_change,
    remove_history,
)
from auditor.storage.runs import (
    RunHandle,
    RunInProgress,
    Runs,
    as_time,
    run_entity,
)
from auditor.storage.tables import OpCounter, Table
from auditor.storage.versions import Commit, Loaded, Versions, VersionWriter

__all__ = [
    "AuditStore",
    "Committed",
    "RunInProgress",
    "RunHandle",
    "BUCKETS",
]

log = logging.getLogger("auditor.storage")


@dataclass(frozen=True, slots=True)
class Committed:
    """What `AuditStore.committed` read: the state one run's recording diffs against."""

    commit: Commit
    last_complete: str | None
    mailboxes: Loaded
    findings: Loaded


# The plausibility guard ignores fewer vanished mailboxes than this: in a tiny tenant one
# deleted mailbox is a large percentage and entirely plausible.
_GUARD_MIN_REMOVED = 10


class AuditStore(HistoryQuestions):
    """The history store. Give it a `TableServiceClient`; it creates nothing at import time.

    `lock_ttl`: how long the run lease lasts unrenewed (`AUDIT_LEASE_SECONDS`);
    `max_removed_percent`: the plausibility guard (`AUDIT_MAX_REMOVED_PERCENT`);
    `bucket_records`: records per state bucket before the buckets widen (default
    `packing.RECORDS_PER_BUCKET`; tests make it small to see a tenant outgrow its layout)."""

    def __init__(
        self,
        service: TableServiceClient,
        *,
        prefix: str = "smtpauth",
        lock_ttl: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] | None = None,
        workers: int = 8,
        max_removed_percent: int = 20,
        bucket_records: int = 0,
    ) -> None:
        if not prefix.isalnum() or not prefix[:1].isalpha() or len(prefix) > 50:
            raise StoreError(f"table prefix must be letters and digits, got {prefix!r}")
        self.counter = OpCounter()
        self.lock_ttl = lock_ttl
        self.workers = workers
        self.max_removed_percent = max_removed_percent
        self.bucket_records = bucket_records
        self._clock = clock or (lambda: datetime.now(UTC))
        self.runs_table = Table(service, f"{prefix}runs", self.counter)
        self.state = Table(service, f"{prefix}state", self.counter)
        self.history = Table(service, f"{prefix}history", self.counter)
        self.evidence = Table(service, f"{prefix}evidence", self.counter)
        self.alerts = Table(service, f"{prefix}alerts", self.counter)
        self._ready = False
        self._runs = Runs(self.runs_table, self.state, lock_ttl=lock_ttl, clock=self._clock)
        self._blobs = Blobs(self.evidence, workers=workers)
        self._versions = Versions(self.state)
        self._ledger = AlertLedgerTable(self.alerts, self._clock)

    def ensure_tables(self) -> None:
        if self._ready:
            return
        for table in (self.runs_table, self.state, self.history, self.evidence, self.alerts):
            table.create()
        self._ready = True

    # -- the run lease (runs.py) ----------------------------------------------------------------

    def begin_run(self, *, tenant: str, now: datetime | None = None) -> RunHandle:
        """Take the lease, record a `running` run and repair what dead runs left. RunInProgress
        if another run holds a lease that is not stale."""
        self.ensure_tables()
        handle = self._runs.begin(tenant=tenant, now=now)
        try:
            self._repair(handle)
        except BaseException:
            self._runs.release(handle)
            raise
        return handle

    def keep_alive(self, handle: RunHandle) -> None:
        """Renew the run's lease in the background until `release` (for the long collection)."""
        handle.lease.keep_alive()

    def _check_lock(self, handle: RunHandle) -> None:
        self._runs.check_lock(handle)

    def release(self, handle: RunHandle) -> None:
        """Drop the lease if this run still holds it; never raises (see `Runs.release`)."""
        self._runs.release(handle)

    def committed(self) -> Committed:
        """The committed state a run diffs against, read whole: the commit record, the last
        complete run and every current bucket version. A run may read it while it pages
        (it holds the lease, so no other run commits meanwhile; if one did, the commit's
        ETag would refuse this run's commit)."""
        commit = self._versions.current()
        return Committed(
            commit=commit,
            last_complete=self._runs.last_complete(),
            mailboxes=self._versions.buckets("mailbox", commit),
            findings=self._versions.buckets("finding", commit),
        )

    def last_name_spread(self) -> dict[str, int]:
        """The last complete run's names per first character (core.spread), {} before any:
        what balances a sharded read. A storage error reads as {} (the typical spread): the
        spread only balances the shards, and the run's own reads and writes will say what is
        wrong with the store."""
        try:
            return dict(self._versions.current().names)
        except StoreError as exc:
            log.warning("state: name spread unreadable, shards use the typical one: %s", exc)
            return {}

    def _repair(self, handle: RunHandle) -> None:
        """Runs left `running` by a run that died: finish a committed one from the commit
        record's copy; otherwise delete its history rows and mark it `abandoned`."""
        dead = [run_id for run_id in self._runs.running() if run_id != handle.run_id]
        if not dead:
            return
        commit = self._versions.current()
        for run_id in dead:
            if run_id == commit.run_id and commit.run is not None:
                entity = dict(commit.run)
                for name in ("started_at", "finished_at"):
                    entity[name] = as_time(entity.get(name))
                self._runs.write_entity(entity)
                log.warning(
                    "run %s: committed but unfinished; finished by %s", run_id, handle.run_id
                )
                continue
            rows = remove_history(self.history, self._blobs, run_key(run_id), run_id)
            self._runs.mark_abandoned(
                run_id,
                by=handle.run_id,
                at=handle.lease.now(),
                why=(
                    f"abandoned: stopped before its recording was committed (lease not renewed); "
                    f"run {handle.run_id} took over and removed its {rows} history row(s)"
                ),
            )
            log.warning("run %s: abandoned; %d history rows removed", run_id, rows)

    # -- recording (recording.py) ----------------------------------------------------------------

    def record_run(
        self,
        handle: RunHandle,
        *,
        snapshot: Snapshot,
        evaluation: Evaluation,
        evidence: bytes | Compressed,
        allowlist: bytes,
        allowlist_source: str,
        today: date,
        expiring_days: int,
        durations: Mapping[str, float],
        finished_at: datetime | None = None,
        state: Committed | None = None,
    ) -> RecordResult:
        """Store evidence, history rows and new state versions, then commit them in one
        request, then the run entity: a run cut short anywhere changes nothing a reader
        sees, and the next run repairs what it half-wrote (see recording.py). `state`: the
        committed state as `committed()` read it for this run (while it paged), else read
        now."""
        handle.lease.renew()
        complete = read_whole(snapshot)
        run_id, rkey = handle.run_id, run_key(handle.run_id)
        # Compressing and uploading the evidence (zlib releases the GIL) overlaps the diff.
        uploader = ThreadPoolExecutor(max_workers=1)
        upload = uploader.submit(
            self._blobs.write, rkey, {"snapshot": evidence, "allowlist": allowlist}
        )
        uploader.shutdown(wait=False)

        state = state or self.committed()
        commit = state.commit
        org = org_change(commit, run_id, snapshot.org_disabled)
        # New bucket versions are compressed and sent while the diffs go on (zlib releases
        # the GIL; the requests wait on the network): docs/architecture.md, "Performance".
        writer = VersionWriter(self.state)

        def mailbox_diff(complete: bool, loaded: Loaded) -> Diff:
            return diff_mailboxes(
                self._versions,
                commit,
                snapshot,
                run_id=run_id,
                rkey=rkey,
                complete=complete,
                loaded=loaded,
                per_bucket=self.bucket_records,
                writer=writer,
            )

        try:
            mailboxes = mailbox_diff(complete, state.mailboxes)
            errors = tuple(snapshot.errors)
            status = "complete" if complete else "incomplete"
            suspect = self._implausible(mailboxes.known, mailboxes.removed, commit, complete)
            if suspect is not None:
                errors += (suspect,)
                status, complete = "suspect", False
                writer.drain()  # the same rows are written again: the first ones must land first
                mailboxes = mailbox_diff(False, mailboxes.loaded)
            findings = diff_findings(
                self._versions,
                commit,
                evaluation,
                run_id=run_id,
                rkey=rkey,
                complete=complete,
                last_complete=state.last_complete,
                loaded=state.findings,
                per_bucket=self.bucket_records,
                writer=writer,
            )
            history = history_operations(
                rkey, mailboxes.mailbox_changes, findings.finding_events, org
            )
            evidence_bytes = upload.result()  # evidence first: it must exist before the changes
            if history:
                self._blobs.write(rkey, {"manifest": manifest(history)})
            try:
                self._check_lock(handle)
                self.history.submit_partitions(history, workers=self.workers)
                writer.drain()
                self._check_lock(handle)
            except StoreError:
                self._forget(rkey, run_id)  # never committed: its history rows must not stay
                raise
        finally:
            writer.close()

        changes = mailboxes.mailbox_changes
        events = findings.finding_events
        kinds = {"added": 0, "changed": 0, "removed": 0, "returned": 0}
        for change in changes:
            kinds[change.kind] += 1
        change_counts = {
            **{f"mailboxes_{k}": v for k, v in kinds.items()},
            "findings_new": len(findings.new_findings),
            "findings_changed": sum(1 for e in events if e.kind in ("status", "reopened")),
            "findings_resolved": sum(1 for e in events if e.kind == "resolved"),
            "org_changed": int(org is not None and not org.first),
        }
        run = RunRecord(
            run_id=run_id,
            tenant=snapshot.tenant,
            status=status,
            started_at=handle.started_at,
            finished_at=finished_at or self._clock(),
            complete=complete,
            org_disabled=snapshot.org_disabled,
            counts=dict(evaluation.counts),
            changes=change_counts,
            durations=dict(durations),
            errors=errors,
            allowlist_source=allowlist_source,
            today=today,
            expiring_days=expiring_days,
            exit_code=evaluation.exit_code(),
            evidence_bytes=evidence_bytes,
        )
        entity = run_entity(run)
        try:
            handle.lease.renew()  # a run that lost its lease never commits
        except RunInProgress:
            self._forget(rkey, run_id)
            raise
        try:
            committed = self._versions.commit(
                commit,
                {
                    "run_id": run_id,
                    "status": status,
                    "org_known": commit.org_known or snapshot.org_disabled is not None,
                    "org": Setting.text(
                        snapshot.org_disabled if snapshot.org_disabled is not None else commit.org
                    ),
                    "org_since": run_id if org is not None else commit.org_since,
                    "run": _run_copy(entity),
                    # What balances the next sharded read: this run's names when it read
                    # them all, else the last complete run's (core.spread).
                    "names": json.dumps(
                        name_spread(snapshot.mailboxes or ()) if complete else dict(commit.names),
                        separators=(",", ":"),
                    ),
                },
                {
                    "mailbox": (mailboxes.width, mailboxes.versions()),
                    "finding": (findings.width, findings.versions()),
                },
            )
        except StoreError:  # CommitLost, or storage failing: not committed
            self._forget(rkey, run_id)
            raise
        self._runs.write_entity(entity)
        for kind, diff in (("mailbox", mailboxes), ("finding", findings)):
            self._versions.collect_garbage(
                kind, diff.superseded + diff.loaded.stale, workers=self.workers
            )
        if commit.legacy and not committed.legacy:
            self._versions.drop_legacy_org()
        return RecordResult(
            run=run,
            mailbox_changes=tuple(changes),
            finding_events=tuple(events),
            new_findings=findings.new_findings,
            org_change=org,
            baseline=mailboxes.baseline,
        )

    def _forget(self, rkey: str, run_id: str) -> None:
        """Best effort: the history rows of our own run that will never commit."""
        try:
            remove_history(self.history, self._blobs, rkey, run_id)
        except StoreError as exc:
            log.warning("run %s: history rows left for the next run to remove: %s", run_id, exc)

    def _implausible(
        self, known: int, removed: int, commit: Commit, complete: bool
    ) -> CollectionError | None:
        """The plausibility guard: a complete read in which more than `max_removed_percent` of
        the known mailboxes (and at least 10) vanished. A run after a `suspect` one confirms."""
        if not complete or not known or commit.status == "suspect":
            return None
        if removed < _GUARD_MIN_REMOVED or removed * 100 <= self.max_removed_percent * known:
            return None
        return CollectionError(
            "plausibility",
            f"{removed} of {known} known mailboxes ({removed * 100 / known:.0f}%) are missing "
            f"from a complete read, more than AUDIT_MAX_REMOVED_PERCENT="
            f"{self.max_removed_percent}; recorded as suspect: nothing is marked removed or "
            "resolved until the next run confirms",
        )

    def fail_run(
        self,
        handle: RunHandle,
        *,
        errors: Iterable[CollectionError],
        durations: Mapping[str, float],
        evidence: bytes | Compressed | None = None,
    ) -> RunRecord:
        """Record a run whose collection failed outright: its errors, nothing else changes."""
        evidence_bytes = 0
        if evidence is not None:
            evidence_bytes = self._blobs.write(run_key(handle.run_id), {"snapshot": evidence})
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
        self._runs.write(run)
        return run

    def write_blob(self, run_id: str, name: str, data: bytes) -> int:
        """Store one more named blob with a run (e.g. `signins`); returns compressed bytes.
        `read_blob(run_id, name)` gives it back."""
        if not name.isalnum() or name in ("snapshot", "allowlist", "manifest"):
            raise StoreError(f"blob name must be letters and digits, not a run's own: {name!r}")
        self.ensure_tables()
        return self._blobs.write(run_key(run_id), {name: data})

    def read_blob(self, run_id: str, name: str) -> bytes | None:
        """A blob stored with a run (`snapshot`, `allowlist`), or None if it has none."""
        return self._blobs.read(run_key(run_id), name, run_id)


def _run_copy(entity: Mapping[str, Any]) -> str:
    """The run entity as JSON for the commit record, bounded to fit one property (64 KiB in
    UTF-16): error messages are shortened if need be, never the commit refused."""
    text = json.dumps(entity, separators=(",", ":"), default=str, ensure_ascii=False)
    if len(text) <= 24_000:
        return text
    errors = [
        {"source": str(e.get("source", ""))[:100], "message": str(e.get("message", ""))[:300]}
        for e in entity.get("errors") or []
    ]
    return json.dumps(
        {**entity, "errors": errors[:20]}, separators=(",", ":"), default=str, ensure_ascii=False
    )
