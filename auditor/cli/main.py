"""`python -m auditor COMMAND`: the command line.

Exit codes for schedulers and CI (README): 0 compliant, 1 at least one `fail`, 2 bad input
or configuration (the message says what and where), 3 no `fail` but some evidence `unknown`.

Each command lives in `auditor/cli/commands/<name>.py` with `register(subparsers)`; shared
options and exit codes are in `auditor.cli.options`, so commands never import this module.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from auditor.cli.commands import (
    apply_allowlist,
    audit,
    check,
    evaluate,
    history,
    mailboxes,
    remediations,
    replay,
    runs,
    show,
    snapshot,
)
from auditor.cli.options import EXIT_INPUT, EXIT_UNKNOWN
from auditor.core.errors import AuditorError, InputError

__all__ = ["main", "build_parser", "EXIT_PIPE"]

# 128 + SIGPIPE, what a shell reports for a writer whose reader went away.
EXIT_PIPE = 141

# The commands, in the order `--help` lists them; each module has `register(subparsers)`.
COMMANDS = (
    evaluate,
    snapshot,
    audit,
    runs,
    history,
    show,
    replay,
    mailboxes,
    check,
    apply_allowlist,
    remediations,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m auditor",
        description="SMTP AUTH auditor for Exchange Online.",
        epilog="Exit codes: 0 compliant, 1 fail, 2 bad input or configuration, 3 evidence unknown.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # inside the try: the reader may be gone before the last bytes
    except BrokenPipeError:
        # `... | head`: the reader left. Exit quietly, as other shell tools do, and keep Python
        # from complaining again when it flushes standard output at exit.
        _silence_stdout()
        return EXIT_PIPE
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except AuditorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    return code


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
