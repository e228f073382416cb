"""Parse and validate the allowlist: the seed's text file, or a CSV with exception metadata.

Text: one mailbox identity per line (alias, address, UPN, name, GUID...), blank lines ignored,
`#` starts a comment (at the start of a line or after a space), surrounding spaces and CRLF
tolerated. CSV (`.csv`): a header row with `Identity` and optionally `Owner`, `Reason`,
`Ticket`, `Expires` (ISO date, valid through that UTC day). Encodings: UTF-8 with or without
BOM, UTF-16 with BOM (Windows PowerShell's `Out-File`).

Any error names the file and line, and nothing is loaded. A duplicate entry is a warning; the
first occurrence is kept.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from auditor.core.errors import InputError
from auditor.core.model import Allowlist, AllowlistEntry, Mailbox, normalise_identity

__all__ = [
    "read_allowlist",
    "load_allowlist",
    "LoadedAllowlist",
    "parse_allowlist",
    "CSV_COLUMNS",
    "Matches",
    "match",
    "find_mailboxes",
]

CSV_COLUMNS = ("Identity", "Owner", "Reason", "Ticket", "Expires")
_WILDCARDS = set("*?[]")


@dataclass(frozen=True, slots=True)
class LoadedAllowlist:
    """An allowlist as parsed, with the file's bytes (an audit stores them with its run)."""

    allowlist: Allowlist
    raw: bytes
    source: str


def load_allowlist(path: str | Path | None) -> LoadedAllowlist:
    """The one allowlist loader: the file at `path`, or an empty allowlist when there is none.

    Bad input raises `InputError` naming the file and line; nothing is half-loaded."""
    if path is None:
        return LoadedAllowlist(Allowlist(), b"", "")
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(name, f"cannot read allowlist: {exc.strerror or exc}") from exc
    parsed = parse_allowlist(raw, source=name, csv_format=name.lower().endswith(".csv"))
    return LoadedAllowlist(parsed, raw, name)


def read_allowlist(path: str | Path) -> Allowlist:
    return load_allowlist(path).allowlist


def _decode(raw: bytes, source: str) -> str:
    if raw.startswith(b"\xff\xfe") or raw.startswith(b"\xfe\xff"):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1 if encoding != "utf-16" else 0
        where = f"{source}:{line}" if line else source
        raise InputError(where, f"not valid {encoding} text; save the file as UTF-8") from exc


def parse_allowlist(
    raw: bytes, *, source: str = "<allowlist>", csv_format: bool = False
) -> Allowlist:
    text = _decode(raw, source)
    entries = _parse_csv(text, source) if csv_format else _parse_text(text, source)
    kept: dict[str, AllowlistEntry] = {}
    warnings: list[str] = []
    for entry in entries:
        first = kept.get(entry.key)
        if first is not None:
            warnings.append(
                f"{entry.where}: duplicate of line {first.line} ({entry.identity!r}); ignored"
            )
            continue
        kept[entry.key] = entry
    return Allowlist(entries=tuple(kept.values()), warnings=tuple(warnings), source=source)


def _check_identity(identity: str, where: str) -> str:
    if not identity:
        raise InputError(where, "empty identity")
    if _WILDCARDS & set(identity):
        raise InputError(
            where, f"wildcards are not allowed in the allowlist ({identity!r}); name each mailbox"
        )
    if any(ord(ch) < 32 for ch in identity):
        raise InputError(where, f"control character in identity {identity!r}")
    return identity


def _strip_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    for index, char in enumerate(line):
        if char == "#" and index > 0 and line[index - 1] in " \t":
            return line[:index]
    return line


