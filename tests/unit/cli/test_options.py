"""`--as`: a literal token, an existing file, `@file`, or `-`; a path that names nothing is an
error (exit 2), never a token."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.cli.options import read_token
from auditor.core.errors import InputError


def test_literal_token_is_taken_as_is() -> None:
    assert read_token("eyJhbGciOi.payload.sig") == "eyJhbGciOi.payload.sig"


def test_existing_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "approver"
    path.write_text("abc\n", encoding="utf-8")
    assert read_token(str(path)) == "abc"
    assert read_token(f"@{path}") == "abc"


@pytest.mark.parametrize("value", ["./missing", "dir/token", "approver.token", "x.JWT", "@gone"])
def test_a_missing_path_is_an_input_error_naming_it(value: str) -> None:
    with pytest.raises(InputError) as caught:
        read_token(value)
    assert value.lstrip("@") in str(caught.value)
