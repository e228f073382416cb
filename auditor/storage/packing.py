"""Packed state: many small records per entity, compressed JSON split in 64 KiB binaries.

The `state` table keeps, per kind (`mailbox`, `finding`) and bucket, versions of the bucket:
RowKey `<bucket>.<run key of the writer>`, each holding the records whose key hashes to the
bucket as zlib-compressed JSON in binary properties `d0..dN` (`parts` of them), the record
count `n` and the writing run. Which version is current is named by the commit record
(`versions.py`), never inferred from the rows present.

A bucket is the first `width` hex digits of the key's hash: `00`..`ff` (width 2, 256 buckets,
the least), `000`..`fff` (4,096), ... The width grows with the tenant so that a bucket holds at
most about `RECORDS_PER_BUCKET` records and a change rewrites one small entity
(docs/architecture.md, "Bucket width"); it never shrinks.
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from azure.data.tables import UpdateMode

from auditor.core.errors import StoreError
from auditor.core.evidence import Compressed
from auditor.core.history import FindingState, MailboxState
from auditor.storage.limits import MAX_VALUE_BYTES
from auditor.storage.tables import Operation

__all__ = [
    "CHUNKS_PER_ENTITY",
    "read_packed",
    "read_json",
    "pack",
    "unpack",
    "compress",
    "compressed",
    "take",
    "record_count",
    "merged_json",
    "version_operation",
    "version_row",
    "bucket_of_row",
    "bucket_width",
    "RECORDS_PER_BUCKET",
    "MIN_WIDTH",
    "MAX_WIDTH",
]

CHUNKS_PER_ENTITY = 11  # 11 x 64 KiB as base64 stays under the 1 MiB request body limit

# A bucket holds at most this many records (about 25 KiB compressed): a change rewrites that
# much, a batch of 100 versions stays below the 4 MiB batch payload, and a run reads few
# entities. Widths 2..4: 256 buckets (up to 131,072 records), 4,096 (up to ~2.1M), 65,536
# (up to ~33.5M). Measured with benchmarks/bench_record.py (docs/architecture.md).
RECORDS_PER_BUCKET = 512
MIN_WIDTH, MAX_WIDTH = 2, 4


def bucket_width(records: int, *, at_least: int = MIN_WIDTH, per_bucket: int = 0) -> int:
    """The bucket width for `records` records: the narrowest (fewest buckets) whose buckets hold
    at most `per_bucket` (default `RECORDS_PER_BUCKET`) each, never below `at_least` (the
    committed width: a shrinking tenant keeps its layout) nor beyond `MAX_WIDTH`."""
    limit = per_bucket or RECORDS_PER_BUCKET
    width = max(MIN_WIDTH, min(at_least, MAX_WIDTH))
    while width < MAX_WIDTH and records > limit * 16**width:
        width += 1
    return width


def pack(data: bytes, *, prefix: str = "d", count: str = "parts") -> dict[str, Any]:
    """Binary properties d0..dN (`prefix`) of at most 64 KiB each, and their number (`count`)."""
    parts = [data[i : i + MAX_VALUE_BYTES] for i in range(0, len(data), MAX_VALUE_BYTES)] or [b""]
    if len(parts) > CHUNKS_PER_ENTITY:
        raise StoreError(f"packed value of {len(data)} bytes does not fit one entity")
    out: dict[str, Any] = {count: len(parts)}
    for index, part in enumerate(parts):
        out[f"{prefix}{index}"] = part
    return out


def read_packed(content: bytes) -> Any:
    """What `compact_json` wrote and zlib compressed, back: msgspec decodes it (about twice as
    fast as `json`), and `json` the documents msgspec refuses (an escaped lone surrogate,
    which `compact_json` writes through `json`)."""
    return read_json(zlib.decompress(content))


def read_json(data: bytes) -> Any:
    """A JSON document: by msgspec, or by `json` when msgspec refuses it (an escaped lone
    surrogate)."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return json.loads(data)


def compact_json(document: Any) -> bytes:
    """`document` as compact JSON in UTF-8, by msgspec (several times faster than `json`); a
    lone surrogate, which msgspec cannot write, is escaped by `json` instead."""
    try:
        return msgspec.json.encode(document)
    except UnicodeEncodeError:
        return json.dumps(document, separators=(",", ":")).encode("ascii")


def unpack(entity: Mapping[str, Any], *, prefix: str = "d", count: str = "parts") -> bytes:
    return b"".join(bytes(entity[f"{prefix}{i}"] or b"") for i in range(int(entity[count])))


_SLICE = 1 << 20


def compress(data: bytes) -> tuple[deque[bytes], int]:
    """zlib (level 1: 4x faster than 6 and only ~10% larger) of `data`, fed a slice at a time:
    the compressed pieces and their length (no second, joined copy)."""
    view = memoryview(data)
    done = compressed(view[start : start + _SLICE] for start in range(0, len(data), _SLICE))
    return done.release(), done.length


def compressed(parts: Iterable[bytes | memoryview]) -> Compressed:
    """zlib (level 1, as `compress`) of `parts` one after the other, fed one part at a time: a
    document written in parts is never held whole, uncompressed."""
    compressor = zlib.compressobj(1)
    chunks: deque[bytes] = deque()
    size = 0
    for part in parts:
        size += len(part)
        out = compressor.compress(part)
        if out:
            chunks.append(out)
    chunks.append(compressor.flush())
    return Compressed(chunks, size)


def take(chunks: deque[bytes], size: int) -> bytes:
    """The next `size` bytes (or what is left) of `chunks`, removed from them."""
    parts: list[bytes] = []
    need = size
    while chunks and need > 0:
        chunk = chunks.popleft()
        if len(chunk) > need:
            chunks.appendleft(chunk[need:])
            chunk = chunk[:need]
        parts.append(chunk)
        need -= len(chunk)
    return b"".join(parts)


def record_count(entity: Mapping[str, Any], content: bytes) -> int:
    """How many records a stored bucket holds (its `n`, else counted)."""
    if entity.get("n") is not None:
        return int(entity["n"])
    return len(read_packed(content)) if content else 0


def version_row(bucket: str, rkey: str) -> str:
    """RowKey of the version of `bucket` written by the run with run key `rkey`."""
    return f"{bucket}.{rkey}"


def bucket_of_row(row_key: str) -> str:
    """The bucket a state RowKey belongs to (`00.<run key>`, `0a3.<run key>`, or a legacy
    `00`)."""
    return row_key.partition(".")[0]


def merged_json(merged: dict[str, Any], writes: Mapping[str, MailboxState | FindingState]) -> bytes:
    """A new version of a bucket, first half: `writes` merged into its committed records
    (`merged`, changed in place), as JSON. This half holds the interpreter."""
    for key, record in writes.items():
        merged[key] = record.pack()
    return compact_json(merged)


def version_operation(
    kind: str, bucket: str, count: int, document: bytes, *, run_id: str, rkey: str
) -> Operation:
    """A new version of a bucket, second half: its row, keyed by the writing run, holding
    the `count` records of `document` compressed. Writing it again (a replayed run) writes
    the same row; it is invisible until the run's commit names it. Mostly zlib, which
    releases the interpreter, so recording runs it in threads beside the diff."""
    entity = {
        "PartitionKey": kind,
        "RowKey": version_row(bucket, rkey),
        "run": run_id,
        "n": count,
        **pack(zlib.compress(document, 1)),  # level 1: see `compress`
    }
    return ("upsert", entity, {"mode": UpdateMode.REPLACE})