def _parse_text(text: str, source: str) -> list[AllowlistEntry]:
    entries: list[AllowlistEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = _strip_comment(line).strip()
        if not content:
            continue
        where = f"{source}:{number}"
        entries.append(
            AllowlistEntry(identity=_check_identity(content, where), source=source, line=number)
        )
    return entries


def _parse_date(value: str, where: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(where, f"Expires must be an ISO date (YYYY-MM-DD), got {value!r}") from exc


def _parse_csv(text: str, source: str) -> list[AllowlistEntry]:
    lines = text.splitlines()
    # Skip leading comment and blank lines before the header.
    start = 0
    while start < len(lines) and (
        not lines[start].strip() or lines[start].lstrip().startswith("#")
    ):
        start += 1
    if start == len(lines):
        return []
    reader = csv.reader(io.StringIO("\n".join(lines[start:])))
    header = [cell.strip() for cell in next(reader)]
    known = {name.lower(): name for name in CSV_COLUMNS}
    columns: list[str] = []
    for cell in header:
        name = known.get(cell.lower())
        if name is None:
            raise InputError(
                f"{source}:{start + 1}",
                f"unknown column {cell!r}; expected {', '.join(CSV_COLUMNS)}",
            )
        if name in columns:
            raise InputError(f"{source}:{start + 1}", f"column {name!r} appears twice")
        columns.append(name)
    if "Identity" not in columns:
        raise InputError(f"{source}:{start + 1}", "header row has no 'Identity' column")
    entries: list[AllowlistEntry] = []
    for row in reader:
        number = start + reader.line_num
        where = f"{source}:{number}"
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) > len(columns):
            raise InputError(where, f"{len(cells)} cells but the header has {len(columns)}")
        values = dict(zip(columns, cells + [""] * (len(columns) - len(cells)), strict=True))
        expires = values.get("Expires") or ""
        entries.append(
            AllowlistEntry(
                identity=_check_identity(values["Identity"], where),
                source=source,
                line=number,
                owner=values.get("Owner") or None,
                reason=values.get("Reason") or None,
                ticket=values.get("Ticket") or None,
                expires=_parse_date(expires, where) if expires else None,
            )
        )
    return entries


@dataclass(frozen=True, slots=True)
class Matches:
    """Which allowlist entries name which mailboxes (case-insensitive, any accepted identity).

    `entries_of` maps `id(mailbox)` to the entries naming it; `mailboxes_of` maps an entry's
    key to the mailboxes it names. An entry naming several mailboxes is ambiguous and exempts
    none of them.
    """

    entries_of: dict[int, list[AllowlistEntry]]
    mailboxes_of: dict[str, list[Mailbox]]

    def ambiguous(self) -> dict[str, int]:
        return {key: len(boxes) for key, boxes in self.mailboxes_of.items() if len(boxes) > 1}

    def valid_entries(self, mailbox: Mailbox, today: date) -> list[AllowlistEntry]:
        """Current, unambiguous entries naming this mailbox."""
        return [
            entry
            for entry in self.entries_of.get(id(mailbox), ())
            if len(self.mailboxes_of[entry.key]) == 1 and entry.is_current(today)
        ]


def match(allowlist: Allowlist, mailboxes: Iterable[Mailbox]) -> Matches:
    by_key = {entry.key: entry for entry in allowlist.entries}
    keys = by_key.keys()
    entries_of: dict[int, list[AllowlistEntry]] = {}
    mailboxes_of: dict[str, list[Mailbox]] = {}
    for mailbox in mailboxes:
        if keys.isdisjoint(mailbox.match_keys):
            continue
        named = [by_key[key] for key in mailbox.match_keys if key in keys]
        entries_of[id(mailbox)] = named
        for entry in named:
            mailboxes_of.setdefault(entry.key, []).append(mailbox)
    return Matches(entries_of=entries_of, mailboxes_of=mailboxes_of)


def find_mailboxes(identity: str, mailboxes: Iterable[Mailbox]) -> list[Mailbox]:
    """Every mailbox that `identity` names, by any identity the allowlist accepts."""
    key = normalise_identity(identity)
    return [mailbox for mailbox in mailboxes if key in mailbox.match_keys]
