"""What every command shares: exit codes, `--format`/`--out`, writing output, reading a token."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from auditor.core.errors import InputError
from auditor.reports.findings import FORMATS
from auditor.reports.text import DEFAULT_WIDTH

__all__ = [
    "add_output_options",
    "write_output",
    "read_token",
    "width",
    "EXIT_OK",
    "EXIT_FAIL",
    "EXIT_INPUT",
    "EXIT_UNKNOWN",
]

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_UNKNOWN = 0, 1, 2, 3


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format")
    parser.add_argument("--out", type=Path, help="write to this file instead of standard output")


def width(args: argparse.Namespace) -> int:
    """Columns for text output: the terminal's (or `COLUMNS`) on standard output, 100 in a file."""
    if getattr(args, "out", None) is not None:
        return DEFAULT_WIDTH
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def write_output(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(str(out), f"cannot write output: {exc.strerror or exc}") from exc


_TOKEN_FILE_SUFFIXES = (".txt", ".token", ".jwt")


def read_token(value: str) -> str:
    """A token given literally, as `@file` or the path of an existing file, or `-` for stdin.

    A value that looks like a path (it contains `/` or ends in .txt, .token or .jwt) but names
    no file is an error naming it, never sent as a literal token.
    """
    if value == "-":
        return sys.stdin.readline().strip()
    explicit = value.startswith("@")
    path = Path(value[1:] if explicit else value)
    try:
        exists = path.is_file()
    except OSError:  # a literal token is usually longer than a file name may be
        exists = False
    looks_like_path = explicit or "/" in value or value.lower().endswith(_TOKEN_FILE_SUFFIXES)
    if not exists:
        if looks_like_path:
            named = value[1:] if explicit else value
            raise InputError(named, "no such token file (give the token, @FILE or -)")
        return value.strip()
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(str(path), f"cannot read the token: {exc.strerror or exc}") from exc
