"""Packed state: many small records per entity, compressed JSON split in 64 KiB binaries.

The `state` table keeps one entity per bucket (`00`..`ff`) per kind (`mailbox`, `finding`);
each holds the records whose key hashes to the bucket, as zlib-compressed JSON in binary
properties `d0..dN` (`parts` of them) and the record count `n`.
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from collections.abc import Mapping
from typing import Any

from azure.data.tables import UpdateMode

from auditor.core.errors import StoreError
from auditor.core.history import FindingState, MailboxState
from auditor.storage.limits import MAX_VALUE_BYTES
from auditor.storage.tables import Operation, etag_condition

__all__ = [
    "CHUNKS_PER_ENTITY",
    "pack",
    "unpack",
    "compress",
    "take",
    "record_count",
    "packed_operation",
]

CHUNKS_PER_ENTITY = 11  # 11 x 64 KiB as base64 stays under the 1 MiB request body limit


def pack(data: bytes) -> dict[str, Any]:
    """Binary properties d0..dN of at most 64 KiB each."""
    parts = [data[i : i + MAX_VALUE_BYTES] for i in range(0, len(data), MAX_VALUE_BYTES)] or [b""]
    if len(parts) > CHUNKS_PER_ENTITY:
        raise StoreError(f"packed value of {len(data)} bytes does not fit one entity")
    out: dict[str, Any] = {"parts": len(parts)}
    for index, part in enumerate(parts):
        out[f"d{index}"] = part
    return out


def unpack(entity: Mapping[str, Any]) -> bytes:
    return b"".join(bytes(entity[f"d{i}"] or b"") for i in range(int(entity["parts"])))


_SLICE = 1 << 20


def compress(data: bytes) -> tuple[deque[bytes], int]:
    """zlib (level 1: 4x faster than 6 and only ~10% larger) of `data`, fed a slice at a time:
    the compressed pieces and their length (no second, joined copy)."""
    compressor = zlib.compressobj(1)
    view = memoryview(data)
    chunks: deque[bytes] = deque()
    for start in range(0, len(data), _SLICE):
        out = compressor.compress(view[start : start + _SLICE])
        if out:
            chunks.append(out)
    chunks.append(compressor.flush())
    return chunks, sum(len(chunk) for chunk in chunks)


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
    return len(json.loads(zlib.decompress(content))) if content else 0


def packed_operation(
    kind: str,
    bucket: str,
    merged: dict[str, Any],
    writes: Mapping[str, MailboxState | FindingState],
    etag: str | None,
) -> Operation:
    """The bucket rewritten with `writes` merged into its stored records (`merged`, changed
    in place), guarded by the ETag it had when read: a bucket another writer changed
    meanwhile fails the batch (412); a new bucket is created (409 if one appeared)."""
    for key, record in writes.items():
        merged[key] = record.pack()
    body = json.dumps(merged, separators=(",", ":")).encode("utf-8")
    entity = {
        "PartitionKey": kind,
        "RowKey": bucket,
        "n": len(merged),
        **pack(zlib.compress(body, 6)),
    }
    if etag is None:
        return ("create", entity, {})
    return ("update", entity, {"mode": UpdateMode.REPLACE, **etag_condition(etag)})
