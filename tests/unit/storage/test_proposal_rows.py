"""Packed proposal rows (compact JSON, zlib) read back as written, whatever the text."""

from __future__ import annotations

from auditor.storage.proposal_rows import pack, unpack


def test_packed_rows_read_back_whatever_the_text() -> None:
    document = [{"display": "m\ud800", "reason": "é\x7f\u2028", "n": [1, None, True]}]
    assert unpack(pack(document)) == document
    assert unpack(pack({"plain": "ascii"})) == {"plain": "ascii"}
