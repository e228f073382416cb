"""Render the list of runs and a mailbox's history: text, JSON, CSV, Markdown, HTML.

JSON documents: `smtp-auth-runs/1` (`runs`: one object per run) and
`smtp-auth-mailbox-history/1` (`mailbox`, `state`, `entries` newest first, `as_of`).
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from typing import Any

from auditor.core.records import MailboxTimeline, RunRecord, TimelineEntry
from auditor.reports.findings import iso

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


def _table(title: str, columns: Sequence[str], rows: list[list[str]], fmt: str) -> str:
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
        e = html.escape
        head = "".join(f"<th>{e(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in rows)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{e(title)}</title><style>body{{font-family:Segoe UI,Arial,sans-serif;"
            "margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:4px 8px;text-align:left}th{background:#f0f0f0}</style></head><body>"
            f"<h1>{e(title)}</h1><table><thead><tr>{head}</tr></thead><tbody>{body}"
            "</tbody></table></body></html>\n"
        )
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    lines = [title, ""]
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        lines.append("(none)")
    return "\n".join(lines) + "\n"


def render_runs(runs: Sequence[RunRecord], fmt: str) -> str:
    if fmt == "json":
        document = {"schema": RUNS_SCHEMA, "runs": [run_dict(r) for r in runs]}
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return _table("Audit runs (newest first)", _RUN_COLUMNS, [_run_row(r) for r in runs], fmt)


def render_history(
    timeline: MailboxTimeline,
    fmt: str,
    *,
    as_of: TimelineEntry | None = None,
    as_of_run: str | None = None,
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
    rows = [_entry_row(e) for e in entries]
    columns: tuple[str, ...] = _ENTRY_COLUMNS
    if any(e.changed_by for e in entries):  # attribution (USAGE_EVIDENCE): one more column
        columns = (*columns, "changed_by")
        rows = [[*row, e.changed_by or ""] for row, e in zip(rows, entries, strict=True)]
    return _table(title, columns, rows, fmt)
