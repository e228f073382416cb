"""Packed JSON of the state buckets: what `compact_json` writes, `read_packed` reads back,
whichever encoder wrote it."""

from __future__ import annotations

import json
import zlib

import pytest

from auditor.storage.packing import compact_json, read_packed

DOCUMENTS = [
    {"a": ["null", "user@contoso.com", None, 3, True]},
    {"ü": ["Zoë", "李雷", "\u212aelvin", "\x7f"]},
    {"k": ["a lone surrogate \udc80 as Exchange may send it"]},  # written by json, escaped
    {},
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_what_is_packed_reads_back_the_same(document: dict[str, list[object]]) -> None:
    content = zlib.compress(compact_json(document), 1)
    assert read_packed(content) == document


def test_a_lone_surrogate_is_read_by_json_where_msgspec_refuses_it() -> None:
    written = json.dumps({"k": ["\udc80"]}).encode("ascii")
    assert read_packed(zlib.compress(written)) == {"k": ["\udc80"]}
