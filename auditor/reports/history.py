"""Render the list of runs and a mailbox's history: text, JSON, CSV, Markdown, HTML.

JSON documents: `smtp-auth-runs/1` (`runs`: one object per run) and
`smtp-auth-mailbox-history/1` (`mailbox`, `state`, `entries` newest first, `as_of`).
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
from collections.abc import Sequence
from typing import Any

from auditor.core.records import MailboxTimeline, RunRecord, TimelineEntry
from auditor.reports.findings import iso
from auditor.reports.html import render_page
from auditor.reports.text import DEFAULT_WIDTH, fit
from auditor.reports.text import table as text_table

__all__ = ["render_runs", "render_history", "run_dict", "entry_dict"]

RUNS_SCHEMA = "smtp-auth-runs/1"
HISTORY_SCHEMA = "smtp-auth-mailbox-history/1"

_RUN_COLUMNS = (
    "run_id", "status", "started_at", "mailboxes", "fail", "unknown", "exempt", "changes",
    "errors",
)  # fmt: skip
_ENTRY_COLUMNS = (
    "run_id", "cause", "setting", "organisation", "effective", "via", "address", "upn", "type",
    "changed",
)  # fmt: skip


def run_dict(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "tenant": run.tenant,
        "status": run.status,
        "complete": run.complete,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at) if run.finished_at else None,
        "org_smtp_auth_disabled": run.org_disabled,
        "summary": run.counts,
        "changes": run.changes,
        "durations": run.durations,
        "errors": [{"source": e.source, "message": e.message} for e in run.errors],
        "allowlist": run.allowlist_source or None,
        "exit_code": run.exit_code,
    }


def _run_row(run: RunRecord) -> list[str]:
    c, ch = run.counts, run.changes
    changed = sum(v for k, v in ch.items() if k.startswith("mailboxes_"))
    changes = (
        f"{changed} mailbox(es), +{ch.get('findings_new', 0)} / "
        f"-{ch.get('findings_resolved', 0)} finding(s)"
        if ch
        else ""
    )
    return [
        run.run_id,
        run.status,
        iso(run.started_at),
        str(c.get("mailboxes", "")),
        str(c.get("fail", "")),
        str(c.get("unknown", "")),
        str(c.get("exempt", "")),
        changes,
        "; ".join(e.source for e in run.errors),
    ]


def entry_dict(entry: TimelineEntry) -> dict[str, Any]:
    out = {
        "run_id": entry.run_id,
        "cause": entry.cause,
        "setting": entry.setting,
        "org_smtp_auth_disabled": entry.org_disabled,
        "effective": "removed" if entry.removed else entry.effective.value,
        "enabled_via": entry.via,
        "primary_smtp_address": entry.address,
        "user_principal_name": entry.upn,
        "recipient_type_details": entry.rtype,
        "changed": list(entry.fields),
    }
    if entry.changed_by is not None:
        out["changed_by"] = entry.changed_by
    return out


def _entry_row(entry: TimelineEntry) -> list[str]:
    org = {True: "disabled", False: "enabled", None: "unknown"}[entry.org_disabled]
    return [
        entry.run_id,
        entry.cause,
        entry.setting,
        org,
        "removed" if entry.removed else entry.effective.value,
        entry.via or "",
        entry.address or "",
        entry.upn or "",
        entry.rtype or "",
        ",".join(entry.fields),
    ]


def _safe(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def _table(
    title: str,
    columns: Sequence[str],
    rows: list[list[str]],
    fmt: str,
    summary: Sequence[str] = (),
    width: int = DEFAULT_WIDTH,
) -> str:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(columns)
        writer.writerows([[_safe(cell) for cell in row] for row in rows])
        return buffer.getvalue()
    if fmt == "md":

        def cell(value: str) -> str:
            return value.replace("|", "\\|").replace("\n", " ")

        lines = [f"# {cell(title)}", "", "| " + " | ".join(columns) + " |"]
        lines.append("|" + "---|" * len(columns))
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    if fmt == "html":
        return render_page(
            "table_page.html.j2",
            title=title,
            summary=summary,
            lead_class="",
            caption=f"{title}: {len(rows)} row(s)",
            columns=columns,
            rows=rows,
            footer="",
        )
    lines = [fit(title, width), *(w for s in summary for w in textwrap.wrap(s, width)), ""]
    lines += text_table(columns, rows, width, keep=(0, 1))
    if not rows:
        lines.append("(none)")
    return "\n".join(lines) + "\n"


def render_runs(runs: Sequence[RunRecord], fmt: str, *, width: int = DEFAULT_WIDTH) -> str:
    if fmt == "json":
        document = {"schema": RUNS_SCHEMA, "runs": [run_dict(r) for r in runs]}
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    summary: list[str] = []
    if runs:
        last = runs[0]
        summary.append(
            f"Latest run {last.run_id}: {last.status}, {last.counts.get('fail', 0)} fail, "
            f"{last.counts.get('unknown', 0)} unknown"
            + (f"; errors: {', '.join(e.source for e in last.errors)}" if last.errors else "")
        )
    rows = [_run_row(r) for r in runs]
    return _table("Audit runs (newest first)", _RUN_COLUMNS, rows, fmt, summary, width)


def render_history(
    timeline: MailboxTimeline,
    fmt: str,
    *,
    as_of: TimelineEntry | None = None,
    as_of_run: str | None = None,
    width: int = DEFAULT_WIDTH,
) -> str:
    state = timeline.state
    if fmt == "json":
        document: dict[str, Any] = {
            "schema": HISTORY_SCHEMA,
            "mailbox": {"identity": timeline.identity, "key": timeline.key},
            "state": None
            if state is None
            else {
                "first_seen": state.first_seen,
                "since": state.since,
                "removed": state.removed,
                "setting": state.setting,
                "primary_smtp_address": state.address,
                "user_principal_name": state.upn,
                "recipient_type_details": state.rtype,
            },
            "entries": [entry_dict(e) for e in timeline.entries],
        }
        if as_of_run is not None:
            document["as_of"] = {
                "run_id": as_of_run,
                "entry": entry_dict(as_of) if as_of else None,
            }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    entries = list(timeline.entries)
    title = f"History of {timeline.identity} ({timeline.key})"
    if as_of_run is not None:
        entries = [as_of] if as_of else []
        title = f"{timeline.identity} as of run {as_of_run}" + ("" if as_of else ": not yet seen")
    summary: list[str] = []
    if state is not None:
        now = "removed" if state.removed else f"setting {state.setting}"
        kind = f" ({state.rtype})" if state.rtype else ""
        summary.append(f"Now: {now}{kind}, since run {state.since}")
    rows = [_entry_row(e) for e in entries]
    columns: tuple[str, ...] = _ENTRY_COLUMNS
    if any(e.changed_by for e in entries):  # attribution (USAGE_EVIDENCE): one more column
        columns = (*columns, "changed_by")
        rows = [[*row, e.changed_by or ""] for row, e in zip(rows, entries, strict=True)]
    text = _table(title, columns, rows, fmt, summary, width)
    attributed = [e for e in entries if e.changed_by]
    if fmt == "text" and attributed:
        # The table cuts long cells to the width; who changed what is said in full below it.
        lines = ["", "changed_by (from the unified audit log):"]
        lines += [f"  {e.run_id} {e.cause}: {e.changed_by}" for e in attributed]
        text += "\n".join(lines) + "\n"
    return text
