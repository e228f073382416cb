"""Allowlist parsing: the seed's text file unchanged, CSV with metadata, exact errors."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from auditor.core.allowlist import parse_allowlist, read_allowlist
from auditor.core.errors import InputError


def identities(raw: bytes, csv_format: bool = False) -> list[str]:
    return [e.identity for e in parse_allowlist(raw, source="a", csv_format=csv_format).entries]


def test_seed_text_file_with_comments_blank_lines_crlf_and_spaces() -> None:
    raw = (
        b"# approved senders\r\n\r\n  scanner@contoso.com  \r\n"
        b"erp   # ERP app\r\n\t\r\nDoe, John\r\n"
    )
    assert identities(raw) == ["scanner@contoso.com", "erp", "Doe, John"]


@pytest.mark.parametrize(
    "raw",
    [
        b"scanner@contoso.com\nerp\n",
        b"\xef\xbb\xbf" + b"scanner@contoso.com\nerp\n",  # UTF-8 BOM
        "\ufeffscanner@contoso.com\r\nerp\r\n".encode("utf-16-le"),  # PowerShell Out-File
        "\ufeffscanner@contoso.com\r\nerp\r\n".encode("utf-16-be"),
    ],
)
def test_encodings(raw: bytes) -> None:
    assert identities(raw) == ["scanner@contoso.com", "erp"]


def test_hash_inside_an_identity_is_kept() -> None:
    assert identities(b"room#4@contoso.com\n") == ["room#4@contoso.com"]


@pytest.mark.parametrize("identity", ["*@contoso.com", "scan?r", "user[12]"])
def test_wildcards_are_errors_with_file_and_line(identity: str) -> None:
    with pytest.raises(InputError) as info:
        parse_allowlist(f"ok@contoso.com\n{identity}\n".encode(), source="allow.txt")
    assert str(info.value).startswith("allow.txt:2:")
    assert "wildcard" in str(info.value)


def test_invalid_utf8_is_an_error_naming_the_line() -> None:
    with pytest.raises(InputError, match=r"allow.txt:2: not valid utf-8"):
        parse_allowlist(b"ok\ncaf\xe9\n", source="allow.txt")


def test_duplicates_warn_and_keep_the_first() -> None:
    allow = parse_allowlist(b"erp\nscanner\nERP\n", source="allow.txt")
    assert [e.identity for e in allow.entries] == ["erp", "scanner"]
    assert allow.warnings == ("allow.txt:3: duplicate of line 1 ('ERP'); ignored",)


def test_csv_with_metadata() -> None:
    raw = (
        b"# exceptions approved by the CAB\n"
        b"Identity,Owner,Reason,Ticket,Expires\n"
        b'scanner@contoso.com,facilities@contoso.com,"Scan, to email",CHG1,2027-06-30\n'
        b"erp,,,,\n"
        b",,,,\n"
    )
    allow = parse_allowlist(raw, source="a.csv", csv_format=True)
    first, second = allow.entries
    assert (first.owner, first.reason, first.ticket, first.expires) == (
        "facilities@contoso.com",
        "Scan, to email",
        "CHG1",
        date(2027, 6, 30),
    )
    assert first.line == 3 and second.line == 4
    assert second.expires is None and second.owner is None


def test_csv_header_case_and_order_free_identity_only() -> None:
    raw = b"expires,IDENTITY\n2027-01-01,erp\n"
    [entry] = parse_allowlist(raw, source="a.csv", csv_format=True).entries
    assert (entry.identity, entry.expires) == ("erp", date(2027, 1, 1))


@pytest.mark.parametrize(
    ("raw", "where", "message"),
    [
        (b"Identity,Department\nerp,IT\n", "a.csv:1", "unknown column 'Department'"),
        (b"Owner\nops\n", "a.csv:1", "no 'Identity' column"),
        (b"Identity,Expires\nerp,2027-13-01\n", "a.csv:2", "Expires must be an ISO date"),
        (b"Identity,Expires\nerp,31/12/2027\n", "a.csv:2", "Expires must be an ISO date"),
        (b"Identity\nerp\n*@contoso.com\n", "a.csv:3", "wildcards"),
        (b"Identity,Owner\nerp,ops,extra\n", "a.csv:2", "3 cells"),
        (b"Identity,Owner\n,ops\n", "a.csv:2", "empty identity"),
    ],
)
def test_csv_errors_name_file_and_line(raw: bytes, where: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_allowlist(raw, source="a.csv", csv_format=True)
    assert info.value.where == where
    assert message in info.value.detail


def test_read_allowlist_picks_csv_by_extension(tmp_path: Path) -> None:
    path = tmp_path / "allow.CSV"
    path.write_bytes(b"Identity,Owner\nerp,ops\n")
    assert read_allowlist(path).entries[0].owner == "ops"
    with pytest.raises(InputError, match="cannot read allowlist"):
        read_allowlist(tmp_path / "missing.txt")
