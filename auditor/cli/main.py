"""`python -m auditor COMMAND`: the command line.

Exit codes for schedulers and CI (DESIGN §4): 0 compliant, 1 at least one `fail`, 2 bad input
or configuration (the message says what and where), 3 no `fail` but some evidence `unknown`.

Each command lives in `auditor/commands/<name>.py` with `register(subparsers)`; the parser is
built from `COMMANDS` so commands stay independent of each other.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from auditor.core.errors import AuditorError, InputError
from auditor.reports.findings import FORMATS

__all__ = [
    "main",
    "add_output_options",
    "write_output",
    "EXIT_OK",
    "EXIT_FAIL",
    "EXIT_INPUT",
    "EXIT_UNKNOWN",
]

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_UNKNOWN = 0, 1, 2, 3

# Command modules under auditor.commands, in the order `--help` lists them.
COMMANDS = (
    "evaluate",
    "snapshot",
    "audit",
    "runs",
    "history",
    "show",
    "replay",
    "mailboxes",
    "check",
    "apply-allowlist",
    "remediations",
)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m auditor",
        description="SMTP AUTH auditor for Exchange Online.",
        epilog="Exit codes: 0 compliant, 1 fail, 2 bad input or configuration, 3 evidence unknown.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"auditor.cli.commands.{name.replace('-', '_')}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except AuditorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    return code
