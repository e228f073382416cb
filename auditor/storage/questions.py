"""Questions about the recorded history (the `AuditStore` answers them): runs, the committed
state of a mailbox or finding, its changes, and the alert baseline and ledger.

Everything here reads what a commit made current (versions.py): bucket versions written by a
run that never committed are never read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from auditor.core.history import (
    FindingEvent,
    FindingState,
    MailboxChange,
    MailboxState,
    bucket_of,
    key_hash,
    run_key,
)
from auditor.core.model import Finding, PreviousRun, PriorFinding, Setting, Status
from auditor.core.records import OrgChange, RunRecord
from auditor.storage.blobs import Blobs
from auditor.storage.ledger import AlertLedgerTable
from auditor.storage.packing import compact_json, compressed, read_json, read_packed
from auditor.storage.recording import history_partitions
from auditor.storage.runs import Runs, as_json, as_time, run_record
from auditor.storage.tables import Table, bounded
from auditor.storage.versions import Commit, Versions

__all__ = ["HistoryQuestions", "FINISHED"]

FINISHED = ("complete", "incomplete", "suspect")


class HistoryQuestions:
    """The read side of `AuditStore` (a mixin: the store sets these attributes)."""

    history: Table
    alerts: Table
    _runs: Runs
    _blobs: Blobs
    _versions: Versions
    _ledger: AlertLedgerTable
    _clock: Callable[[], datetime]
    workers: int  # requests in flight at once

    def ensure_tables(self) -> None:
        raise NotImplementedError

    # -- questions ----------------------------------------------------------------------------

    def runs(self, *, limit: int = 50) -> list[RunRecord]:
        """Recorded runs, newest first."""
        self.ensure_tables()
        return self._runs.list(limit=limit)

    def run(self, run_id: str) -> RunRecord:
        """One run by id, or `latest` (the newest run that finished: a `running` one is still
        working or dead, see `runs`). InputError if there is no such run."""
        self.ensure_tables()
        return self._runs.get(run_id)

    def _committed(self, kind: str, decode: Callable[[str, list[Any]], Any]) -> dict[str, Any]:
        loaded = self._versions.buckets(kind, self._versions.current())
        out: dict[str, Any] = {}
        for content in loaded.contents.values():
            for key, data in read_packed(content).items():
                out[key] = decode(key, data)
        return out

    def mailbox_states(self) -> dict[str, MailboxState]:
        self.ensure_tables()
        return self._committed("mailbox", MailboxState.unpack)

    def mailbox_state(self, key: str) -> MailboxState | None:
        self.ensure_tables()
        commit = self._versions.current()
        bucket = bucket_of(key, commit.width("mailbox"))
        data = self._versions.bucket("mailbox", bucket, commit).get(key)
        return None if data is None else MailboxState.unpack(key, data)

    def mailbox_states_of(self, keys: Iterable[str]) -> dict[str, MailboxState]:
        """The committed records of these mailboxes (a removed one keeps its last facts and
        `removed`), reading only the buckets that hold them: one entity per bucket, not the
        whole state. Keys with no record are left out."""
        self.ensure_tables()
        wanted = set(keys)
        if not wanted:
            return {}
        commit = self._versions.current()
        width = commit.width("mailbox")
        by_bucket: dict[str, set[str]] = {}
        for key in wanted:
            by_bucket.setdefault(bucket_of(key, width), set()).add(key)
        out: dict[str, MailboxState] = {}

        def read(item: tuple[str, set[str]]) -> None:
            bucket, members = item
            records = self._versions.bucket("mailbox", bucket, commit)
            for key in members:
                data = records.get(key)
                if data is not None:
                    out[key] = MailboxState.unpack(key, data)

        # `workers` buckets at a time: after a night of churn an alert looks up dozens (83 at
        # 100,000 mailboxes and 0.1% churn, 0.4 s when read one after another).
        bounded(read, iter(sorted(by_bucket.items())), workers=self.workers)
        return out

    def mailbox_changes(self, key: str) -> list[MailboxChange]:
        """Every recorded change of one mailbox, newest first."""
        self.ensure_tables()
        digest = key_hash(key)
        rows = self._history_rows("mbx", digest)
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

    def _history_rows(self, kind: str, digest: str) -> list[dict[str, Any]]:
        """The history rows of one key hash: one RowKey range in each partition that may hold
        them (`recording.history_partitions`)."""
        commit = self._versions.current()
        return [
            row
            for partition in history_partitions(kind, digest, commit)
            for row in self.history.rows_between(partition, f"{digest}.", f"{digest}.~")
        ]

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
        return self._committed("finding", FindingState.unpack)

    def finding_state(self, finding_id: str) -> FindingState | None:
        self.ensure_tables()
        commit = self._versions.current()
        bucket = bucket_of(finding_id, commit.width("finding"))
        data = self._versions.bucket("finding", bucket, commit).get(finding_id)
        return None if data is None else FindingState.unpack(finding_id, data)

    def finding_events(self, finding_id: str) -> list[FindingEvent]:
        """Transitions of one finding (status changes, resolved, reopened), newest first."""
        self.ensure_tables()
        digest = key_hash(finding_id)
        rows = self._history_rows("fnd", digest)
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
        """The last committed run and the findings it left open.

        For a complete run these are exactly its findings. After an incomplete (or suspect)
        run they are the last known findings (it resolved nothing), and `complete` is False.
        """
        self.ensure_tables()
        commit = self._versions.current()
        record = self._last_run(commit)
        if record is None:
            return None
        return PreviousRun(
            run_id=record.run_id,
            evaluated_at=record.finished_at or record.started_at,
            org_disabled=record.org_disabled,
            complete=record.complete,
            findings={
                s.id: PriorFinding(
                    id=s.id, control=s.control, status=Status(s.status), subject=s.subject
                )
                for bucket in self._open_findings(commit)
                for s in bucket
            },
        )

    def _last_run(self, commit: Commit) -> RunRecord | None:
        if commit.run is not None:
            return run_record(commit.run)
        # a store from before commit records: the newest finished run
        return next((r for r in self._runs.list(limit=20) if r.status in FINISHED), None)

    def _open_findings(self, commit: Commit) -> Iterator[list[FindingState]]:
        """The committed open findings, one bucket at a time: a caller that keeps less than
        the states never holds every decoded record at once."""
        for content in self._versions.contents("finding", commit):
            states = (FindingState.unpack(key, data) for key, data in read_packed(content).items())
            yield [s for s in states if s.open]

    # -- what the last delivered alert told (the alert baseline) ---------------------------------

    def alert_baseline(self, current: Iterable[Finding] = ()) -> PreviousRun | None:
        """What the next alert is decided against: the run whose alert was last DELIVERED (a
        run that died before alerting, or whose delivery failed, is covered by the next one).
        None when no alert was ever delivered: everything open is told, as a first run.

        `current`: this run's findings. A baseline finding with the same id and subject as one
        of them holds their strings, not copies (about 16 MiB at 90,000 open findings)."""
        self.ensure_tables()
        pointer = self.alerts.get("delivered", "last")
        if pointer is None:
            if self._versions.current().legacy:
                return self.previous_run()  # a store from before the baseline pointer
            return None
        run_id = str(pointer["run_id"])
        lines = self._blobs.lines(run_key(run_id), "alerted", run_id)
        if lines is None:
            return None
        first = next(lines)
        # The head, then a line per bucket of findings (`_told`); a baseline written before
        # the lines is one line, the whole document.
        told = read_json(first + b"}}" if first.endswith(b"{") else first)
        del first
        findings: dict[str, PriorFinding] = {}
        controls: dict[str, str] = {}  # one string per control, not one per finding
        known = {f.id: f for f in current}
        statuses = {status.value: status for status in Status}

        def add(entries: dict[str, list[str]]) -> None:
            while entries:  # each decoded entry is freed as soon as it is converted
                fid, (c, s, subject) = entries.popitem()
                control = controls.setdefault(c, c)
                same = known.get(fid)
                if same is not None and same.subject == subject:
                    fid, subject = same.id, same.subject
                findings[fid] = PriorFinding(fid, control, statuses[s], subject)

        add(told.pop("findings"))
        for line in lines:  # a bucket's findings at a time, never all of them decoded at once
            if line != b"}}":
                add(read_json(b"{" + line.removesuffix(b",") + b"}"))
        return PreviousRun(
            run_id=run_id,
            evaluated_at=as_time(told["evaluated_at"]) or self._clock(),
            org_disabled=Setting.parse(told.get("org")),
            complete=bool(told.get("complete")),
            findings=findings,
        )

    def mark_alerted(self, run_id: str) -> None:
        """The run's alert was delivered (or there was nothing to tell): the findings it left
        open become the baseline of the next alert. Never moves the baseline back.

        The baseline is written from the committed finding buckets one bucket at a time
        (about 90,000 open findings in a tenant whose organisation allows SMTP AUTH: never all
        of them as objects at once, docs/architecture.md "Performance")."""
        self.ensure_tables()
        pointer = self.alerts.get("delivered", "last")
        if pointer is not None and run_key(str(pointer["run_id"])) < run_key(run_id):
            return  # a newer run's alert is the baseline already
        commit = self._versions.current()
        record = self._last_run(commit)
        if record is None or record.run_id != run_id:
            return  # this run committed nothing (failed): the baseline stays
        head = {
            "evaluated_at": (record.finished_at or record.started_at).isoformat(),
            "org": Setting.text(record.org_disabled),
            "complete": record.complete,
        }
        self._blobs.write(run_key(run_id), {"alerted": compressed(self._told(head, commit))})
        self.alerts.replace(
            {"PartitionKey": "delivered", "RowKey": "last", "run_id": run_id, "at": self._clock()}
        )

    def _told(self, head: dict[str, Any], commit: Commit) -> Iterator[bytes]:
        """The baseline document in parts: `head` and "findings": {id: [control, status,
        subject]}, the findings a bucket at a time, each bucket on a line of its own (JSON
        escapes every newline inside a string) so that `alert_baseline` decodes a line at a
        time. One JSON document all the same (UTF-8; a reader of the one-line form reads it)."""
        yield json.dumps(head)[:-1].encode("ascii") + b', "findings": {\n'
        first = True
        brief = FindingState.brief
        for content in self._versions.contents("finding", commit):
            # Straight from the packed records: no state object per finding (90,000 of them
            # when the organisation allows SMTP AUTH), written by msgspec (compact_json).
            told = {fid: e for fid, data in read_packed(content).items() if (e := brief(data))}
            if told:
                yield (b"" if first else b",\n") + compact_json(told)[1:-1]
                first = False
        yield b"\n}}"

    # -- alert delivery ledger (ledger.py) --------------------------------------------------------

    def alert_deliveries(self, run_id: str) -> dict[str, str]:
        """channel -> status of the alerts already sent for a run."""
        self.ensure_tables()
        return self._ledger.deliveries(run_id)

    def record_alert_delivery(self, run_id: str, channel: str, status: str, detail: str) -> None:
        self.ensure_tables()
        self._ledger.record(run_id, channel, status, detail)
