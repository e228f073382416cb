"""The evidence of one audit: the snapshot document serialised once, stored and judged as is.

`run_audit` stores these bytes and builds the Snapshot it evaluates from the same bytes
(`read_evidence`, streamed), so what is stored is by construction what was judged. The format
is `json.dumps(document, separators=(",", ":"), ensure_ascii=False)` in UTF-8.

Memory is the point of this module: a 100,000-mailbox tenant is ~60 MB of JSON but ~270 MB of
parsed dictionaries. `ListingEncoder` encodes a listing page by page as it is read (the
collector never holds the records), `encode_document` encodes a document already in memory
member by member and lets each listing go once encoded, and `read_evidence` streams the bytes
so the raw records and the typed mailboxes are never all alive at once.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from auditor.core.model import Snapshot
from auditor.core.snapshot import read_stream

__all__ = ["ListingEncoder", "encode_document", "read_evidence"]

_SEPARATORS = (",", ":")
_SLICE = 1000  # records encoded at a time when a listing is already in memory


def _dumps(value: Any) -> bytes:
    text = json.dumps(value, separators=_SEPARATORS, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate read from Exchange: kept, as a JSON escape (`\udc80`), so the
        # evidence stays what was read; `screen` names the record (issue 13).
        return json.dumps(value, separators=_SEPARATORS, ensure_ascii=True).encode("ascii")


class ListingEncoder:
    """A JSON array encoded a page at a time: `add` each page's records as they arrive."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []  # the elements of each page, comma-joined, no brackets
        self.count = 0

    def add(self, records: Sequence[Any]) -> None:
        if records:
            self.chunks.append(_dumps(list(records))[1:-1])
            self.count += len(records)

    def write_to(self, out: io.BytesIO) -> None:
        """Write `[...]` and give up the chunks as they are copied."""
        out.write(b"[")
        chunks, self.chunks = self.chunks, []
        chunks.reverse()
        first = True
        while chunks:
            if not first:
                out.write(b",")
            out.write(chunks.pop())
            first = False
        out.write(b"]")


def encode_document(
    document: dict[str, Any], *, listings: Mapping[str, ListingEncoder] | None = None
) -> bytes:
    """`document` as `json.dumps(document, separators=(",", ":"), ensure_ascii=False)` in
    UTF-8, byte for byte, built member by member.

    A member named in `listings` is written from its encoder instead of its value. A member
    whose value is a list is encoded a slice at a time and then set to None in `document`, so
    its records can be freed before the next member is encoded: `document` is spent afterwards.
    """
    listings = listings or {}
    out = io.BytesIO()
    out.write(b"{")
    for index, key in enumerate(list(document)):
        if index:
            out.write(b",")
        out.write(_dumps(key))
        out.write(b":")
        if key in listings:
            listings[key].write_to(out)
            continue
        value = document[key]
        if isinstance(value, list):
            encoder = ListingEncoder()
            for start in range(0, len(value), _SLICE):
                encoder.add(value[start : start + _SLICE])
            document[key] = None
            del value
            encoder.write_to(out)
        else:
            out.write(_dumps(value))
    out.write(b"}")
    return out.getvalue()  # no copy: BytesIO hands over its buffer


def read_evidence(raw: bytes, *, source: str) -> Snapshot:
    """The Snapshot of evidence bytes, streamed (a chunk of text at a time, never the whole
    text decoded). Raises InputError naming `source` and the record at fault."""
    handle = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline="")
    try:
        return read_stream(handle, source)
    finally:
        handle.detach()
