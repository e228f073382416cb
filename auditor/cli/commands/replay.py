"""`replay RUN --allowlist FILE`: judge a recorded run's evidence against another allowlist.

Nothing is recorded: this answers "what would that night's audit have said with this
allowlist?". By default the run's own day is used for exception expiry (`--today` changes it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from auditor.app.queries import run_evaluation
from auditor.app.settings import Settings
from auditor.app.wiring import store_from_settings
from auditor.cli.commands.evaluate import parse_today
from auditor.cli.options import add_output_options, width, write_output
from auditor.core.allowlist import read_allowlist
from auditor.reports.findings import render


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="re-evaluate a recorded run with another allowlist (AUDITOR_STORAGE)",
        description=(
            "Evaluate the raw evidence kept with a recorded run against another allowlist. "
            "Records nothing."
        ),
    )
    parser.add_argument("run_id", metavar="RUN", help="run id (see `runs`) or `latest`")
    parser.add_argument("--allowlist", type=Path, required=True, help="allowlist (.txt or .csv)")
    parser.add_argument("--today", help="judge expiry as of this UTC date (default: the run's)")
    add_output_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    allowlist = read_allowlist(args.allowlist)
    today = parse_today(args.today) if args.today else None
    store = store_from_settings(Settings.from_env())
    _, evaluation = run_evaluation(store, args.run_id, allowlist=allowlist, today=today)
    write_output(render(evaluation, args.format, width=width(args)), args.out)
    return evaluation.exit_code()
