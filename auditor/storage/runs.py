"""Runs and the run lock.

- `runs` table: PartitionKey `run`, RowKey inverted time + suffix: one entity per run, newest
  first (status, counts, changes, errors, durations).
- `state` table, `lock`/`audit`: the run lock (owner, expiry, taken and released with ETags).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from auditor.core.errors import InputError, StoreError
from auditor.core.history import run_id_for, run_key, run_time
from auditor.core.model import CollectionError, Setting
from auditor.core.records import RunRecord
from auditor.storage.tables import Conflict, NotFound, Table

log = logging.getLogger("auditor.storage")

__all__ = [
    "RunInProgress",
    "Lease",
    "RunHandle",
    "Runs",
    "run_record",
    "as_time",
    "as_json",
    "run_entity",
]


class RunInProgress(StoreError):
    """Another audit holds the run lock: this one refuses rather than interleave history."""


class Lease:
    """The run lock held as a lease: owner (run id) and a write token, an expiry renewed while
    the run works. Renewal is an ETag-guarded replace; a 412 whose stored lock still names our
    run and token is our own lost response, anything else means the lease was taken over."""

    def __init__(
        self, state: Table, run_id: str, token: str, etag: str, ttl: timedelta, now: datetime
    ) -> None:
        self.state = state
        self.run_id = run_id
        self.token = token
        self.etag = etag
        self.ttl = ttl
        self._base = now
        self._started = time.monotonic()
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed = time.monotonic()
        self.lost: str | None = None

    def now(self) -> datetime:
        """The run's clock: the time it began plus the time elapsed since (a test's injected
        start time and the real one advance alike)."""
        return self._base + timedelta(seconds=time.monotonic() - self._started)

    def entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": "lock",
            "RowKey": "audit",
            "owner": self.run_id,
            "token": self.token,
            "expires_at": self.now() + self.ttl,
        }

    def ours(self, current: Mapping[str, Any] | None) -> bool:
        return (
            current is not None
            and current.get("owner") == self.run_id
            and current.get("token") == self.token
        )

    def renew(self, *, force: bool = True) -> None:
        """Extend the lease; RunInProgress if another run took it over. Without `force`, a
        lease renewed less than a third of its duration ago is left as it is (nobody can
        take over a lease before it expires)."""
        with self._mutex:
            if self.lost:
                raise RunInProgress(self.lost)
            if not force and time.monotonic() - self._renewed < self.ttl.total_seconds() / 3:
                return
            try:
                self.etag = self.state.replace(self.entity(), etag=self.etag)
            except (Conflict, NotFound):
                current = self.state.get("lock", "audit")
                if not self.ours(current):
                    holder = current.get("owner") if current else "nobody"
                    self.lost = (
                        f"run {self.run_id} lost its lock (held by {holder}); not writing history"
                    )
                    raise RunInProgress(self.lost) from None
                assert current is not None
                self.etag = str(current["_etag"])  # our write landed, its answer was lost
            self._renewed = time.monotonic()

    def keep_alive(self) -> None:
        """Renew every third of the lease in a daemon thread until `stop()`."""
        if self._thread is not None:
            return

        def loop() -> None:
            interval = max(1.0, self.ttl.total_seconds() / 3)
            while not self._stop.wait(interval):
                try:
                    self.renew()
                except RunInProgress:
                    log.error("%s", self.lost)
                    return
                except StoreError as exc:  # unreachable for a moment: try again next time
                    log.warning("run %s: lease not renewed: %s", self.run_id, exc)

        self._thread = threading.Thread(target=loop, name=f"lease-{self.run_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


@dataclass(frozen=True, slots=True)
class RunHandle:
    run_id: str
    tenant: str
    started_at: datetime
    lease: Lease
    taken_over: str | None = None  # the run whose stale lease this one took over

    @property
    def lock_etag(self) -> str:
        return self.lease.etag


class Runs:
    """The runs table and the run lease (kept in the state table)."""

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
        """Take the lease and record a `running` run. RunInProgress if another run holds a
        lease that is not stale; a stale one is taken over (its run is repaired by the store)."""
        now = now or self._clock()
        run_id = run_id_for(now, secrets.token_hex(3))
        lease = Lease(self.state, run_id, secrets.token_hex(8), "", self.lock_ttl, now)
        taken_over = self._take(lease, now)
        row = {
            "PartitionKey": "run",
            "RowKey": run_key(run_id),
            "run_id": run_id,
            "token": lease.token,
            "tenant": tenant,
            "status": "running",
            "complete": False,
            "started_at": now,
        }
        try:
            self.table.insert(row)
        except Conflict:
            stored = self.table.get("run", run_key(run_id))
            if stored is None or stored.get("token") != lease.token:
                raise
            # our insert landed and its answer was lost: the retry's 409 is our own write
        return RunHandle(
            run_id=run_id, tenant=tenant, started_at=now, lease=lease, taken_over=taken_over
        )

    def _take(self, lease: Lease, now: datetime) -> str | None:
        """Insert the lock, or replace a stale one. The owner of a replaced stale lock."""
        for _ in range(2):
            try:
                lease.etag = self.state.insert(lease.entity())
                return None
            except Conflict:
                current = self.state.get("lock", "audit")
            if current is None:
                continue  # released between our two calls: try once more
            if lease.ours(current):  # our insert landed, the answer was lost
                lease.etag = str(current["_etag"])
                return None
            expires = as_time(current.get("expires_at"))
            if expires is not None and expires > now:
                raise RunInProgress(
                    f"another audit (run {current.get('owner')}) is running; its lease "
                    f"expires at {expires.isoformat()}. Not starting a second one."
                )
            try:  # a stale lease: its run died or hung; take it over, if nobody else did
                lease.etag = self.state.replace(lease.entity(), etag=current["_etag"])
            except Conflict:
                again = self.state.get("lock", "audit")
                if not lease.ours(again):
                    raise RunInProgress("another audit took over the stale lease first") from None
                assert again is not None
                lease.etag = str(again["_etag"])
            owner = current.get("owner")
            return str(owner) if owner else None
        raise RunInProgress("the run lock changed hands twice while it was taken; try again")

    def check_lock(self, handle: RunHandle) -> None:
        """Renew the lease if due; RunInProgress if this run lost it."""
        handle.lease.renew(force=False)

    def release(self, handle: RunHandle) -> None:
        """Stop renewing and drop the lease if this run still holds it. Never raises: a lease
        left behind goes stale by itself, and the run's own outcome is what matters."""
        handle.lease.stop()
        try:
            current = self.state.get("lock", "audit")
            if not handle.lease.ours(current):
                return
            assert current is not None
            self.state.delete("lock", "audit", etag=current["_etag"])
        except StoreError as exc:
            log.warning("run %s: lease not released (it expires by itself): %s", handle.run_id, exc)

    def mark_abandoned(self, run_id: str, *, by: str, at: datetime, why: str) -> None:
        """A run that died or hung before its commit: `abandoned`, when and by whom."""
        entity = self.table.get("run", run_key(run_id))
        if entity is None or entity.get("status") != "running":
            return
        errors = as_json(entity.get("errors")) or []
        errors.append({"source": "run", "message": why[:500]})
        self.table.replace(
            {
                **{k: v for k, v in entity.items() if not k.startswith("_")},
                "status": "abandoned",
                "complete": False,
                "abandoned_at": at,
                "abandoned_by": by,
                "finished_at": at,
                "errors": errors[:20],
                "exit_code": 3,
            }
        )

    def write_entity(self, entity: Mapping[str, Any]) -> None:
        self.table.replace(dict(entity))

    def running(self, *, limit: int = 20) -> list[str]:
        """Ids of recent runs still marked `running`."""
        return [
            str(e["run_id"])
            for e in self.table.partition("run", limit=limit)
            if e.get("status") == "running"
        ]

    def write(self, run: RunRecord) -> None:
        self.table.replace(run_entity(run))

    def list(self, *, limit: int = 50) -> list[RunRecord]:
        """Recorded runs, newest first."""
        return [run_record(e) for e in self.table.partition("run", limit=limit)]

    def get(self, run_id: str) -> RunRecord:
        """One run by id, or `latest`. InputError if there is no such run."""
        if run_id == "latest":  # the newest run that finished: not one working or dead
            found = [r for r in self.list(limit=50) if r.status not in ("running", "abandoned")]
            if not found:
                raise InputError("RUN", "no finished run has been recorded yet")
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


def run_entity(run: RunRecord) -> dict[str, Any]:
    """The run's entity: values bounded so that no run can fail to be written."""
    return {
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
            {"source": e.source[:100], "message": e.message[:1000]} for e in run.errors[:20]
        ],
        "allowlist_source": run.allowlist_source[:1000],
        "today": run.today.isoformat() if run.today else None,
        "expiring_days": run.expiring_days,
        "exit_code": run.exit_code,
        "evidence_bytes": run.evidence_bytes,
    }


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
        abandoned_by=str(entity["abandoned_by"]) if entity.get("abandoned_by") else None,
        abandoned_at=as_time(entity.get("abandoned_at")),
        evidence_bytes=int(entity.get("evidence_bytes", 0)),
    )
