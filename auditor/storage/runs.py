"""Runs and the run lock.

- `runs` table: PartitionKey `run`, RowKey inverted time + suffix: one entity per run, newest
  first (status, counts, changes, errors, durations).
- `state` table, `lock`/`audit`: the run lock (owner, expiry, taken and released with ETags).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from auditor.core.errors import InputError, StoreError
from auditor.core.history import run_id_for, run_key, run_time
from auditor.core.model import CollectionError, Setting
from auditor.core.records import RunRecord
from auditor.storage.tables import Conflict, NotFound, Table

__all__ = ["RunInProgress", "RunHandle", "Runs", "run_record", "as_time", "as_json"]


class RunInProgress(StoreError):
    """Another audit holds the run lock: this one refuses rather than interleave history."""


@dataclass(frozen=True, slots=True)
class RunHandle:
    run_id: str
    tenant: str
    started_at: datetime
    lock_etag: str


class Runs:
    """The runs table and the run lock (kept in the state table)."""

    def __init__(
        self,
        runs: Table,
        state: Table,
        *,
        lock_ttl: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.table = runs
        self.state = state
        self.lock_ttl = lock_ttl
        self._clock = clock

    def begin(self, *, tenant: str, now: datetime | None = None) -> RunHandle:
        """Take the run lock and record a `running` run. RunInProgress if another run holds it."""
        now = now or self._clock()
        run_id = run_id_for(now, secrets.token_hex(3))
        lock = {
            "PartitionKey": "lock",
            "RowKey": "audit",
            "owner": run_id,
            "expires_at": now + self.lock_ttl,
        }
        try:
            etag = self.state.insert(lock)
        except Conflict:
            current = self.state.get("lock", "audit")
            if current is None:  # released between our two calls: try once more
                etag = self.state.insert(lock)
            else:
                expires = as_time(current.get("expires_at"))
                if expires is not None and expires > now:
                    raise RunInProgress(
                        f"another audit (run {current.get('owner')}) is running; its lock "
                        f"expires at {expires.isoformat()}. Not starting a second one."
                    ) from None
                try:  # a stale lock from a crashed run: take it over, if nobody else did
                    etag = self.state.replace(lock, etag=current["_etag"])
                except Conflict:
                    raise RunInProgress(
                        "another audit took over the expired run lock first"
                    ) from None
        self.table.insert(
            {
                "PartitionKey": "run",
                "RowKey": run_key(run_id),
                "run_id": run_id,
                "tenant": tenant,
                "status": "running",
                "complete": False,
                "started_at": now,
            }
        )
        return RunHandle(run_id=run_id, tenant=tenant, started_at=now, lock_etag=etag)

    def check_lock(self, handle: RunHandle) -> None:
        current = self.state.get("lock", "audit")
        if current is None or current.get("owner") != handle.run_id:
            raise RunInProgress(
                f"run {handle.run_id} lost its lock (held by "
                f"{current.get('owner') if current else 'nobody'}); not writing history"
            )

    def release(self, handle: RunHandle) -> None:
        """Drop the lock if this run still holds it (a taken-over lock is left alone)."""
        current = self.state.get("lock", "audit")
        if current is None or current.get("owner") != handle.run_id:
            return
        try:
            self.state.delete("lock", "audit", etag=current["_etag"])
        except (Conflict, NotFound):
            return

    def write(self, run: RunRecord) -> None:
        self.table.replace(
            {
                "PartitionKey": "run",
                "RowKey": run_key(run.run_id),
                "run_id": run.run_id,
                "tenant": run.tenant,
                "status": run.status,
                "complete": run.complete,
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "org": Setting.text(run.org_disabled),
                "counts": run.counts,
                "changes": run.changes,
                "durations": {k: round(v, 3) for k, v in run.durations.items()},
                "errors": [
                    {"source": e.source, "message": e.message[:2000]} for e in run.errors[:20]
                ],
                "allowlist_source": run.allowlist_source[:1000],
                "today": run.today.isoformat() if run.today else None,
                "expiring_days": run.expiring_days,
                "exit_code": run.exit_code,
                "evidence_bytes": run.evidence_bytes,
            }
        )

    def list(self, *, limit: int = 50) -> list[RunRecord]:
        """Recorded runs, newest first."""
        return [run_record(e) for e in self.table.partition("run", limit=limit)]

    def get(self, run_id: str) -> RunRecord:
        """One run by id, or `latest`. InputError if there is no such run."""
        if run_id == "latest":
            found = self.list(limit=1)
            if not found:
                raise InputError("RUN", "no run has been recorded yet")
            return found[0]
        try:
            rkey = run_key(run_id)
        except ValueError as exc:
            raise InputError("RUN", f"not a run id: {run_id!r} (see the `runs` command)") from exc
        entity = self.table.get("run", rkey)
        if entity is None:
            raise InputError("RUN", f"no run {run_id!r} recorded (see the `runs` command)")
        return run_record(entity)

    def last_complete(self) -> str | None:
        for entity in self.table.query(
            "PartitionKey eq @pk and complete eq true", {"pk": "run"}, limit=1
        ):
            return str(entity["run_id"])
        return None


def as_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):  # the SDK's TablesEntityDatetime: make it a plain one
        return datetime.fromtimestamp(value.timestamp(), UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def as_json(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return json.loads(value)
    return value


def run_record(entity: Mapping[str, Any]) -> RunRecord:
    today = entity.get("today")
    return RunRecord(
        run_id=str(entity["run_id"]),
        tenant=str(entity.get("tenant", "")),
        status=str(entity.get("status", "")),
        started_at=as_time(entity.get("started_at")) or run_time(str(entity["run_id"])),
        finished_at=as_time(entity.get("finished_at")),
        complete=bool(entity.get("complete")),
        org_disabled=Setting.parse(entity.get("org")),
        counts=as_json(entity.get("counts")) or {},
        changes=as_json(entity.get("changes")) or {},
        durations=as_json(entity.get("durations")) or {},
        errors=tuple(
            CollectionError(str(e.get("source", "")), str(e.get("message", "")))
            for e in (as_json(entity.get("errors")) or [])
        ),
        allowlist_source=str(entity.get("allowlist_source", "")),
        today=date.fromisoformat(str(today)) if today else None,
        expiring_days=int(entity.get("expiring_days", 14)),
        exit_code=None if entity.get("exit_code") is None else int(entity["exit_code"]),
        evidence_bytes=int(entity.get("evidence_bytes", 0)),
    )
