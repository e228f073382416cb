"""The commit record: which version of every state bucket is current (docs/architecture.md,
"Crash safety and recording").

`state` table, PartitionKey `commit`, RowKey `state`: the run whose recording was committed
last (`run_id`, `status`), the RowKey of the current version of every `mailbox` and `finding`
bucket, the organisation value, a copy of the committed run's entity (so a run that died
between its commit and its run row is finished by the next run) and `names`, the last
complete run's names per first character (core.spread: what balances a sharded read). It is
replaced with its ETag, in one request: a run's state becomes current all at once or not at
all, and bucket versions written by a run that died before its commit are never read.

The bucket map (`layout` 2): per kind, the bucket width, the run keys of the runs that wrote
a current version (`writers`) and, for each of the 16**width buckets, the index of its writer
(-1: no version); zlib-compressed JSON in binary properties `m0..mN` (`mparts`). 4,096 buckets
take a few KiB. A commit record without `layout` (written before issue 17) holds the map as
JSON `mailbox` / `finding` properties, width 2; it is read as such and the next commit is
written in the new form (docs/architecture.md, "Bucket width").

A lost response is told apart from another writer by the run id the record carries: a 412 on
our own retried commit, when the stored record names our run, is our write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from auditor.core.errors import StoreError
from auditor.core.model import Setting
from auditor.core.spread import read_spread
from auditor.storage.limits import MAX_BATCH_OPERATIONS
from auditor.storage.packing import MIN_WIDTH, bucket_of_row, pack, read_packed, unpack
from auditor.storage.tables import Conflict, Operation, Table, bounded

__all__ = [
    "Commit",
    "CommitLost",
    "Loaded",
    "Versions",
    "VersionWriter",
    "KINDS",
    "LAYOUT",
    "encode_map",
    "decode_map",
]

log = logging.getLogger("auditor.storage")

KINDS = ("mailbox", "finding")
LAYOUT = 2  # the commit record's form: 2 = compressed bucket map (issue 17); none = JSON maps
_PK, _RK = "commit", "state"
_MAP_PREFIX, _MAP_COUNT = "m", "mparts"


class CommitLost(Conflict):
    """Another run committed state since this run read it: this run's state is not current."""


@dataclass(slots=True)
class Loaded:
    contents: dict[str, bytes] = field(default_factory=dict)  # bucket -> compressed records
    rows: dict[str, str] = field(default_factory=dict)  # bucket -> RowKey of that version
    records: int = 0
    stale: list[str] = field(default_factory=list)  # RowKeys no commit names


@dataclass(frozen=True, slots=True)
class Commit:
    """The committed state: what a run diffs against and every reader reads."""

    run_id: str | None = None
    status: str | None = None
    etag: str | None = None
    versions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # kind -> bucket -> row
    org_known: bool = False
    org: bool | None = None
    org_since: str | None = None
    run: Mapping[str, Any] | None = None  # the committed run's entity
    legacy: bool = False  # no commit record: the unversioned layout (`00`..`ff` rows)
    widths: Mapping[str, int] = field(default_factory=dict)  # kind -> bucket width
    # History rows may be in the partitions used before issue 17 (`mbx.<2 hex>`): a store
    # first written by an older version. Readers then look there too (recording.py).
    history_legacy: bool = False
    # Names per first character in the last complete run (core.spread): what balances the
    # shards of the next sharded read. {} before any, or when unreadable.
    names: Mapping[str, int] = field(default_factory=dict)

    def row(self, kind: str, bucket: str) -> str | None:
        if self.legacy:
            return bucket
        return self.versions.get(kind, {}).get(bucket)

    def width(self, kind: str) -> int:
        """The bucket width the committed versions of `kind` use (2 for older stores)."""
        return self.widths.get(kind, MIN_WIDTH)


def _spread(value: Any) -> dict[str, int]:
    """The stored name spread; {} for none or one that does not parse (it only balances)."""
    try:
        return read_spread(json.loads(str(value))) if value else {}
    except ValueError:
        return {}


