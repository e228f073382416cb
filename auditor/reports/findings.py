"""Render an evaluation: text, JSON (`smtp-auth-findings/1`), CSV, Markdown, HTML.

The JSON document is a contract (README, contracts): extend it, never rename its fields.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from auditor.core.controls import all_controls, control
from auditor.core.model import Effective, Evaluation, Finding, Mailbox, Setting, Status
from auditor.core.usage import readiness_text

__all__ = [
    "FORMATS",
    "SCHEMA",
    "render",
    "findings_document",
    "finding_dict",
    "iso",
    "readiness_dict",
    "readiness_line",
]

SCHEMA = "smtp-auth-findings/1"
FORMATS = ("text", "json", "csv", "md", "html")

# Failing first, then unknown, warnings, exemptions, passes.
_ORDER = {Status.FAIL: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.EXEMPT: 3, Status.PASS: 4}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _setting(value: bool | None, present: bool = True) -> str:
    return Setting.code(value, present)


def _org_text(org_disabled: bool | None) -> str:
    return {True: "disabled", False: "enabled", None: "unknown"}[org_disabled]


def mailbox_dict(mailbox: Mailbox, effective: Effective | None) -> dict[str, Any]:
    return {
        "guid": mailbox.guid,
        "external_directory_object_id": mailbox.external_directory_object_id,
        "primary_smtp_address": mailbox.primary_smtp_address,
        "user_principal_name": mailbox.user_principal_name,
        "alias": mailbox.alias,
        "recipient_type_details": mailbox.recipient_type_details,
        "setting": mailbox.setting,
        "setting_present": mailbox.setting_present,
        "effective": effective.value if effective else None,
    }


def finding_dict(finding: Finding) -> dict[str, Any]:
    meta = control(finding.control)
    out: dict[str, Any] = {
        "id": finding.id,
        "control": finding.control,
        "title": meta.title,
        "status": finding.status.value,
        "severity": finding.severity.value,
        "subject": finding.subject,
        "reason": finding.reason,
    }
    if finding.mailbox is not None:
        out["mailbox"] = mailbox_dict(finding.mailbox, finding.effective)
        out["enabled_via"] = finding.via
    if finding.note:
        out["note"] = finding.note
    if finding.entry is not None:
        entry = finding.entry
        out["allowlist_entry"] = {
            "identity": entry.identity,
            "source": entry.source,
            "line": entry.line,
            "owner": entry.owner,
            "reason": entry.reason,
            "ticket": entry.ticket,
            "expires": entry.expires.isoformat() if entry.expires else None,
        }
    if finding.status in (Status.FAIL, Status.UNKNOWN, Status.WARNING):
        out["fix"] = meta.fix
    out["references"] = list(meta.references)
    return out


def _sorted(findings: tuple[Finding, ...]) -> list[Finding]:
    return sorted(findings, key=lambda f: (_ORDER[f.status], f.control, f.subject.lower()))


def findings_document(evaluation: Evaluation) -> dict[str, Any]:
    org = next((f for f in evaluation.findings if f.control == "SMTPAUTH-ORG"), None)
    return {
        "schema": SCHEMA,
        "tenant": evaluation.tenant,
        "evaluated_at": iso(evaluation.evaluated_at),
        "snapshot_collected_at": iso(evaluation.snapshot_collected_at),
        "org": {
            "setting": evaluation.org_disabled,
            "smtp_auth": _org_text(evaluation.org_disabled),
            "status": org.status.value if org else Status.UNKNOWN.value,
        },
        "summary": dict(evaluation.counts),
        "warnings": list(evaluation.warnings),
        "findings": [finding_dict(f) for f in _sorted(evaluation.findings)],
        "readiness": readiness_dict(evaluation),
    }


def readiness_dict(evaluation: Evaluation) -> dict[str, Any]:
    """Who used SMTP AUTH in the sign-in window (`state` "off" without usage evidence)."""
    r = evaluation.readiness
    if r is None:
        return {"state": "off", "reason": "USAGE_EVIDENCE is false"}
    out: dict[str, Any] = {"state": r.state, "reason": r.reason or None}
    if r.state == "collected":
        out.update(
            lookback_days=r.lookback_days,
            window_start=iso(r.window_start) if r.window_start else None,
            used=r.used,
            used_allowlisted=r.used_allowlisted,
            used_not_allowlisted=r.used_not_allowlisted,
            break_at_org_switch=r.break_at_org_switch,
            break_at_revocation=r.break_at_revocation,
            stale_exceptions=r.stale_exceptions,
            failures_only=r.failures_only,
            unmatched_signins=r.unmatched_signins,
        )
    return out


def readiness_line(evaluation: Evaluation) -> str:
    """One line for texts: the readiness, or why it is not known (`core.usage`)."""
    text = readiness_text(evaluation.readiness)
    return f"Readiness: {text}"


def render_json(evaluation: Evaluation) -> str:
    return json.dumps(findings_document(evaluation), indent=2, ensure_ascii=False) + "\n"


CSV_HEADER = (
    "id",
    "control",
    "status",
    "severity",
    "subject",
    "primary_smtp_address",
    "user_principal_name",
    "guid",
    "recipient_type_details",
    "setting",
    "effective",
    "enabled_via",
    "allowlist_entry",
    "owner",
    "expires",
    "reason",
)


def render_csv(evaluation: Evaluation) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for f in _sorted(evaluation.findings):
        mb, entry = f.mailbox, f.entry
        writer.writerow(
            [
                f.id,
                f.control,
                f.status.value,
                f.severity.value,
                _safe_cell(f.subject),
                _safe_cell(mb.primary_smtp_address or "") if mb else "",
                _safe_cell(mb.user_principal_name or "") if mb else "",
                mb.guid or "" if mb else "",
                mb.recipient_type_details or "" if mb else "",
                _setting(mb.setting, mb.setting_present) if mb else "",
                f.effective.value if f.effective else "",
                f.via or "",
                _safe_cell(entry.identity) if entry else "",
                _safe_cell(entry.owner or "") if entry else "",
                entry.expires.isoformat() if entry and entry.expires else "",
                _safe_cell(f.reason),
            ]
        )
    return buffer.getvalue()


def _safe_cell(value: str) -> str:
    # Spreadsheets execute cells starting with = + - @: neutralise values from the tenant.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def _headline(evaluation: Evaluation) -> list[str]:
    c = evaluation.counts
    return [
        f"Tenant: {evaluation.tenant}",
        f"Snapshot collected: {iso(evaluation.snapshot_collected_at)}; "
        f"evaluated: {iso(evaluation.evaluated_at)}",
        f"Organisation SMTP AUTH: {_org_text(evaluation.org_disabled)}",
        f"Mailboxes: {c.get('mailboxes', 0)} — SMTP AUTH enabled {c.get('mailboxes_enabled', 0)} "
        f"(explicit {c.get('mailboxes_enabled_explicit', 0)}, "
        f"inherited {c.get('mailboxes_enabled_inherited', 0)}), "
        f"disabled {c.get('mailboxes_disabled', 0)}, unknown {c.get('mailboxes_unknown', 0)}",
        "Findings: " + ", ".join(f"{s.value} {c.get(s.value, 0)}" for s in _ORDER),
        readiness_line(evaluation),
    ]


def render_text(evaluation: Evaluation, *, limit: int = 50) -> str:
    lines = _headline(evaluation)
    for warning in evaluation.warnings:
        lines.append(f"warning: {warning}")
    shown = [f for f in _sorted(evaluation.findings) if f.status is not Status.PASS]
    if shown:
        lines.append("")
    for f in shown[:limit]:
        lines.append(f"{f.status.value.upper():8} {f.control:30} {f.subject}")
        lines.append(f"         {f.reason}")
        if f.note:
            lines.append(f"         note: {f.note}")
    if len(shown) > limit:
        lines.append(f"... and {len(shown) - limit} more (use --format csv or json for all)")
    verdict = {0: "COMPLIANT", 1: "NOT COMPLIANT", 3: "INCOMPLETE: some evidence unknown"}
    lines.append("")
    lines.append(f"Result: {verdict[evaluation.exit_code()]}")
    return "\n".join(lines) + "\n"


def _md_cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def render_md(evaluation: Evaluation) -> str:
    lines = [f"# SMTP AUTH audit — {_md_cell(evaluation.tenant)}", ""]
    lines += [f"- {_md_cell(line)}" for line in _headline(evaluation)[1:]]
    lines += ["", "| Status | Control | Subject | Reason |", "|---|---|---|---|"]
    for f in _sorted(evaluation.findings):
        lines.append(
            f"| {f.status.value} | {f.control} | {_md_cell(f.subject)} | {_md_cell(f.reason)} |"
        )
    refs = sorted({r for c in all_controls().values() for r in c.references})
    lines += ["", "References: " + "; ".join(refs)]
    return "\n".join(lines) + "\n"


_COLOURS = {
    Status.FAIL: "#b00020",
    Status.UNKNOWN: "#8a5a00",
    Status.WARNING: "#7a6a00",
    Status.EXEMPT: "#1f5f99",
    Status.PASS: "#2e7d32",
}


def render_html(evaluation: Evaluation) -> str:
    e = html.escape
    rows = []
    for f in _sorted(evaluation.findings):
        mb = f.mailbox
        rows.append(
            "<tr>"
            f'<td style="color:{_COLOURS[f.status]};font-weight:bold">{e(f.status.value)}</td>'
            f"<td>{e(f.control)}</td><td>{e(f.subject)}</td>"
            f"<td>{e(mb.recipient_type_details or '') if mb else ''}</td>"
            f"<td>{e(_setting(mb.setting, mb.setting_present)) if mb else ''}</td>"
            f"<td>{e(f.effective.value) if f.effective else ''}</td>"
            f"<td>{e(f.reason)}{'<br><small>' + e(f.note) + '</small>' if f.note else ''}</td>"
            "</tr>"
        )
    head = "".join(f"<li>{e(line)}</li>" for line in _headline(evaluation)[1:])
    warn = "".join(f"<li>{e(w)}</li>" for w in evaluation.warnings)
    refs = "; ".join(sorted({r for c in all_controls().values() for r in c.references}))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>SMTP AUTH audit — {e(evaluation.tenant)}</title>"
        "<style>body{font-family:Segoe UI,Arial,sans-serif;margin:2em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left;vertical-align:top}th{background:#f0f0f0}</style></head><body>"
        f"<h1>SMTP AUTH audit — {e(evaluation.tenant)}</h1><ul>{head}</ul>"
        + (f"<h2>Allowlist warnings</h2><ul>{warn}</ul>" if warn else "")
        + "<table><thead><tr><th>Status</th><th>Control</th><th>Subject</th><th>Type</th>"
        "<th>Setting</th><th>Effective</th><th>Reason</th></tr></thead><tbody>"
        + "".join(rows)
        + f"</tbody></table><p>References: {e(refs)}</p></body></html>\n"
    )


RENDERERS: dict[str, Callable[[Evaluation], str]] = {
    "text": render_text,
    "json": render_json,
    "csv": render_csv,
    "md": render_md,
    "html": render_html,
}


def render(evaluation: Evaluation, fmt: str) -> str:
    return RENDERERS[fmt](evaluation)
