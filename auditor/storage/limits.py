"""The real Table Storage service's limits, enforced on the client (docs/architecture.md).

Azurite accepts entities the real service rejects, so the adapter checks every entity and batch
itself before it is sent, and a violation is a `StoreError` naming the table, keys and limit:
it never reaches the wire and never half-writes a batch.

- PartitionKey / RowKey: at most 1 KiB, no `/ \\ # ?`, no control characters.
- Property names: an identifier (letters, digits, `_`; no `-`), at most 255 characters.
- At most 252 custom properties; an entity of at most 1 MiB by the service's size formula,
  and as a request body (binary is base64 on the wire, so ~768 KiB of binary per entity).
- Strings at most 64 KiB in UTF-16; binary at most 64 KiB.
- int beyond Int32 is typed `Edm.Int64` (the SDK would reject it); dicts and lists are
  JSON-encoded strings; None values are dropped (the service has no null).
- A batch: at most 100 operations, one partition, each RowKey once, at most 4 MiB of payload.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from azure.data.tables import EdmType, EntityProperty

from auditor.core.errors import StoreError

__all__ = [
    "MAX_ENTITY_BYTES",
    "MAX_PROPERTIES",
    "MAX_VALUE_BYTES",
    "MAX_KEY_BYTES",
    "MAX_BATCH_OPERATIONS",
    "MAX_BATCH_BYTES",
    "check_key",
    "encode_entity",
    "entity_size",
    "split_batches",
]

MAX_ENTITY_BYTES = 1024 * 1024
MAX_PROPERTIES = 252
MAX_VALUE_BYTES = 64 * 1024
MAX_KEY_BYTES = 1024
MAX_BATCH_OPERATIONS = 100
MAX_BATCH_BYTES = 4 * 1024 * 1024

_KEY_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_SYSTEM = frozenset({"PartitionKey", "RowKey", "Timestamp", "odata.etag"})
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def check_key(value: str, what: str) -> str:
    """A PartitionKey or RowKey the service accepts unescaped, or StoreError."""
    if not isinstance(value, str) or not value:
        raise StoreError(f"{what} must be a non-empty string, got {value!r}")
    bad = _KEY_FORBIDDEN.search(value)
    if bad:
        raise StoreError(f"{what} {value[:80]!r} contains the forbidden character {bad.group()!r}")
    if len(value.encode("utf-16-le")) > MAX_KEY_BYTES:
        raise StoreError(f"{what} is longer than 1 KiB ({len(value)} characters)")
    return value


def _value(name: str, value: Any, where: str) -> tuple[Any, int]:
    """(value as sent, its size by the service's formula) of one property."""
    if isinstance(value, bool):
        return value, 1
    if isinstance(value, int):
        if _INT32[0] <= value <= _INT32[1]:
            return value, 4
        if _INT64[0] <= value <= _INT64[1]:
            return EntityProperty(value, EdmType.INT64), 8
        raise StoreError(f"{where}: property {name} = {value} does not fit in Int64")
    if isinstance(value, float):
        return value, 8
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise StoreError(f"{where}: property {name} is a naive datetime; use UTC")
        return value, 8
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    if isinstance(value, str):
        try:
            size = len(value.encode("utf-16-le"))
        except UnicodeEncodeError:
            raise StoreError(
                f"{where}: property {name} is not valid Unicode text (a lone surrogate)"
            ) from None
        if size > MAX_VALUE_BYTES:
            raise StoreError(
                f"{where}: property {name} is {size} bytes in UTF-16, over the 64 KiB limit"
            )
        return value, size + 4
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if len(data) > MAX_VALUE_BYTES:
            raise StoreError(f"{where}: property {name} is {len(data)} bytes, over 64 KiB")
        return data, len(data) + 4
    if isinstance(value, EntityProperty):
        return value, 8
    raise StoreError(f"{where}: property {name} has unsupported type {type(value).__name__}")


def encode_entity(table: str, entity: Mapping[str, Any]) -> dict[str, Any]:
    """A checked, typed copy of `entity` ready for the SDK; StoreError on any limit."""
    pk = check_key(entity.get("PartitionKey", ""), f"{table} PartitionKey")
    rk = check_key(entity.get("RowKey", ""), f"{table} RowKey")
    where = f"{table}({pk!r}, {rk!r})"
    out: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk}
    size = 4 + (len(pk) + len(rk)) * 2
    count = 0
    for name, raw in entity.items():
        if name in _SYSTEM or raw is None:
            continue
        if not _PROPERTY_NAME.match(name):
            raise StoreError(f"{where}: property name {name!r} is not allowed (letters, digits, _)")
        value, value_size = _value(name, raw, where)
        out[name] = value
        size += 8 + len(name) * 2 + value_size
        count += 1
    if count > MAX_PROPERTIES:
        raise StoreError(f"{where}: {count} properties, over the limit of {MAX_PROPERTIES}")
    if size > MAX_ENTITY_BYTES:
        raise StoreError(f"{where}: entity is {size} bytes, over the 1 MiB limit")
    wire = entity_size(out)
    if wire > MAX_ENTITY_BYTES:
        # The service (and Azurite) also refuse a request body over 1 MiB: binary travels as
        # base64, so 1 MiB of properties does not fit in one request.
        raise StoreError(f"{where}: entity is {wire} bytes as sent, over the 1 MiB body limit")
    return out


def entity_size(entity: Mapping[str, Any]) -> int:
    """Approximate size on the wire (JSON, binary as base64) of an encoded entity."""
    size = 64
    for name, value in entity.items():
        size += len(name) + 8
        if isinstance(value, bytes):
            size += (len(value) + 2) // 3 * 4 + 40
        elif isinstance(value, str):
            size += len(json.dumps(value))  # as the SDK sends it (ASCII, escaped)
        else:
            size += 40
    return size


def split_batches(
    table: str, operations: Sequence[tuple[str, dict[str, Any], dict[str, Any]]]
) -> Iterator[list[tuple[str, dict[str, Any], dict[str, Any]]]]:
    """Group operations of ONE partition into valid batches (<= 100 ops, <= 4 MiB, unique rows).

    Operations on several partitions, or the same row twice, are a StoreError: the caller
    decides how to group, the limits module only refuses what the service would refuse.
    """
    if not operations:
        return
    partition = operations[0][1]["PartitionKey"]
    rows: set[str] = set()
    batch: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    batch_bytes = 0
    for operation in operations:
        entity = operation[1]
        if entity["PartitionKey"] != partition:
            raise StoreError(
                f"{table}: a batch must stay in one partition "
                f"({partition!r} and {entity['PartitionKey']!r})"
            )
        if entity["RowKey"] in rows:
            raise StoreError(f"{table}: row {entity['RowKey']!r} appears twice in one batch")
        rows.add(entity["RowKey"])
        size = entity_size(entity)
        if size > MAX_BATCH_BYTES:
            raise StoreError(f"{table}: one entity is over the 4 MiB batch payload")
        if batch and (len(batch) >= MAX_BATCH_OPERATIONS or batch_bytes + size > MAX_BATCH_BYTES):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(operation)
        batch_bytes += size
    if batch:
        yield batch
