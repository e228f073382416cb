"""New bucket versions compressed and sent while the diff goes on (storage.versions
.VersionWriter), against Azurite: every version lands, in batches of up to 100 per
partition; a failure is raised by `drain` and nothing is sent after it."""

from __future__ import annotations

import itertools
import threading
import zlib
from collections.abc import Callable, Sequence
from functools import partial

import pytest
from azure.data.tables import TableServiceClient

from auditor.core.errors import StoreError
from auditor.storage.packing import unpack, version_operation
from auditor.storage.tables import OpCounter, Operation, Table
from auditor.storage.versions import VersionWriter

_NAMES = itertools.count(1)


class Counted(Table):
    """The real table, counting batches sent and failing the `fail_at`-th (1-based)."""

    def __init__(self, *args: object, fail_at: int | None = None) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.fail_at = fail_at
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def submit(self, operations: Sequence[Operation]) -> None:
        with self._lock:
            self.batches.append(len(operations))
            number = len(self.batches)
        if number == self.fail_at:
            raise StoreError("table service unavailable (test)")
        super().submit(operations)


def table(azurite: str, **kwargs: int) -> Counted:
    service = TableServiceClient.from_connection_string(azurite)
    made = Counted(service, f"vw{next(_NAMES)}x{id(service) % 10**6}", OpCounter(), **kwargs)
    made.create()
    return made


def version(kind: str, n: int) -> Callable[[], Operation]:
    document = f'{{"k{n}":[{n}]}}'.encode()
    return partial(version_operation, kind, f"{n:03x}", 1, document, run_id="r1", rkey="rk1")


def test_every_version_lands_in_batches_of_up_to_100_per_partition(azurite: str) -> None:
    versions = table(azurite)
    writer = VersionWriter(versions)
    try:
        for n in range(250):
            writer.add(version("mailbox", n))
        for n in range(30):
            writer.add(version("finding", n))
        writer.drain()
    finally:
        writer.close()
    assert sorted(versions.batches) == [30, 50, 100, 100]
    rows = {str(e["RowKey"]): e for e in versions.partition("mailbox")}
    assert len(rows) == 250 and len(list(versions.partition("finding"))) == 30
    assert zlib.decompress(unpack(rows["0f9.rk1"])) == b'{"k249":[249]}'
    assert rows["0f9.rk1"]["n"] == 1 and rows["0f9.rk1"]["run"] == "r1"


def test_a_failed_batch_is_raised_by_drain_and_nothing_is_sent_after_it(azurite: str) -> None:
    versions = table(azurite, fail_at=1)
    writer = VersionWriter(versions, senders=1)
    try:
        for n in range(100):
            writer.add(version("mailbox", n))
        with pytest.raises(StoreError, match="unavailable"):
            writer.drain()
        for n in range(100, 350):  # a diff that went on: none of it is sent any more
            writer.add(version("mailbox", n))
        with pytest.raises(StoreError, match="unavailable"):
            writer.drain()
    finally:
        writer.close()
    assert versions.batches == [100]
    assert list(versions.partition("mailbox")) == []


def test_a_version_that_cannot_be_made_is_raised_by_drain(azurite: str) -> None:
    versions = table(azurite)
    writer = VersionWriter(versions)

    def too_large() -> Operation:
        raise StoreError("packed value of 9999999 bytes does not fit one entity")

    try:
        writer.add(version("mailbox", 1))
        writer.add(too_large)
        with pytest.raises(StoreError, match="does not fit one entity"):
            writer.drain()
    finally:
        writer.close()


def test_rows_drained_between_two_writes_of_the_same_row_keep_the_second(azurite: str) -> None:
    versions = table(azurite)
    writer = VersionWriter(versions)
    first = partial(version_operation, "mailbox", "00", 1, b'{"a":[1]}', run_id="r", rkey="k")
    second = partial(
        version_operation, "mailbox", "00", 2, b'{"a":[2],"b":[3]}', run_id="r", rkey="k"
    )
    try:
        writer.add(first)
        writer.drain()
        writer.add(second)
        writer.drain()
    finally:
        writer.close()
    (row,) = list(versions.partition("mailbox"))
    assert row["n"] == 2 and zlib.decompress(unpack(row)) == b'{"a":[2],"b":[3]}'
