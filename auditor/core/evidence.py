"""The evidence of one audit: the snapshot document serialised once, stored and judged as is.

`run_audit` stores these bytes and builds the Snapshot it evaluates from the same bytes
(`read_evidence`, streamed), so what is stored is by construction what was judged. The format
is `json.dumps(document, separators=(",", ":"), ensure_ascii=False)` in UTF-8.

Memory is the point of this module: a 100,000-mailbox tenant is ~60 MB of JSON but ~270 MB of
parsed dictionaries. `ListingEncoder` encodes a listing page by page as it is read (the
collector never holds the records), `encode_document` encodes a document already in memory
member by member and lets each listing go once encoded, and `read_evidence` streams the bytes
so the raw records and the typed mailboxes are never all alive at once.

The nightly audit goes further (issue 17, docs/architecture.md "A nightly run"):
`EvidenceStream` encodes each page once, compresses those bytes into the stored evidence at
once (`Compressed`, the zlib stream `storage.blobs` stores) and joins the same bytes into the
snapshot (`snapshot.PageJoiner`) while the reads page. The uncompressed evidence is never held
whole, and after the last page only the join's finish, the screen and the evaluation remain.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, BinaryIO

from auditor.core.model import Snapshot
from auditor.core.snapshot import PageJoiner, read_stream

__all__ = [
    "Compressed",
    "EvidenceStream",
    "ListingEncoder",
    "StreamedEvidence",
    "encode_document",
    "inflate",
    "read_evidence",
]

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


def read_evidence(raw: bytes | Compressed, *, source: str) -> Snapshot:
    """The Snapshot of evidence bytes (or of compressed evidence, inflated as it is read),
    streamed: a chunk of text at a time, never the whole text decoded. Raises InputError naming
    `source` and the record at fault."""
    binary: BinaryIO = (
        io.BufferedReader(_Inflating(raw), buffer_size=_SLICE_BYTES)
        if isinstance(raw, Compressed)
        else io.BytesIO(raw)
    )
    handle = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    try:
        return read_stream(handle, source)
    finally:
        handle.detach()


# -- compressed evidence, built while the reads page -------------------------------------------

_LEVEL = 1  # as storage.packing.compress: 4x faster than 6 and only ~10% larger
_SLICE_BYTES = 1 << 20
_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, the fastest level (RFC 1950)
_ADLER_BASE = 65521


class Compressed:
    """Evidence as a zlib stream (RFC 1950, what `zlib.decompress` reads) in pieces, and the
    length of what it inflates to. `storage.blobs.Blobs.write` stores it as it is and takes
    the pieces over (`release`), so they are freed as they are sent, before the recording's
    diff grows (docs/architecture.md, "Performance")."""

    __slots__ = ("_chunks", "length", "size")

    def __init__(self, chunks: Iterable[bytes], size: int) -> None:
        self._chunks = deque(chunks)
        self.size = size  # bytes once inflated
        self.length = sum(len(chunk) for chunk in self._chunks)  # compressed bytes

    @property
    def chunks(self) -> tuple[bytes, ...]:
        """The pieces still held (none once released)."""
        return tuple(self._chunks)

    def release(self) -> deque[bytes]:
        """Hand the pieces over (the one who stores them consumes them): this holds none."""
        chunks, self._chunks = self._chunks, deque()
        return chunks

    def __repr__(self) -> str:
        return f"Compressed(length={self.length}, size={self.size})"


def inflate(evidence: bytes | Compressed) -> bytes:
    """The evidence bytes (for tests and tools; the audit never holds them whole)."""
    if isinstance(evidence, bytes):
        return evidence
    return zlib.decompress(b"".join(evidence.chunks))


class _Inflating(io.RawIOBase):
    """A readable stream of the bytes a `Compressed` inflates to, a slice at a time."""

    def __init__(self, compressed: Compressed) -> None:
        self._chunks = iter(compressed.chunks)
        self._inflater = zlib.decompressobj()
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            if self._inflater.unconsumed_tail:
                self._pending = self._inflater.decompress(
                    self._inflater.unconsumed_tail, _SLICE_BYTES
                )
                continue
            chunk = next(self._chunks, None)
            if chunk is None:
                self._pending = self._inflater.flush()
                if not self._pending:
                    return 0
                break
            self._pending = self._inflater.decompress(chunk, _SLICE_BYTES)
        size = min(len(view), len(self._pending))
        view[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two byte strings joined, from theirs (zlib's adler32_combine)."""
    rem = second_length % _ADLER_BASE
    sum1 = first & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 = (sum1 + (second & 0xFFFF) + _ADLER_BASE - 1) % _ADLER_BASE
    sum2 = (sum2 + ((first >> 16) & 0xFFFF) + ((second >> 16) & 0xFFFF) + _ADLER_BASE - rem) % (
        _ADLER_BASE
    )
    return sum1 | (sum2 << 16)


