"""Stream a top-level JSON object whose big members are arrays, one element at a time.

A million-mailbox snapshot is hundreds of megabytes of JSON; holding the text and every parsed
dictionary at once would need several gigabytes. This reader keeps one chunk of text and one
element in memory, hands each element of the chosen arrays to a callback, and returns the other
members as a plain dictionary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from typing import Any, TextIO

__all__ = ["StreamError", "read_object"]

_WS = re.compile(r"[ \t\n\r]*")
_CHUNK = 1 << 20
_MAX_CUT = 1 << 16
_MAX_TRIES = 64
_MIN_RUN = 1 << 14  # the shortest run worth a typed decode


class StreamError(ValueError):
    """Malformed JSON; `where` names the member or element, `line` the line in the file."""

    def __init__(self, message: str, *, where: str = "", line: int = 0) -> None:
        self.where = where
        self.line = line
        super().__init__(message)


class _Reader:
    def __init__(self, handle: TextIO) -> None:
        self.handle = handle
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line_base = 1  # line number of buf[0]
        self.offset = 0  # position of buf[0] in the whole text
        self.decoder = json.JSONDecoder()

    def line(self) -> int:
        return self.line_base + self.buf.count("\n", 0, self.pos)

    def fill(self) -> bool:
        if self.eof:
            return False
        data = self.handle.read(_CHUNK)
        if not data:
            self.eof = True
            return False
        if self.buf.find("\n", 0, self.pos) >= 0:  # a fast scan; compact JSON has none
            self.line_base += self.buf.count("\n", 0, self.pos)
        self.offset += self.pos
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return True

    def peek(self) -> str:
        while True:
            match = _WS.match(self.buf, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def take(self, expected: str, where: str) -> str:
        char = self.peek()
        if char not in expected:
            found = repr(char) if char else "end of file"
            raise StreamError(
                f"expected {' or '.join(repr(c) for c in expected)}, found {found}",
                where=where,
                line=self.line(),
            )
        self.pos += 1
        return char

    def run_end(self, limit: int) -> int | None:
        """Where a run of whole array elements starting at `pos` may end: just after a `}`
        followed by `,` or `]`, at most `limit` characters on (refilling the buffer first).
        Only a candidate: the `}` may sit in a string or a nested value, which the typed decode
        of the run then refuses."""
        if len(self.buf) - self.pos < limit and not self.eof:
            self.fill()
        buf, start = self.buf, self.pos
        end = min(len(buf), start + limit)
        for _ in range(_MAX_TRIES):
            brace = buf.rfind("}", start, end)
            if brace < 0:
                return None
            after = _WS.match(buf, brace + 1)
            follow = after.end() if after else brace + 1
            if follow < len(buf) and buf[follow] in ",]":
                return brace + 1
            end = brace
        return None

    def value(self, where: str) -> Any:
        self.peek()
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # Only an error near the end of the buffer can be a value cut by the chunk
                # boundary; anything earlier is garbage, reported now rather than after
                # reading (and re-parsing) the rest of the file.
                if exc.pos >= len(self.buf) - _MAX_CUT and self.fill():
                    continue
                raise StreamError(
                    f"not JSON: {exc.msg}", where=where, line=self.line_base + exc.lineno - 1
                ) from exc
            # A number that ends exactly at the end of the buffer may continue in the next chunk.
            if end == len(self.buf) and not self.eof and self.fill():
                continue
            self.pos = end
            return obj


def _run(
    reader: _Reader, key: str, index: int, on_run: Callable[[str, int, str], int | None]
) -> tuple[int | None, int]:
    """Offer the elements ahead as one run. A run that is not well-formed (it reaches past the
    end of the array, or holds garbage) is halved and offered again; a run refused for its
    content is read element by element. Returns (elements taken or None, tolerant-until)."""
    limit = _CHUNK
    while True:
        cut = reader.run_end(limit)
        if cut is None:
            return None, -1
        taken = on_run(key, index, reader.buf[reader.pos : cut])
        if taken is not None and taken >= 0:
            reader.pos = cut
            return taken, -1
        limit = (cut - reader.pos) // 2
        if taken is None or limit < _MIN_RUN:
            return None, reader.offset + cut


def read_object(
    handle: TextIO,
    *,
    streamed: Collection[str],
    on_item: Callable[[str, int, Any], None],
    on_run: Callable[[str, int, str], int | None] | None = None,
) -> dict[str, Any]:
    """Read one JSON object from `handle`.

    For members named in `streamed` whose value is an array, each element is passed to
    `on_item(member, index, element)` and the member's value in the result is the element
    count (an int). Every other member is returned as parsed.

    With `on_run`, the elements of a streamed array are offered first as runs of text
    (`{...},{...}`, about a chunk at a time): `on_run(member, index, text)` decodes them all
    and returns how many there were; -1 when the text is not well-formed JSON (a shorter run
    is offered, and in the end the stretch is read element by element, so garbage is reported
    precisely); None to have the stretch read element by element through `on_item`.
    """
    reader = _Reader(handle)
    if reader.peek() != "{":
        raise StreamError("not a JSON object", line=reader.line())
    reader.take("{", "document")
    document: dict[str, Any] = {}
    if reader.peek() == "}":
        reader.pos += 1
    else:
        while True:
            key = reader.value("document")
            if not isinstance(key, str):
                raise StreamError("expected a member name", line=reader.line())
            reader.take(":", key)
            if key in streamed and reader.peek() == "[":
                reader.pos += 1
                count = 0
                if reader.peek() == "]":
                    reader.pos += 1
                else:
                    tolerant_until = -1  # position up to which elements go one at a time
                    while True:
                        taken = None
                        if on_run is not None and reader.offset + reader.pos >= tolerant_until:
                            taken, tolerant_until = _run(reader, key, count, on_run)
                        if taken is None:
                            on_item(key, count, reader.value(f"{key}[{count}]"))
                            count += 1
                        else:
                            count += taken
                        if reader.take(",]", f"{key}[{count - 1}]") == "]":
                            break
                document[key] = count
            else:
                document[key] = reader.value(key)
            if reader.take(",}", key) == "}":
                break
    if reader.peek() != "":
        raise StreamError("extra data after the JSON object", line=reader.line())
    return document
