"""`history MAILBOX`: every recorded change of one mailbox and its effective state over time.

MAILBOX is any identity the allowlist accepts (address, proxy address, UPN, alias, name,
GUID). `--as-of RUN` prints its state as recorded at that run.
"""

from __future__ import annotations

import argparse
from typing import Any

from auditor.app.attribution import attributed_timeline
from auditor.app.queries import mailbox_timeline
from auditor.app.settings import Settings
from auditor.app.wiring import store_from_settings
from auditor.cli.options import add_output_options, width, write_output
from auditor.reports.history import render_history


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "history",
        help="the change history of one mailbox (AUDITOR_STORAGE)",
        description=(
            "Show when a mailbox's SmtpClientAuthenticationDisabled value or effective state "
            "changed, and in which run. MAILBOX: any identity the allowlist accepts."
        ),
    )
    parser.add_argument("mailbox", metavar="MAILBOX", help="address, UPN, alias, GUID...")
    parser.add_argument("--as-of", metavar="RUN", help="only its state as of this run id")
    add_output_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = store_from_settings(Settings.from_env())
    timeline = attributed_timeline(store, mailbox_timeline(store, args.mailbox))
    as_of_run = None
    entry = None
    if args.as_of:
        as_of_run = store.run(args.as_of).run_id
        entry = timeline.as_of(as_of_run)
    text = render_history(
        timeline, args.format, as_of=entry, as_of_run=as_of_run, width=width(args)
    )
    write_output(text, args.out)
    return 0
