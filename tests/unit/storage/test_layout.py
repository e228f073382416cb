"""The state layout of issue 17, pure: bucket widths chosen from the tenant's size, the commit
record's compressed bucket map, and where history rows go (docs/architecture.md, "Bucket
width")."""

from __future__ import annotations

import random

import pytest

from auditor.core.errors import StoreError
from auditor.core.history import MailboxChange, bucket_of, key_hash
from auditor.storage.limits import MAX_VALUE_BYTES
from auditor.storage.packing import (
    CHUNKS_PER_ENTITY,
    RECORDS_PER_BUCKET,
    bucket_width,
    pack,
    unpack,
)
from auditor.storage.recording import history_operations, history_partitions
from auditor.storage.versions import Commit, decode_map, encode_map


def test_the_width_grows_with_the_records_and_never_shrinks() -> None:
    assert bucket_width(0) == 2
    assert bucket_width(256 * RECORDS_PER_BUCKET) == 2  # 131,072 records: 256 buckets
    assert bucket_width(256 * RECORDS_PER_BUCKET + 1) == 3
    assert bucket_width(100_000) == 2  # 256 buckets of ~390
    assert bucket_width(1_000_000) == 3  # 4,096 buckets of ~244
    assert bucket_width(4_096 * RECORDS_PER_BUCKET + 1) == 4
    assert bucket_width(10**9) == 4  # the widest
    assert bucket_width(10, at_least=3) == 3  # a tenant that shrank keeps its layout
    assert bucket_width(300, per_bucket=1) == 3


def test_a_bucket_is_a_prefix_of_the_key_hash() -> None:
    key = "00000000-0000-4000-8000-000000000001"
    assert bucket_of(key) == key_hash(key)[:2]
    assert bucket_of(key, 3) == key_hash(key)[:3]
    assert bucket_of(key, 3).startswith(bucket_of(key))  # a wider bucket is inside a narrower


def test_the_bucket_map_round_trips_with_legacy_rows() -> None:
    maps = {
        "mailbox": (3, {"000": "000.9998-aa", "0a3": "0a3.9997-bb", "fff": "fff.9998-aa"}),
        "finding": (2, {"00": "00", "7f": "7f.9999-cc"}),  # `00`: a row from before versions
    }
    assert decode_map(encode_map(maps)) == {kind: (w, dict(r)) for kind, (w, r) in maps.items()}


def test_a_row_that_is_not_of_its_bucket_is_refused() -> None:
    with pytest.raises(StoreError, match="2-digit"):
        encode_map({"mailbox": (2, {"000": "000.9999-aa"})})


def test_the_widest_map_fits_the_commit_record() -> None:
    """65,536 buckets written by a year of nightly runs (365 writers) stay within the binary
    properties one entity holds, beside the run copy."""
    rng = random.Random(3)
    writers = [f"{9_000_000_000_000 - n:013d}-{n:06x}" for n in range(365)]
    rows = {f"{b:04x}": f"{b:04x}.{rng.choice(writers)}" for b in range(16**4)}
    data = encode_map({"mailbox": (4, rows), "finding": (4, rows)})
    assert len(data) < (CHUNKS_PER_ENTITY - 2) * MAX_VALUE_BYTES
    packed = pack(data, prefix="m", count="mparts")
    assert unpack(packed, prefix="m", count="mparts") == data
    assert decode_map(data)["mailbox"] == (4, rows)


def change(n: int) -> MailboxChange:
    return MailboxChange(f"key{n}", "changed", "20261102T020000000Z-ab12", {}, {}, ("setting",))


def test_history_rows_of_a_run_share_16_partitions_per_kind() -> None:
    operations = history_operations("9999-ab12", [change(n) for n in range(1000)], [], None)
    partitions = {entity["PartitionKey"] for _, entity, _ in operations}
    assert partitions == {f"mbx.{digit:x}" for digit in range(16)}  # ~63 rows each: 1 batch
    for _, entity, _ in operations:
        digest = key_hash(str(entity["mailbox"]))
        assert entity["RowKey"] == f"{digest}.9999-ab12"
        assert entity["PartitionKey"] in history_partitions("mbx", digest, Commit())


def test_a_store_from_before_issue_17_is_also_read_in_its_old_partitions() -> None:
    digest = key_hash("key1")
    assert history_partitions("mbx", digest, Commit()) == [f"mbx.{digest[0]}"]
    legacy = Commit(history_legacy=True)
    assert history_partitions("fnd", digest, legacy) == [f"fnd.{digest[0]}", f"fnd.{digest[:2]}"]
