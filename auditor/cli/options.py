"""What every command shares: exit codes, `--format`/`--out`, writing output, reading a token."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from auditor.core.errors import InputError
from auditor.reports.findings import FORMATS

__all__ = [
    "add_output_options",
    "write_output",
    "read_token",
    "EXIT_OK",
    "EXIT_FAIL",
    "EXIT_INPUT",
    "EXIT_UNKNOWN",
]

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_UNKNOWN = 0, 1, 2, 3


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format")
    parser.add_argument("--out", type=Path, help="write to this file instead of standard output")


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


def read_token(value: str) -> str:
    """A token given literally, as `@file`/a path to a file holding it, or `-` for stdin."""
    if value == "-":
        return sys.stdin.readline().strip()
    path = Path(value[1:] if value.startswith("@") else value)
    try:
        is_file = value.startswith("@") or path.is_file()
    except OSError:  # a literal token is usually longer than a file name may be
        is_file = False
    if not is_file:
        return value.strip()
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(str(path), f"cannot read the token: {exc.strerror or exc}") from exc
