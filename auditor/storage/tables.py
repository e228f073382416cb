"""A thin, counting wrapper over `TableClient`: every request goes through here.

It encodes and checks entities against the service's limits (`store_limits`), maps
`azure.core` errors to `StoreError`, and counts operations in `OpCounter` (entities written,
write requests, read requests, entities read) so a benchmark can print what a run cost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from auditor.core.errors import StoreError
from auditor.storage.limits import encode_entity, entity_size, split_batches

__all__ = [
    "OpCounter",
    "Table",
    "Conflict",
    "NotFound",
    "Unreachable",
    "Operation",
    "etag_condition",
    "bounded",
]

T = TypeVar("T")

Operation = tuple[str, dict[str, Any], dict[str, Any]]


class Conflict(StoreError):
    """An ETag or existence precondition failed: another writer got there first."""


class NotFound(StoreError):
    """The entity does not exist."""


class Unreachable(StoreError):
    """No answer from Table Storage (connection refused, reset, timed out)."""


def _once_more(action: Callable[[], T]) -> T:
    """`action`, sent again once if its answer was lost on the way (the SDK does not retry a
    POST whose response never came). A retried write can meet itself: 409 or 412 then, which
    the callers that care tell apart from another writer by the token they wrote."""
    try:
        return action()
    except (ServiceRequestError, ServiceResponseError):
        return action()


@dataclass
class OpCounter:
    """Table operations so far. `writes` counts entities written (one per batch member),
    `write_requests` the requests that wrote them: a batch transaction (up to 100 entities of
    one partition) is one request, as the service bills and throttles it.

    `detail()` breaks the writes down per table: single-entity requests, batch requests, the
    entities and the bytes they carried (as sent: binary as base64, `limits.entity_size`)."""

    writes: int = 0
    write_requests: int = 0
    reads: int = 0
    entities_read: int = 0
    _tables: dict[str, dict[str, int]] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(
        self,
        *,
        writes: int = 0,
        write_requests: int = 0,
        reads: int = 0,
        read: int = 0,
        table: str | None = None,
        batch: bool = False,
        size: int = 0,
    ) -> None:
        with self._lock:
            self.writes += writes
            self.write_requests += write_requests
            self.reads += reads
            self.entities_read += read
            if table is not None and write_requests:
                tally = self._tables.setdefault(
                    table, {"single": 0, "batch": 0, "entities": 0, "bytes": 0}
                )
                tally["batch" if batch else "single"] += write_requests
                tally["entities"] += writes
                tally["bytes"] += size

    def detail(self) -> dict[str, dict[str, int]]:
        """Per table: `single` and `batch` write requests, `entities` and `bytes` written."""
        with self._lock:
            return {name: dict(tally) for name, tally in sorted(self._tables.items())}

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "writes": self.writes,
                "write_requests": self.write_requests,
                "reads": self.reads,
                "entities_read": self.entities_read,
            }


def _error(exc: Exception, what: str) -> StoreError:
    if isinstance(exc, (ResourceModifiedError, ResourceExistsError)):
        return Conflict(f"{what}: changed by another writer ({type(exc).__name__})")
    if isinstance(exc, ResourceNotFoundError):
        return NotFound(f"{what}: not found")
    if isinstance(exc, HttpResponseError):
        code = getattr(exc, "error_code", None) or exc.status_code
        if exc.status_code == 404:
            return NotFound(f"{what}: not found")
        if exc.status_code == 412:
            return Conflict(f"{what}: changed by another writer")
        if exc.status_code == 409:
            return Conflict(f"{what}: already exists")
        code = getattr(code, "value", code)
        busy = " (throttled or busy)" if exc.status_code in (429, 503) else ""
        return StoreError(
            f"{what}: Table Storage answered {exc.status_code} {code}{busy}: "
            f"{exc.reason or exc.message}"
        )
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return Unreachable(f"{what}: Table Storage unreachable: {type(exc).__name__}: {exc}")
    return StoreError(f"{what}: Table Storage unreachable: {type(exc).__name__}: {exc}")


def etag_condition(etag: str | None) -> dict[str, Any]:
    if etag is None:
        return {}
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}


class Table:
    """One table. Methods raise StoreError (Conflict, NotFound) and never azure exceptions."""

    def __init__(self, service: TableServiceClient, name: str, counter: OpCounter) -> None:
        self.name = name
        self._client: TableClient = service.get_table_client(name)
        self._service = service
        self._counter = counter

    def create(self) -> None:
        try:
            self._service.create_table_if_not_exists(self.name)
        except AzureError as exc:
            raise _error(exc, f"create table {self.name}") from exc
        self._counter.add(write_requests=1, table=self.name)

    def get(self, pk: str, rk: str) -> dict[str, Any] | None:
        try:
            entity = self._client.get_entity(pk, rk)
        except ResourceNotFoundError:
            self._counter.add(reads=1)
            return None
        except AzureError as exc:
            raise _error(exc, f"read {self.name}({pk!r}, {rk!r})") from exc
        self._counter.add(reads=1, read=1)
        return _plain(entity)

    def query(
        self,
        filter_: str,
        parameters: Mapping[str, Any],
        *,
        limit: int | None = None,
        page: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Entities matching an OData filter (parameters substituted by the SDK, quoted), read
        `page` entities per request (at most 1,000, the service's own cap)."""
        try:
            pages = self._client.query_entities(
                filter_, parameters=dict(parameters), results_per_page=page
            ).by_page()
            seen = 0
            for entities in pages:
                self._counter.add(reads=1)
                for entity in entities:
                    self._counter.add(read=1)
                    yield _plain(entity)
                    seen += 1
                    if limit is not None and seen >= limit:
                        return
        except AzureError as exc:
            raise _error(exc, f"query {self.name}") from exc

    def partition(
        self, pk: str, *, limit: int | None = None, page: int = 1000
    ) -> Iterator[dict[str, Any]]:
        return self.query("PartitionKey eq @pk", {"pk": pk}, limit=limit, page=page)

    def rows_between(self, pk: str, low: str, high: str) -> Iterator[dict[str, Any]]:
        """Rows of one partition with low <= RowKey < high (RowKey order)."""
        return self.query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": pk, "lo": low, "hi": high},
        )

    def insert(self, entity: Mapping[str, Any]) -> str:
        """Create; Conflict if it exists. Returns the new ETag."""
        body = encode_entity(self.name, entity)
        try:
            meta = _once_more(lambda: self._client.create_entity(body))
        except AzureError as exc:
            raise _error(exc, f"create {self.name}({body['PartitionKey']!r})") from exc
        self._counter.add(writes=1, write_requests=1, table=self.name, size=entity_size(body))
        return str(meta.get("etag", ""))

    def replace(self, entity: Mapping[str, Any], *, etag: str | None = None) -> str:
        """Replace (with `etag`: only if unchanged since read) or upsert. Returns the ETag."""
        body = encode_entity(self.name, entity)
        try:
            if etag is None:
                meta = _once_more(lambda: self._client.upsert_entity(body, mode=UpdateMode.REPLACE))
            else:
                meta = _once_more(
                    lambda: self._client.update_entity(
                        body, mode=UpdateMode.REPLACE, **etag_condition(etag)
                    )
                )
        except AzureError as exc:
            raise _error(exc, f"write {self.name}({body['PartitionKey']!r})") from exc
        self._counter.add(writes=1, write_requests=1, table=self.name, size=entity_size(body))
        return str(meta.get("etag", ""))

    def delete(self, pk: str, rk: str, *, etag: str | None = None) -> None:
        try:
            _once_more(lambda: self._client.delete_entity(pk, rk, **etag_condition(etag)))
        except AzureError as exc:
            raise _error(exc, f"delete {self.name}({pk!r}, {rk!r})") from exc
        self._counter.add(writes=1, write_requests=1, table=self.name)

    def submit(self, operations: Sequence[Operation]) -> None:
        """Operations of one partition, in as few valid batches as the limits allow.

        Batches are atomic each; several batches are applied in order, so callers write rows
        that must survive a crash first (history before current state).
        """
        encoded = [(op, encode_entity(self.name, ent), kw) for op, ent, kw in operations]
        for batch in split_batches(self.name, encoded):
            try:
                _once_more(partial(self._client.submit_transaction, batch))
            except AzureError as exc:
                pk = batch[0][1]["PartitionKey"]
                raise _error(exc, f"batch of {len(batch)} in {self.name}({pk!r})") from exc
            self._counter.add(
                writes=len(batch),
                write_requests=1,
                table=self.name,
                batch=True,
                size=sum(entity_size(entity) for _, entity, _ in batch),
            )

    def submit_partitions(self, operations: Sequence[Operation], *, workers: int = 8) -> None:
        """Operations of many partitions: grouped per partition, partitions in parallel."""
        groups: dict[str, list[Operation]] = {}
        for operation in operations:
            groups.setdefault(operation[1]["PartitionKey"], []).append(operation)
        if len(groups) <= 1:
            for group in groups.values():
                self.submit(group)
            return
        with ThreadPoolExecutor(max_workers=min(workers, len(groups))) as pool:
            for future in [pool.submit(self.submit, group) for group in groups.values()]:
                future.result()


def _plain(entity: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entity.items():
        out[key] = value.value if hasattr(value, "edm_type") else value
    metadata = getattr(entity, "metadata", None)
    if metadata:
        out["_etag"] = metadata.get("etag")
    return out


def bounded(action: Callable[[T], Any], items: Iterator[T], *, workers: int) -> None:
    """`action` on each item, `workers` at a time; the next item is made when one is done
    (each request in flight holds its body several times over: base64, JSON, bytes). The
    first failure is raised once the requests in flight have ended."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: set[Future[Any]] = set()
        for item in items:
            if len(pending) >= workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
            pending.add(pool.submit(action, item))
            del item
        for future in pending:
            future.result()
