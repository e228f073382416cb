"""`runs`: the recorded audits, newest first, with their counts, changes and errors."""

from __future__ import annotations

import argparse
from typing import Any

from auditor.app.settings import Settings
from auditor.app.wiring import store_from_settings
from auditor.cli.options import add_output_options, width, write_output
from auditor.core.errors import InputError
from auditor.reports.history import render_runs


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "runs",
        help="list recorded audit runs, newest first (AUDITOR_STORAGE)",
        description="List the audit runs recorded in AUDITOR_STORAGE, newest first.",
    )
    parser.add_argument("--limit", type=int, default=30, help="at most this many (default 30)")
    add_output_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 10_000:
        raise InputError("--limit", "must be between 1 and 10000")
    store = store_from_settings(Settings.from_env())
    write_output(
        render_runs(store.runs(limit=args.limit), args.format, width=width(args)), args.out
    )
    return 0
