"""`show RUN`: the findings of a recorded run (its evidence judged with its own allowlist).

RUN is a run id from `runs`, or `latest`. Exit code: that run's verdict (0/1/3).
"""

from __future__ import annotations

import argparse
from typing import Any

from auditor.app.queries import run_evaluation
from auditor.app.settings import Settings
from auditor.app.wiring import store_from_settings
from auditor.cli.options import add_output_options, width, write_output
from auditor.reports.findings import render
from auditor.reports.trend import trend


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "show",
        help="the findings of a recorded run (AUDITOR_STORAGE)",
        description="Print the findings of a recorded run. RUN: a run id, or `latest`.",
    )
    parser.add_argument("run_id", metavar="RUN", help="run id (see `runs`) or `latest`")
    add_output_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = store_from_settings(Settings.from_env())
    record, evaluation = run_evaluation(store, args.run_id)
    chart = trend(store.runs(), upto=record.run_id) if args.format == "html" else None
    write_output(render(evaluation, args.format, width=width(args), trend=chart), args.out)
    return evaluation.exit_code()