class _Segment:
    """A stretch of the document as raw deflate that ends on a byte boundary (a sync flush,
    never a final block): segments compressed apart, even at the same time in two threads,
    join into one deflate stream. Each keeps the Adler-32 and length of what it holds."""

    def __init__(self) -> None:
        self._deflater = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        self.chunks: list[bytes] = []
        self.adler = 1
        self.size = 0

    def write(self, data: bytes) -> None:
        self.adler = zlib.adler32(data, self.adler)
        self.size += len(data)
        out = self._deflater.compress(data)
        if out:
            self.chunks.append(out)

    def close(self, *, last: bool = False) -> None:
        self.chunks.append(self._deflater.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))


class _StreamedListing:
    """One listing: each page encoded once; the bytes compressed into its segment (`[...]`)
    and handed to the joiner."""

    def __init__(self, member: str, joiner: PageJoiner | None) -> None:
        self.member = member
        self.joiner = joiner
        self.segment = _Segment()
        self.segment.write(b"[")
        self.count = 0

    def add(self, records: Sequence[Any]) -> None:
        if not records:
            return
        run = _dumps(list(records))[1:-1]
        self.segment.write(b"," + run if self.count else run)
        self.count += len(records)
        if self.joiner is not None:
            self.joiner.add_page(self.member, run, len(records))


class EvidenceStream:
    """The evidence of one collection, built while its reads page (issue 17).

    `sink(member)` is the `on_page` of a listing's read (`cas_mailboxes`, `mailboxes`): each
    page is encoded once (`json.dumps` compact, as `encode_document`), compressed into that
    listing's part of the evidence and joined into the snapshot. The two listings may page in
    two threads at once. `failed(member)` drops a read that failed (its member is `null`,
    never a shorter list). `finish(document)` puts the document together: the stored evidence
    is `zlib` of exactly `encode_document(document)` with the listings read, and the snapshot
    is built from the bytes in it.
    """

    LISTINGS = ("cas_mailboxes", "mailboxes")

    def __init__(self, source: str, *, join: bool = True) -> None:
        self.source = source
        self.joiner = PageJoiner(source) if join else None
        self._listings = {m: _StreamedListing(m, self.joiner) for m in self.LISTINGS}
        self._failed: set[str] = set()

    def sink(self, member: str) -> Callable[[Sequence[Any]], None]:
        return self._listings[member].add

    def count(self, member: str) -> int:
        return self._listings[member].count

    def failed(self, member: str) -> None:
        """The read of `member` failed: it is stored as `null`. Pages of the directory listing
        already joined would pair with CAS records, so the join is given up and the snapshot
        is read from the evidence (a failed CAS read leaves no mailboxes to judge at all)."""
        self._failed.add(member)
        if member != "cas_mailboxes" and self.joiner is not None and self.count(member):
            self.joiner.spoil(f"the read of {member} failed after some pages")

    def finish(self, document: dict[str, Any]) -> StreamedEvidence:
        """`document` is the `snapshot_document` of the collection; its listing members are
        written from the pages (or `null` for a read that failed), whatever they hold."""
        chunks: list[bytes] = [_ZLIB_HEADER]
        adler, size = 1, 0

        def add(segment: _Segment) -> None:
            nonlocal adler, size
            chunks.extend(segment.chunks)
            segment.chunks = []  # held once: by the Compressed
            adler = _adler32_combine(adler, segment.adler, segment.size)
            size += segment.size

        text = _Segment()
        text.write(b"{")
        for index, key in enumerate(list(document)):
            if index:
                text.write(b",")
            text.write(_dumps(key) + b":")
            listing = self._listings.get(key)
            if listing is None or key in self._failed:
                text.write(_dumps(None if listing is not None else document[key]))
                continue
            text.close()
            add(text)
            listing.segment.write(b"]")
            listing.segment.close()
            add(listing.segment)
            text = _Segment()
        text.write(b"}")
        text.close(last=True)
        add(text)
        chunks.append(struct.pack(">I", adler))
        placeholders = {
            key: (None if key in self._failed else []) if key in self._listings else value
            for key, value in document.items()
        }
        joiner, self.joiner = self.joiner, None
        return StreamedEvidence(Compressed(chunks, size), joiner, placeholders, self.source)


class StreamedEvidence:
    """What `EvidenceStream` collected: the stored evidence and the snapshot joined from it."""

    def __init__(
        self,
        evidence: Compressed,
        joiner: PageJoiner | None,
        document: dict[str, Any],
        source: str,
    ) -> None:
        self.evidence = evidence
        self.source = source
        self.joiner = joiner  # its `spoilt` says why the join was not used
        self._document = document
        self.joined = False  # whether `snapshot()` came from the join (else: the evidence read)

    def snapshot(self) -> Snapshot:
        """The Snapshot of the evidence: the pages joined while they were read (its finish),
        or, when the join was spoilt, the stored evidence read again (`read_evidence`, which
        raises InputError naming the record at fault). Once only: the join hands its records
        over."""
        joined = self.joiner.snapshot(self._document) if self.joiner is not None else None
        if joined is not None:
            self.joined = True
            return joined
        return read_evidence(self.evidence, source=self.source)
