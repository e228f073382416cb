"""Render an evaluation: text, JSON (`smtp-auth-findings/1`), CSV, Markdown, HTML.

The JSON document is a contract (README, contracts): extend it, never rename its fields.
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from auditor.core.controls import all_controls, control
from auditor.core.model import Effective, Evaluation, Finding, Mailbox, Setting, Status
from auditor.core.usage import readiness_text
from auditor.reports.html import render_page
from auditor.reports.trend import Trend

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


ORG = "SMTPAUTH-ORG"
MAILBOX = "SMTPAUTH-MAILBOX"
EXPIRING = "SMTPAUTH-EXCEPTION-EXPIRING"
ALLOWLIST_CONTROLS = (
    "SMTPAUTH-ALLOWLIST-UNMATCHED",
    "SMTPAUTH-ALLOWLIST-AMBIGUOUS",
    "SMTPAUTH-ALLOWLIST-INHERITED",
    "SMTPAUTH-ALLOWLIST-UNUSED",
)
_VERDICT = {0: "COMPLIANT", 1: "NOT COMPLIANT", 3: "INCOMPLETE: some evidence unknown"}


@dataclass(frozen=True, slots=True)
class Groups:
    """An evaluation grouped by what to do, in the order a reader should act on it.

    `root_cause` is the organisation finding when it fails (the organisation allows SMTP AUTH):
    one change then fixes every mailbox in `inherited`. `explicit` are mailboxes enabled on
    the mailbox itself without a current exception; `exceptions` are expired or expiring
    allowlist exceptions (the mailbox violations they cause and the expiry warnings);
    `allowlist` the allowlist's own problems; `unknown` evidence that could not be read.
    """

    org: Finding | None
    root_cause: Finding | None
    explicit: tuple[Finding, ...]
    exceptions: tuple[Finding, ...]
    allowlist: tuple[Finding, ...]
    unknown: tuple[Finding, ...]
    inherited: tuple[Finding, ...]
    exempt: tuple[Finding, ...]
    passed: tuple[Finding, ...]

    @property
    def inherited_by_type(self) -> list[tuple[str, int]]:
        counts = Counter(_type(f) for f in self.inherited)
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

    @property
    def fixed_by_org(self) -> int:
        """Mailboxes that lose SMTP AUTH when the organisation switch is fixed."""
        return sum(1 for f in self.inherited + self.exceptions if f.via == INHERITED_VIA)


INHERITED_VIA = "inherited"


def _type(finding: Finding) -> str:
    mb = finding.mailbox
    return (mb.recipient_type_details if mb else None) or "unknown type"


def group(evaluation: Evaluation) -> Groups:
    """The findings by what to do (see `Groups`), each group in report order."""
    org: Finding | None = None
    explicit: list[Finding] = []
    exceptions: list[Finding] = []
    allowlist: list[Finding] = []
    unknown: list[Finding] = []
    inherited: list[Finding] = []
    exempt: list[Finding] = []
    passed: list[Finding] = []
    # The organisation first in whichever group it falls (its state decides every inheritor's).
    for f in sorted(_sorted(evaluation.findings), key=lambda f: f.control != ORG):
        if f.control == ORG:
            org = f
        if f.status is Status.PASS:
            passed.append(f)
        elif f.status is Status.UNKNOWN:
            unknown.append(f)
        elif f.status is Status.EXEMPT:
            exempt.append(f)
        elif f.control == EXPIRING:
            exceptions.append(f)
        elif f.control in ALLOWLIST_CONTROLS:
            allowlist.append(f)
        elif f.control == MAILBOX and f.status is Status.FAIL:
            expired = "expired on" in f.reason and f.entry is not None
            if expired:
                exceptions.append(f)
            elif f.via == INHERITED_VIA:
                inherited.append(f)
            else:
                explicit.append(f)
        elif f.control != ORG:
            allowlist.append(f)
    root = org if org is not None and org.status is Status.FAIL else None
    return Groups(
        org=org,
        root_cause=root,
        explicit=tuple(explicit),
        exceptions=tuple(exceptions),
        allowlist=tuple(allowlist),
        unknown=tuple(unknown),
        inherited=tuple(inherited),
        exempt=tuple(exempt),
        passed=tuple(passed),
    )


def mailbox_fix(finding: Finding, org_disabled: bool | None) -> str:
    """The one command that fixes this mailbox finding (Guid filled in)."""
    mb = finding.mailbox
    ident = (mb.guid or mb.primary_smtp_address or mb.display) if mb else finding.subject
    value = "$null" if org_disabled is True else "$true"
    return f"Set-CASMailbox -Identity {ident} -SmtpClientAuthenticationDisabled {value}"


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word}es" if word.endswith(("x", "s")) else f"{n} {word}s"


def next_steps(evaluation: Evaluation, groups: Groups) -> list[str]:
    """What to do, most effective first (shared by the text and HTML reports)."""
    steps: list[str] = []
    if groups.root_cause is not None:
        steps.append(
            f"1 change fixes {_plural(groups.fixed_by_org, 'mailbox')}: disable SMTP AUTH for "
            "the organisation."
        )
    if groups.explicit:
        steps.append(
            f"{_plural(len(groups.explicit), 'mailbox')} explicitly enabled without an "
            "exception: disable each one, or allowlist it."
        )
    if groups.exceptions:
        steps.append(
            f"{_plural(len(groups.exceptions), 'exception problem')} (expired or expiring): "
            "renew with the owner or retire."
        )
    if groups.allowlist:
        steps.append(f"{_plural(len(groups.allowlist), 'allowlist problem')}: correct the file.")
    if groups.unknown:
        steps.append(
            f"{_plural(len(groups.unknown), 'finding')} with unknown evidence: fix the read and "
            "re-run; unknown is never a pass."
        )
    if not steps:
        steps.append("Nothing to do.")
    return steps


def _wrap(text: str, width: int, indent: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=max(width, 40),
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def render_text(evaluation: Evaluation, *, limit: int = 50, width: int = 100) -> str:
    """The root cause and allowlist problems first, then mailbox rows; lines fit `width`."""
    width = max(width, 40)
    groups = group(evaluation)
    lines = [line for h in _headline(evaluation) for line in _wrap(h, width, "")]
    for warning in evaluation.warnings:
        lines += _wrap(f"warning: {warning}", width, "")
    lines.append("")
    lines.append("What to do:")
    for step in next_steps(evaluation, groups):
        lines += _wrap(step, width, "  - ")[:1] + [
            "    " + x.strip() for x in _wrap(step, width - 4, "")[1:]
        ]
    root = groups.root_cause
    if root is not None:
        meta = control(ORG)
        lines.append("")
        lines.append(f"ROOT CAUSE  {root.subject}: {meta.title} [{root.severity.value}]")
        lines += _wrap(root.reason, width, "  ")
        lines += _wrap(f"fix: {meta.fix}", width, "  ")
    sections: list[tuple[str, tuple[Finding, ...]]] = [
        ("Allowlist problems", groups.allowlist),
        ("Expired or expiring exceptions", groups.exceptions),
        ("Unknown evidence", groups.unknown),
        ("Explicitly enabled mailboxes", groups.explicit),
        ("Enabled by inheritance (fixed by the organisation change)", groups.inherited),
        ("Exempt by the allowlist", groups.exempt),
    ]
    budget = limit
    hidden = 0
    for title, findings in sections:
        if not findings:
            continue
        inherited = findings is groups.inherited
        lines.append("")
        lines.append(f"{title} ({len(findings)}):")
        if inherited:
            by_type = ", ".join(f"{t} {n}" for t, n in groups.inherited_by_type)
            lines += _wrap(f"by type: {by_type}", width, "  ")
            if findings:
                lines += _wrap(findings[0].reason, width, "  every one: ")
        for f in findings:
            if budget <= 0:
                hidden += 1
                continue
            budget -= 1
            kind = f" ({_type(f)})" if f.mailbox is not None else ""
            lines.append(_fit(f"{f.status.value.upper():8} {f.subject}{kind}", width))
            if inherited:
                continue
            lines += _wrap(f.reason, width, "         ")
            if f.note:
                lines += _wrap(f"note: {f.note}", width, "         ")
    if hidden:
        lines += _wrap(f"... and {hidden} more (use --format csv or json for all)", width, "")
    lines.append("")
    lines.append(f"Result: {_VERDICT[evaluation.exit_code()]}")
    return "\n".join(lines) + "\n"


def _md_cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def render_md(evaluation: Evaluation) -> str:
    groups = group(evaluation)
    lines = [f"# SMTP AUTH audit — {_md_cell(evaluation.tenant)}", ""]
    lines += [f"- {_md_cell(line)}" for line in _headline(evaluation)[1:]]
    lines += ["", "## What to do", ""]
    lines += [f"1. {_md_cell(step)}" for step in next_steps(evaluation, groups)]
    if groups.root_cause is not None:
        lines += ["", "```", control(ORG).fix, "```"]
    lines += ["", "| Status | Control | Subject | Reason |", "|---|---|---|---|"]
    for f in _sorted(evaluation.findings):
        lines.append(
            f"| {f.status.value} | {f.control} | {_md_cell(f.subject)} | {_md_cell(f.reason)} |"
        )
    refs = sorted({r for c in all_controls().values() for r in c.references})
    lines += ["", "References: " + "; ".join(refs)]
    return "\n".join(lines) + "\n"


def _row(f: Finding, org_disabled: bool | None, *, fix: bool = False) -> list[str]:
    mb = f.mailbox
    reason = f.reason + (f" ({f.note})" if f.note else "")
    row = [
        f.subject,
        f.status.value,
        (mb.recipient_type_details or "") if mb else control(f.control).title,
        _setting(mb.setting, mb.setting_present) if mb else "",
        f.effective.value if f.effective else "",
        reason,
    ]
    if fix:
        row.append(mailbox_fix(f, org_disabled) if mb else control(f.control).fix)
    return row


def render_html(evaluation: Evaluation, *, trend: Trend | None = None) -> str:
    """The findings report; with `trend` (reports.trend, from the runs table) the run report
    also charts enabled / fail / exempt / unknown across runs."""
    groups = group(evaluation)
    org = evaluation.org_disabled
    sections = [
        (
            "explicit",
            "Explicitly enabled mailboxes",
            "Enabled on the mailbox itself, with no current exception: the organisation change "
            "does not fix these.",
            [_row(f, org, fix=True) for f in groups.explicit],
            True,
        ),
        (
            "exceptions",
            "Expired or expiring exceptions",
            "Renew the entry's Expires date with its owner, or plan the move to OAuth.",
            [_row(f, org, fix=True) for f in groups.exceptions],
            True,
        ),
        (
            "allowlist",
            "Allowlist problems",
            "Entries that match nothing, match several mailboxes, or need an explicit enable.",
            [_row(f, org, fix=True) for f in groups.allowlist],
            True,
        ),
        (
            "unknown",
            "Unknown evidence",
            "Evidence that could not be read. Unknown is never a pass.",
            [_row(f, org, fix=True) for f in groups.unknown],
            True,
        ),
    ]
    return render_page(
        "findings.html.j2",
        evaluation=evaluation,
        groups=groups,
        trend=trend,
        verdict=_VERDICT[evaluation.exit_code()],
        exit_code=evaluation.exit_code(),
        org_text=_org_text(org),
        headline=_headline(evaluation)[1:],
        steps=next_steps(evaluation, groups),
        org_fix=control(ORG).fix,
        org_meta=control(ORG),
        sections=sections,
        inherited_rows=[_row(f, org) for f in groups.inherited],
        exempt_rows=[_row(f, org) for f in groups.exempt],
        passed_rows=[_row(f, org) for f in groups.passed],
        controls=sorted(all_controls().values(), key=lambda c: (c.severity != "high", c.id)),
        columns=("Subject", "Status", "Type", "Setting", "Effective", "Reason"),
        fix_columns=("Subject", "Status", "Type", "Setting", "Effective", "Reason", "Fix"),
    )


RENDERERS: dict[str, Callable[[Evaluation], str]] = {
    "text": render_text,
    "json": render_json,
    "csv": render_csv,
    "md": render_md,
    "html": render_html,
}


def render(
    evaluation: Evaluation, fmt: str, *, width: int = 100, trend: Trend | None = None
) -> str:
    """`evaluation` in `fmt`; the text format fits lines to `width` columns; the HTML report
    carries `trend` when given."""
    if fmt == "text":
        return render_text(evaluation, width=width)
    if fmt == "html":
        return render_html(evaluation, trend=trend)
    return RENDERERS[fmt](evaluation)
