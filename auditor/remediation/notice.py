"""Announce a remediation's outcome on the alert channels (Teams Workflows webhook, Graph mail).

The message says what was approved, by whom, and each target's result counts, with a link to
the status page (`REMEDIATION_PUBLIC_URL`). Delivery is bounded (3 attempts per channel) and a
failure is logged, never raised: the change is done and recorded in the audit trail either way.
Payloads: Adaptive Card 1.5 in a Workflows message; Graph sendMail, 202 (docs/architecture.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from html import escape
from typing import Any

import httpx

from auditor.alerts.deliver import Channels, send_mail, send_teams
from auditor.alerts.mail import tenant_label
from auditor.core import routes
from auditor.core.proposals import Record

__all__ = ["Announce", "announcer", "teams_message", "email_body", "summary_lines"]

log = logging.getLogger(__name__)
ATTEMPTS = 3


def summary_lines(record: Record) -> list[str]:
    counts: dict[str, int] = {}
    for t in record.targets:
        if t.selected:
            counts[t.result.value] = counts.get(t.result.value, 0) + 1
    lines = [
        f"Tenant: {record.tenant}",
        f"Remediation {record.id} ({record.kind.value}) is {record.state.value}.",
        f"Approved by {record.approver_name or '?'} ({record.approver_oid or '?'}).",
        "Targets: " + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"),
    ]
    failed = [t for t in record.targets if t.selected and t.result.value == "failed"]
    for t in failed[:10]:
        lines.append(f"Failed: {t.target.display}: {t.detail}")
    if len(failed) > 10:
        lines.append(f"... and {len(failed) - 10} more failures")
    return lines


def _text(text: str, **style: Any) -> dict[str, Any]:
    """A RichTextBlock of one TextRun: Adaptive Cards render a TextRun as plain text, never as
    Markdown, so a mailbox name, an Exchange error or a token's name cannot format the card
    or smuggle a link into it."""
    return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text, **style}]}


def teams_message(record: Record, status_url: str | None) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        _text(
            f"SMTP AUTH remediation: {tenant_label(record.tenant)}", size="Large", weight="Bolder"
        ),
        _text(record.title, weight="Bolder"),
    ]
    body += [_text(line) for line in summary_lines(record)]
    actions = (
        [{"type": "Action.OpenUrl", "title": "Status", "url": status_url}] if status_url else []
    )
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "type": "AdaptiveCard",
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "version": "1.5",
                    "body": body,
                    "actions": actions,
                },
            }
        ],
    }


def email_body(
    record: Record, status_url: str | None, recipients: tuple[str, ...]
) -> dict[str, Any]:
    # The alert email's look (alerts.mail): inline styles in a table, Outlook-safe, escaped.
    font = "font-family:Segoe UI,Arial,sans-serif;"
    items = "".join(
        f'<li style="{font}font-size:14px;margin:2px 0">{escape(line)}</li>'
        for line in summary_lines(record)
    )
    link = (
        f'<p style="margin:16px 0"><a href="{escape(status_url, quote=True)}" style="{font}'
        "font-size:14px;color:#ffffff;background-color:#0f6cbd;padding:8px 14px;"
        'text-decoration:none;display:inline-block">Open the status page</a></p>'
        if status_url
        else ""
    )
    subject = f"[SMTP AUTH] {tenant_label(record.tenant)}: remediation {record.state.value}"
    content = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{escape(subject)}</title></head>"
        '<body style="margin:0;padding:0;background-color:#ffffff">'
        '<table role="presentation" width="640" cellpadding="0" cellspacing="0" border="0" '
        'style="border-collapse:collapse;max-width:640px"><tr><td style="padding:16px">'
        f'<div style="{font}font-size:20px;font-weight:bold">SMTP AUTH remediation: '
        f"{escape(record.tenant)}</div>"
        f'<div style="{font}font-size:15px;margin:4px 0 12px 0">{escape(record.title)}</div>'
        f'<ul style="padding-left:20px;margin:0">{items}</ul>{link}'
        f'<p style="{font}font-size:12px;color:#605e5c">Sent by the SMTP AUTH auditor.</p>'
        "</td></tr></table></body></html>"
    )
    return {
        "message": {
            "subject": f"{subject}: {record.title}"[:250],
            "body": {"contentType": "HTML", "content": content},
            "toRecipients": [{"emailAddress": {"address": a}} for a in recipients],
        },
        "saveToSentItems": False,
    }


Announce = Callable[[Record], None]


def announcer(
    channels: Channels,
    *,
    public_url: str | None,
    http: httpx.Client,
    graph_token: Callable[[], str] | None,
    sleep: Callable[[float], None] = time.sleep,
) -> Announce | None:
    """A callable that announces a finished remediation, or None when no channel is set.

    Sent through the alerts' own channel senders (bounded retries, `Retry-After`, redaction)."""
    if not channels.any:
        return None

    def announce(record: Record) -> None:
        url = routes.remediation_url(public_url, record.id, "status")
        if channels.teams_webhook_url:
            result = send_teams(
                channels,
                json.dumps(teams_message(record, url)).encode("utf-8"),
                http=http,
                sleep=sleep,
                max_attempts=ATTEMPTS,
            )
            log.info("remediation %s: teams %s %s", record.id, result.status, result.detail)
        if channels.email_from and channels.email_to:
            result = send_mail(
                channels,
                email_body(record, url, channels.email_to),
                http=http,
                graph_token=graph_token,
                sleep=sleep,
                max_attempts=ATTEMPTS,
            )
            log.info("remediation %s: email %s %s", record.id, result.status, result.detail)

    return announce
