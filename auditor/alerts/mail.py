"""PURE: an `Alert` as an email (subject, Outlook-safe HTML, plain text) and a Graph sendMail body.

The HTML renders in Outlook's Word engine: tables for layout, inline styles only, no scripts, no
external images, every value escaped (the Jinja2 template `templates/alert_email.html.j2`,
autoescaped; the alerts package keeps its own, since it sits below `auditor.reports`).
Graph's JSON `sendMail` carries one body, so the plain-text
rendering travels as a small `text/plain` attachment (`smtp-auth-alert-<run>.txt`): readable in
any client, by mail filters and by people who read mail as plain text.

Subjects sort and filter well: `[SMTP AUTH] contoso: 3 new violations`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from auditor.alerts.decide import (
    SHOWN_MAX,
    Alert,
    AlertItem,
    headline,
    item_detail,
    org_line,
    root_cause_text,
)
from auditor.alerts.teams import safe_url
from auditor.core.model import Severity

__all__ = ["Email", "build_email", "sendmail_body", "subject", "tenant_label", "EMAIL_ITEMS"]

# Items listed per section in an email (all an alert keeps, `SHOWN_MAX`); the rest is
# counted and left to the report.
EMAIL_ITEMS = SHOWN_MAX

_SECTIONS = (
    ("expired", "Expired exceptions"),
    ("new", "New violations"),
    ("unknown", "Unknown evidence (could not be read)"),
    ("expiring", "Exceptions expiring soon"),
    ("resolved", "Resolved since the last run"),
)
_COLOUR = {
    Severity.HIGH: "#a4262c",
    Severity.MEDIUM: "#8a6d00",
    Severity.LOW: "#107c10",
    Severity.INFO: "#323130",
}


@dataclass(frozen=True, slots=True)
class Email:
    subject: str
    html: str
    text: str
    attachment_name: str


def tenant_label(tenant: str) -> str:
    """`contoso.onmicrosoft.com` -> `contoso`; a GUID or other domain stays as it is."""
    suffix = ".onmicrosoft.com"
    return tenant[: -len(suffix)] if tenant.lower().endswith(suffix) else tenant


def subject(alert: Alert) -> str:
    return f"[SMTP AUTH] {tenant_label(alert.tenant)}: {headline(alert)}"


def _section_title(alert: Alert, key: str, title: str) -> str:
    return "Violations" if key == "new" and alert.kind == "baseline" else title


def _facts(alert: Alert) -> list[tuple[str, str]]:
    c = alert.counts
    org = org_line(alert)
    facts = [
        ("Tenant", alert.tenant),
        ("Run", alert.run_id),
        ("Run time (UTC)", alert.evaluated_at.strftime("%Y-%m-%d %H:%M")),
        ("Organisation", org),
        ("Collection", "complete" if alert.complete else "INCOMPLETE: evidence unknown"),
        (
            "Findings",
            ", ".join(
                f"{c.get(k, 0)} {k}" for k in ("fail", "unknown", "warning", "exempt", "pass")
            ),
        ),
        (
            "Mailboxes enabled",
            f"{c.get('mailboxes_enabled', 0)} of {c.get('mailboxes', 0)} "
            f"({c.get('mailboxes_enabled_explicit', 0)} explicit, "
            f"{c.get('mailboxes_enabled_inherited', 0)} inherited)",
        ),
    ]
    if alert.readiness:
        facts.append(("Readiness", alert.readiness))
    return facts


def _links(alert: Alert) -> list[tuple[str, str]]:
    """(label, url): every open proposal (the organisation fix first), then the report."""
    out = [(link.title, url) for link in alert.links if (url := safe_url(link.url))]
    remediation = safe_url(alert.remediation_url)
    if not out and remediation:
        out.append(("Review the proposed fix", remediation))
    report = safe_url(alert.report_url)
    if report:
        out.append(("Open the report", report))
    return out


def _root_cause_lines(alert: Alert) -> list[str]:
    root = alert.root_cause
    if root is None:
        return []
    return [root_cause_text(root), root.fix]


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("auditor.alerts", "templates"),
        autoescape=select_autoescape(("html", "html.j2")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _html(alert: Alert) -> str:
    sections = []
    for key, title in _SECTIONS:
        items: Sequence[AlertItem] = getattr(alert, key)
        if not items:
            continue
        section = "new" if key == "expired" else key
        rows = [(i.subject, item_detail(i, section=section)) for i in items[:EMAIL_ITEMS]]
        sections.append((_section_title(alert, key, title), rows, alert.total(key) - len(rows)))
    return (
        _environment()
        .get_template("alert_email.html.j2")
        .render(
            alert=alert,
            subject=subject(alert),
            headline=headline(alert),
            colour=_COLOUR[alert.severity],
            root=_root_cause_lines(alert),
            links=_links(alert),
            facts=_facts(alert),
            sections=sections,
            more_hint=alert.more_hint,
            errors=list(alert.errors[:EMAIL_ITEMS]),
        )
    )


def _text(alert: Alert) -> str:
    lines = [f"SMTP AUTH audit: {alert.tenant}", headline(alert), ""]
    root = _root_cause_lines(alert)
    if root:
        lines += [root[0], f"  {root[1]}", ""]
    lines += [f"{k}: {v}" for k, v in _facts(alert)]
    for key, title in _SECTIONS:
        items: Sequence[AlertItem] = getattr(alert, key)
        if not items:
            continue
        total = alert.total(key)
        lines += ["", f"{_section_title(alert, key, title)} ({total})"]
        section = "new" if key == "expired" else key
        rows = items[:EMAIL_ITEMS]
        lines += [f"- {i.subject} · {item_detail(i, section=section)}" for i in rows]
        if total > len(rows):
            lines.append(f"... and {total - len(rows)} more: {alert.more_hint}")
    if alert.errors:
        lines += ["", f"Collection errors ({len(alert.errors)})"]
        lines += [f"- {err.source}: {err.message}" for err in alert.errors[:EMAIL_ITEMS]]
    for label, url in _links(alert):
        lines += ["", f"{label}: {url}"]
    return "\n".join(lines) + "\n"


def build_email(alert: Alert) -> Email:
    safe_run = re.sub(r"[^A-Za-z0-9._-]", "_", alert.run_id)[:80] or "run"
    return Email(
        subject=subject(alert),
        html=_html(alert),
        text=_text(alert),
        attachment_name=f"smtp-auth-alert-{safe_run}.txt",
    )


def sendmail_body(email: Email, recipients: Sequence[str]) -> dict[str, Any]:
    """The JSON body of Graph `POST /v1.0/users/{sender}/sendMail` (docs/architecture.md)."""
    return {
        "message": {
            "subject": email.subject,
            "body": {"contentType": "HTML", "content": email.html},
            "toRecipients": [{"emailAddress": {"address": a}} for a in recipients],
            "attachments": [
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": email.attachment_name,
                    "contentType": "text/plain; charset=utf-8",
                    "contentBytes": base64.b64encode(email.text.encode("utf-8")).decode("ascii"),
                }
            ],
        },
        "saveToSentItems": False,
    }