class Versions:
    """Reads committed bucket versions, commits new ones, deletes the superseded."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def current(self) -> Commit:
        entity = self.table.get(_PK, _RK)
        if entity is None:
            legacy = self.table.get("org", "current")
            has_rows = next(iter(self.table.partition("mailbox", limit=1)), None) is not None
            if legacy is None and not has_rows:
                return Commit()
            return Commit(
                legacy=True,
                org_known=legacy is not None,
                org=Setting.parse(legacy.get("setting")) if legacy else None,
                org_since=str(legacy.get("since")) if legacy else None,
                history_legacy=True,
            )
        widths: dict[str, int] = {}
        if entity.get("layout") == LAYOUT:
            versions: dict[str, dict[str, str]] = {}
            maps = decode_map(unpack(entity, prefix=_MAP_PREFIX, count=_MAP_COUNT))
            for kind in KINDS:
                widths[kind], versions[kind] = maps.get(kind, (MIN_WIDTH, {}))
            history_legacy = bool(entity.get("history_legacy"))
        else:  # written before issue 17: JSON maps of 256 buckets, history in `mbx.<2 hex>`
            versions = {kind: dict(json.loads(str(entity.get(kind) or "{}"))) for kind in KINDS}
            history_legacy = True
        run = entity.get("run")
        return Commit(
            run_id=str(entity["run_id"]),
            status=str(entity.get("status") or ""),
            etag=str(entity["_etag"]),
            versions=versions,
            org_known=bool(entity.get("org_known")),
            org=Setting.parse(entity.get("org")),
            org_since=entity.get("org_since"),
            run=json.loads(str(run)) if run else None,
            widths=widths,
            history_legacy=history_legacy,
            names=_spread(entity.get("names")),
        )

    def buckets(self, kind: str, commit: Commit) -> Loaded:
        """The committed versions of one kind (and the rows nobody needs any more)."""
        loaded = Loaded()
        for entity in self.table.partition(kind):
            row = str(entity["RowKey"])
            bucket = bucket_of_row(row)
            if commit.row(kind, bucket) != row:
                loaded.stale.append(row)  # superseded, or written by a run that never committed
                continue
            loaded.contents[bucket] = unpack(entity)
            loaded.rows[bucket] = row
            loaded.records += int(entity.get("n") or 0)
        return loaded

    def contents(self, kind: str, commit: Commit, *, page: int = 32) -> Iterator[bytes]:
        """The committed versions of one kind, one at a time, read `page` per request: a
        caller that keeps none of them never holds more than a page (`buckets` holds all, a
        bucket version being tens of kilobytes)."""
        for entity in self.table.partition(kind, page=page):
            if commit.row(kind, bucket_of_row(str(entity["RowKey"]))) == entity["RowKey"]:
                yield unpack(entity)

    def bucket(self, kind: str, bucket: str, commit: Commit) -> dict[str, Any]:
        """The committed records of one bucket (raw, packed lists)."""
        row = commit.row(kind, bucket)
        if row is None:
            return {}
        entity = self.table.get(kind, row)
        if entity is None:
            return {}
        content = unpack(entity)
        return dict(read_packed(content)) if content else {}

    def _parallel(self, operations: list[Operation], *, workers: int) -> None:
        groups: dict[str, list[Operation]] = {}
        for operation in operations:
            groups.setdefault(operation[1]["PartitionKey"], []).append(operation)
        chunks = (
            {"operations": group[start : start + MAX_BATCH_OPERATIONS]}
            for group in groups.values()
            for start in range(0, len(group), MAX_BATCH_OPERATIONS)
        )
        bounded(lambda chunk: self.table.submit(chunk["operations"]), chunks, workers=workers)

    def commit(
        self,
        previous: Commit,
        entity: dict[str, Any],
        maps: Mapping[str, tuple[int, Mapping[str, str]]] | None = None,
    ) -> Commit:
        """Replace the commit record read as `previous` (ETag) with `entity` and the bucket
        `maps` (kind -> (width, bucket -> row)); a 412/409 whose stored record names our run
        is our own lost response, anything else `CommitLost`."""
        body = {"PartitionKey": _PK, "RowKey": _RK, **entity}
        if maps is not None:
            body.update(
                layout=LAYOUT,
                history_legacy=previous.history_legacy,
                **pack(encode_map(maps), prefix=_MAP_PREFIX, count=_MAP_COUNT),
            )
        run_id = str(entity["run_id"])
        try:
            if previous.etag is None:
                self.table.insert(body)
            else:
                self.table.replace(body, etag=previous.etag)
        except Conflict:
            stored = self.table.get(_PK, _RK)
            if stored is None or stored.get("run_id") != run_id:
                raise CommitLost(
                    f"run {run_id}: state was committed by run "
                    f"{stored.get('run_id') if stored else 'unknown'} since it was read; "
                    "this run's changes are not recorded"
                ) from None
            log.info("run %s: commit already stored (lost response), continuing", run_id)
        except StoreError:
            # No answer even to the resend: the commit may have landed. Ours if the record
            # names our run; otherwise the original error is the cause.
            try:
                stored = self.table.get(_PK, _RK)
            except StoreError:
                stored = None
            if stored is None or stored.get("run_id") != run_id:
                raise
            log.info("run %s: commit stored although its answer was lost, continuing", run_id)
        return self.current()

    def collect_garbage(self, kind: str, rows: Iterable[str], *, workers: int = 1) -> None:
        """Delete bucket versions no commit names any more. Best effort: a row left behind is
        never read (the commit does not name it) and goes next time."""
        stale: list[Operation] = [
            ("delete", {"PartitionKey": kind, "RowKey": row}, {}) for row in sorted(set(rows))
        ]
        try:
            self._parallel(stale, workers=workers)
        except StoreError as exc:
            log.warning(
                "state: %d superseded %s versions not deleted yet: %s", len(stale), kind, exc
            )

    def drop_legacy_org(self) -> None:
        with contextlib.suppress(StoreError):
            self.table.delete("org", "current")


def encode_map(maps: Mapping[str, tuple[int, Mapping[str, str]]]) -> bytes:
    """The bucket maps of a commit, compressed: per kind its width, the run keys that wrote a
    current version, and per bucket (in order) the index of its writer or -1. A legacy row
    (`00`, no run key) has the writer "". StoreError if a row is not `<bucket>.<run key>` of
    that width (it could not be named)."""
    out: dict[str, Any] = {}
    for kind, (width, rows) in maps.items():
        writers: dict[str, int] = {}
        at = [-1] * 16**width
        for bucket, row in rows.items():
            name, _, rkey = row.partition(".")
            if name != bucket or len(bucket) != width:
                raise StoreError(f"state {kind}: version {row!r} is not of a {width}-digit bucket")
            at[int(bucket, 16)] = writers.setdefault(rkey, len(writers))
        out[kind] = {"width": width, "writers": list(writers), "at": at}
    return zlib.compress(json.dumps(out, separators=(",", ":")).encode("utf-8"), 9)


def decode_map(data: bytes) -> dict[str, tuple[int, dict[str, str]]]:
    """`encode_map` reversed: kind -> (width, bucket -> RowKey of its current version)."""
    out: dict[str, tuple[int, dict[str, str]]] = {}
    for kind, value in json.loads(zlib.decompress(data)).items():
        width, writers = int(value["width"]), [str(w) for w in value["writers"]]
        rows: dict[str, str] = {}
        for index, writer in enumerate(value["at"]):
            if writer >= 0:
                bucket = f"{index:0{width}x}"
                rows[bucket] = f"{bucket}.{writers[writer]}" if writers[writer] else bucket
        out[kind] = (width, rows)
    return out


class VersionWriter:
    """New bucket versions compressed and sent while the diff that makes them goes on.

    `add` hands over a version's JSON; one of `packers` threads compresses it (zlib releases
    the GIL) and queues its row in its kind's partition, and every 100 rows of a partition go
    as one batch, at most `senders` batches in flight. A version is freed once sent, so a run
    never holds all its versions, nor all their request bodies at once (docs/architecture.md,
    "Performance"). Versions are invisible until a commit names them, so when they are
    written does not matter ("Writes keyed by the run, one commit last"). `drain()` sends
    what is left and waits: the first failure is raised there, and nothing is sent after it.
    The same row added twice (a diff done again) must be drained between the two."""

    def __init__(self, table: Table, *, packers: int = 2, senders: int = 2) -> None:
        self._table = table
        self._packers = ThreadPoolExecutor(max_workers=packers, thread_name_prefix="pack")
        self._senders = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="send")
        self._lock = threading.Lock()
        self._rows: dict[str, list[Operation]] = {}  # partition -> rows not yet sent
        self._pending: list[Future[None]] = []
        self._failure: BaseException | None = None

    def add(self, make: Callable[[], Operation]) -> None:
        """`make()` (the compressing half of a version) in a packer thread, then sent."""
        self._pending.append(self._packers.submit(self._pack, make))

    def _pack(self, make: Callable[[], Operation]) -> None:
        if self._failure is not None:
            return
        try:
            operation = make()
        except BaseException as exc:  # a version too large for one entity: StoreError
            self._failure = self._failure or exc
            raise
        with self._lock:
            rows = self._rows.setdefault(operation[1]["PartitionKey"], [])
            rows.append(operation)
            if len(rows) < MAX_BATCH_OPERATIONS:
                return
            batch, self._rows[operation[1]["PartitionKey"]] = rows, []
            self._pending.append(self._senders.submit(self._send, batch))

    def _send(self, batch: list[Operation]) -> None:
        if self._failure is not None:
            return
        try:
            self._table.submit(batch)
        except BaseException as exc:
            self._failure = self._failure or exc
            raise

    def drain(self) -> None:
        """Every version added so far compressed and sent; the first failure raised."""
        done = 0
        while done < len(self._pending):  # packers add sends as they go: wait for those too
            future = self._pending[done]
            done += 1
            with contextlib.suppress(BaseException):
                future.result()
        with self._lock:
            batches = [rows for rows in self._rows.values() if rows]
            self._rows = {}
        if self._failure is None:
            for future in [self._senders.submit(self._send, batch) for batch in batches]:
                with contextlib.suppress(BaseException):
                    future.result()
        self._pending = []
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        """Let the threads end (what is queued still runs); the writer is not used again."""
        self._packers.shutdown(wait=False)
        self._senders.shutdown(wait=False)
