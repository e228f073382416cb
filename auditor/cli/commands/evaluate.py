"""`evaluate`: judge a snapshot file against an allowlist, offline."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from auditor.cli.options import add_output_options, width, write_output
from auditor.core.allowlist import read_allowlist
from auditor.core.errors import InputError
from auditor.core.model import Allowlist
from auditor.core.policy import DEFAULT_EXPIRING_DAYS, evaluate
from auditor.core.snapshot import read_snapshot
from auditor.reports.findings import render


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "evaluate",
        help="evaluate a snapshot file against an allowlist (no network)",
        description="Evaluate a smtp-auth-snapshot/1 file against an allowlist. No network.",
    )
    parser.add_argument("--snapshot", type=Path, required=True, help="snapshot JSON file")
    parser.add_argument("--allowlist", type=Path, help="allowlist (.txt or .csv)")
    parser.add_argument("--today", help="evaluate as of this UTC date (YYYY-MM-DD)")
    parser.add_argument(
        "--expiring-days",
        type=int,
        default=DEFAULT_EXPIRING_DAYS,
        help="warn this many days before an exception expires (default %(default)s)",
    )
    add_output_options(parser)
    parser.set_defaults(func=run)


def parse_today(value: str | None) -> date:
    if value is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InputError("--today", f"must be YYYY-MM-DD, got {value!r}") from exc


def run(args: argparse.Namespace) -> int:
    today = parse_today(args.today)
    if args.expiring_days < 0:
        raise InputError("--expiring-days", "must not be negative")
    allowlist = read_allowlist(args.allowlist) if args.allowlist else Allowlist()
    snapshot = read_snapshot(args.snapshot)
    evaluation = evaluate(
        snapshot,
        allowlist,
        today,
        evaluated_at=datetime.now(UTC),
        expiring_days=args.expiring_days,
    )
    write_output(render(evaluation, args.format, width=width(args)), args.out)
    return evaluation.exit_code()
