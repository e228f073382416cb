"""`audit`: what the nightly timer runs — collect, evaluate, record — from the command line.

Exit codes (README, contracts): 0 compliant, 1 at least one new-or-confirmed `fail` (judged from
evidence the run read), 2 bad input or configuration, 3 no such `fail` but evidence unknown —
including a partial or failed collection (an incomplete or failed run), a suspect run, a bad
record and another audit holding the run lease.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from auditor.app.audit import AuditIncomplete, RunSummary, audit_from_settings
from auditor.app.preflight import check_exchange
from auditor.app.settings import Settings
from auditor.app.wiring import store_from_settings
from auditor.cli.options import EXIT_UNKNOWN, add_output_options, width, write_output
from auditor.cli.progress import progress, wanted
from auditor.core.errors import AuditorError, CollectionFailed
from auditor.reports.findings import render
from auditor.reports.trend import Trend, trend


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "audit",
        help="run the nightly audit now: collect, evaluate, record (EXO_*, AUDITOR_* settings)",
        description=(
            "Collect the tenant's SMTP AUTH settings from Exchange, evaluate them against "
            "AUDITOR_ALLOWLIST and record the run in AUDITOR_STORAGE, as the timer does. "
            "Prints the findings; a summary of what changed goes to standard error."
        ),
    )
    add_output_options(parser)
    parser.add_argument(
        "--quiet", action="store_true", help="no progress on standard error (a terminal only)"
    )
    parser.set_defaults(func=run)


def describe(summary: RunSummary) -> str:
    """Human lines about the run and what changed since the previous one (no secrets)."""
    c, ch = summary.counts, summary.changes
    lines = [
        f"run {summary.run_id}: {summary.status}; {c.get('mailboxes', 0)} mailboxes, "
        f"{c.get('fail', 0)} fail, {c.get('unknown', 0)} unknown, {c.get('exempt', 0)} exempt "
        f"({summary.durations.get('total', 0.0):.1f} s)"
    ]
    if summary.baseline:
        lines.append("first recorded run: this is the baseline")
    else:
        lines.append(
            f"changes: {ch.get('mailboxes_changed', 0)} changed, {ch.get('mailboxes_added', 0)} "
            f"added, {ch.get('mailboxes_removed', 0)} removed mailbox(es); "
            f"{ch.get('findings_new', 0)} new, {ch.get('findings_resolved', 0)} resolved, "
            f"{ch.get('findings_changed', 0)} changed finding(s)"
        )
    if summary.org_change is not None and not summary.org_change.first:
        lines.append(
            f"organisation SmtpClientAuthenticationDisabled: {summary.org_change.before} -> "
            f"{summary.org_change.after}"
        )
    for error in summary.errors:
        lines.append(f"could not read {error.source}: {error.message}")
    return "\n".join(lines) + "\n"


def _trend(settings: Settings, summary: RunSummary, fmt: str) -> Trend | None:
    """The HTML report's chart across runs; a runs table that cannot be read only drops it."""
    if fmt != "html":
        return None
    try:
        return trend(store_from_settings(settings).runs(), upto=summary.run_id)
    except AuditorError as exc:
        print(f"warning: no trend chart: {exc}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    check_exchange(settings)
    try:
        label = f"auditing {settings.exo_tenant}"
        with progress(label, enabled=wanted(getattr(args, "quiet", False))):
            summary = audit_from_settings(settings)
    except AuditIncomplete as exc:
        summary = exc.summary
        sys.stderr.write(describe(summary))
        if summary.evaluation is not None:
            chart = _trend(settings, summary, args.format)
            page = render(summary.evaluation, args.format, width=width(args), trend=chart)
            write_output(page, args.out)
        return summary.exit_code or EXIT_UNKNOWN
    except CollectionFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    sys.stderr.write(describe(summary))
    assert summary.evaluation is not None
    chart = _trend(settings, summary, args.format)
    write_output(render(summary.evaluation, args.format, width=width(args), trend=chart), args.out)
    return summary.exit_code
