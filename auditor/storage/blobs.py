"""Evidence blobs: the raw snapshot document and the allowlist of a run, kept with the run.

`evidence` table: PartitionKey run key, RowKey `<name>.NNNN`; each entity holds up to
11 x 64 KiB of the zlib-compressed blob (`of` entities in all, `size` bytes uncompressed).
Rows are keyed by the run, so writing them again (a replayed run) writes the same rows.

A blob may be handed over already compressed (`core.evidence.Compressed`: the nightly audit
compresses its evidence page by page while it reads, docs/architecture.md "A nightly run");
it is stored as it is, in the same format, and read back the same way; its pieces are taken
over and freed as they are sent.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from auditor.core.errors import StoreError
from auditor.core.evidence import Compressed
from auditor.storage.limits import MAX_VALUE_BYTES
from auditor.storage.packing import CHUNKS_PER_ENTITY, compress, pack, take, unpack
from auditor.storage.tables import Table, bounded

__all__ = ["Blobs", "IncompleteBlob"]


class IncompleteBlob(StoreError):
    """Some of a blob's entities are missing or it does not decompress: a write cut short."""


class Blobs:
    """Named blobs per run key in one table."""

    def __init__(self, table: Table, *, workers: int = 4) -> None:
        self.table = table
        self.workers = workers

    def write(self, rkey: str, blobs: Mapping[str, bytes | Compressed]) -> int:
        """Compressed blobs in entities of up to 11 x 64 KiB; returns compressed bytes.

        Each blob is compressed a slice at a time (unless it comes compressed) and held once,
        compressed; an entity is built only when a worker is free to send it, so the entities
        of a 60 MB snapshot never all exist at once."""
        per_entity = CHUNKS_PER_ENTITY * MAX_VALUE_BYTES
        packed = {
            name: (data.release(), data.length)  # freed as sent
            if isinstance(data, Compressed)
            else compress(data)
            for name, data in blobs.items()
        }
        sizes = {
            name: data.size if isinstance(data, Compressed) else len(data)
            for name, data in blobs.items()
        }
        total = sum(length for _, length in packed.values())

        def entities() -> Iterator[dict[str, Any]]:
            for name, (chunks, length) in packed.items():
                count = max(1, -(-length // per_entity))
                for index in range(count):
                    yield {
                        "PartitionKey": rkey,
                        "RowKey": f"{name}.{index:04d}",
                        "of": count,
                        "size": sizes[name],
                        **pack(take(chunks, per_entity)),
                    }

        bounded(self.table.replace, entities(), workers=min(self.workers, 4))
        return total

    def read(self, rkey: str, name: str, what: str) -> bytes | None:
        """A blob stored under a run key, or None if there is none."""
        rows = self._rows(rkey, name, what)
        if rows is None:
            return None
        try:
            data = zlib.decompress(b"".join(unpack(row) for row in rows))
        except zlib.error as exc:
            raise IncompleteBlob(f"evidence {name} of run {what} is corrupt ({exc})") from exc
        if len(data) != int(rows[0]["size"]):
            raise IncompleteBlob(f"evidence {name} of run {what} is corrupt (size mismatch)")
        return data

    def lines(self, rkey: str, name: str, what: str) -> Iterator[bytes] | None:
        """A blob's lines (split at b"\n", which is dropped), decompressed as they are taken:
        never the whole blob at once. None if there is none. The same checks as `read`; a
        blob found corrupt raises `IncompleteBlob` when its end is reached, so what was taken
        from it must be dropped then."""
        rows = self._rows(rkey, name, what)
        if rows is None:
            return None
        return self._lines(rows, name, what)

    @staticmethod
    def _lines(rows: list[dict[str, Any]], name: str, what: str) -> Iterator[bytes]:
        size = int(rows[0]["size"])
        inflate = zlib.decompressobj()
        seen = 0

        def inflated() -> Iterator[bytes]:
            nonlocal seen
            rows.reverse()
            try:
                while rows:  # each entity's bytes are freed once inflated
                    chunk = inflate.decompress(unpack(rows.pop()))
                    seen += len(chunk)
                    yield chunk
                chunk = inflate.flush()
            except zlib.error as exc:
                raise IncompleteBlob(f"evidence {name} of run {what} is corrupt ({exc})") from exc
            seen += len(chunk)
            fault = None
            if not inflate.eof:
                fault = "cut short"
            elif inflate.unused_data:
                fault = "bytes after its end"
            elif seen != size:
                fault = "size mismatch"
            if fault is not None:
                raise IncompleteBlob(f"evidence {name} of run {what} is corrupt ({fault})")
            yield chunk

        pending: list[bytes] = []  # the line not ended yet, in pieces
        for chunk in inflated():
            if b"\n" not in chunk:
                pending.append(chunk)
                continue
            first, *middle, last = chunk.split(b"\n")
            yield b"".join((*pending, first))
            yield from middle
            pending = [last]
        yield b"".join(pending)  # the last line, once the blob is known whole

    def _rows(self, rkey: str, name: str, what: str) -> list[dict[str, Any]] | None:
        """A blob's entities in order, all of them, or None if there is none."""
        rows = sorted(
            self.table.rows_between(rkey, f"{name}.", f"{name}.~"),
            key=lambda e: str(e["RowKey"]),
        )
        if not rows:
            return None
        if len(rows) != int(rows[0]["of"]):
            raise IncompleteBlob(f"evidence {name} of run {what} is incomplete ({len(rows)} parts)")
        return rows
