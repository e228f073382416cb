"""`mailboxes`: the runbook's listings by raw setting, with the effective state beside it.

Replaces `Get-CASMailbox -ResultSize Unlimited | where SmtpClientAuthenticationDisabled -eq
$true|$false|$null`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from auditor.app.settings import Settings
from auditor.app.sources import load_snapshot
from auditor.app.wiring import allowlist_now
from auditor.cli.commands.evaluate import parse_today
from auditor.cli.options import EXIT_OK, EXIT_UNKNOWN, add_output_options, width, write_output
from auditor.core.errors import CollectionFailed
from auditor.reports.inventory import mailbox_rows, render_rows, select, tally


def add_source_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--snapshot", type=Path, help="use this snapshot file")
    source.add_argument("--live", action="store_true", help="read the tenant now")
    parser.add_argument(
        "--allowlist", type=Path, help="allowlist file (default: AUDITOR_ALLOWLIST)"
    )
    parser.add_argument("--today", help="judge exception expiry as of this UTC date")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "mailboxes",
        help="list mailboxes by SMTP AUTH setting, effective state and type",
        description=(
            "One row per mailbox: identity, type, raw setting, effective state and allowlist "
            "status. Source: the latest audit's evidence (AUDITOR_STORAGE), --snapshot FILE, "
            "or --live."
        ),
    )
    parser.add_argument(
        "--setting",
        choices=("disabled", "enabled", "inherit", "missing"),
        help="raw value: disabled ($true), enabled ($false), inherit ($null), missing",
    )
    parser.add_argument("--effective", choices=("enabled", "disabled", "unknown"))
    parser.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="TYPE",
        help="RecipientTypeDetails, e.g. UserMailbox, SharedMailbox (repeatable)",
    )
    add_source_options(parser)
    add_output_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    today = parse_today(args.today)
    allowlist = allowlist_now(settings, args.allowlist)
    snapshot = load_snapshot(settings, path=args.snapshot, live=args.live)
    if snapshot.mailboxes is None:
        raise CollectionFailed(
            f"{snapshot.source}: the per-mailbox settings (Get-CASMailbox) were not collected"
        )
    everyone = mailbox_rows(snapshot, allowlist, today)
    rows = select(everyone, setting=args.setting, effective=args.effective, types=args.type)
    # The counts are the tenant's; the rows are what the filters selected.
    write_output(
        render_rows(snapshot, rows, tally(everyone), args.format, width=width(args)), args.out
    )
    return EXIT_UNKNOWN if snapshot.errors else EXIT_OK
