"""Announce a remediation's outcome on the alert channels (Teams Workflows webhook, Graph mail).

The message says what was approved, by whom, and each target's result counts, with a link to
the status page (`REMEDIATION_PUBLIC_URL`). Delivery is bounded (3 attempts per channel) and a
failure is logged, never raised: the change is done and recorded in the audit trail either way.
Payload formats follow REFERENCE §4 (Adaptive Card 1.5 in a Workflows message; sendMail 202).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from html import escape
from typing import Any
from urllib.parse import quote

import httpx

from auditor.alerts.deliver import GRAPH_SCOPE, redact
from auditor.app.settings import Settings
from auditor.core.proposals import Record

__all__ = ["announcer", "teams_message", "email_body", "summary_lines"]

log = logging.getLogger(__name__)
ATTEMPTS = 3


def _status_url(settings: Settings, record: Record) -> str | None:
    if not settings.remediation_public_url:
        return None
    return f"{settings.remediation_public_url}/api/remediations/{quote(record.id)}/status"


def summary_lines(record: Record) -> list[str]:
    counts: dict[str, int] = {}
    for t in record.targets:
        if t.selected:
            counts[t.result.value] = counts.get(t.result.value, 0) + 1
    lines = [
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


def teams_message(record: Record, status_url: str | None) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": record.title, "weight": "Bolder", "wrap": True},
    ]
    body += [{"type": "TextBlock", "text": line, "wrap": True} for line in summary_lines(record)]
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
    items = "".join(f"<li>{escape(line)}</li>" for line in summary_lines(record))
    link = f"<p><a href='{escape(status_url)}'>Status</a></p>" if status_url else ""
    return {
        "message": {
            "subject": f"SMTP AUTH remediation {record.state.value}: {record.title}"[:250],
            "body": {"contentType": "HTML", "content": f"<ul>{items}</ul>{link}"},
            "toRecipients": [{"emailAddress": {"address": a}} for a in recipients],
        },
        "saveToSentItems": False,
    }


def _post(
    http: httpx.Client,
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str],
    ok: Callable[[int], bool],
    sleep: Callable[[float], None],
) -> str:
    problem = ""
    for attempt in range(ATTEMPTS):
        try:
            response = http.post(url, content=json.dumps(payload), headers=headers, timeout=30)
            if ok(response.status_code):
                return "sent"
            problem = f"HTTP {response.status_code}"
            if response.status_code not in (408, 429, 500, 502, 503, 504):
                break
        except httpx.TransportError as exc:
            problem = type(exc).__name__
        if attempt < ATTEMPTS - 1:
            sleep(2.0 * 2**attempt)
    return f"failed: {problem}"


def announcer(
    settings: Settings,
    http: httpx.Client,
    *,
    graph_token: Callable[[], str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[Record], None] | None:
    """A callable that announces a finished remediation, or None when no channel is set."""
    if not settings.teams_webhook_url and not (settings.email_from and settings.email_to):
        return None
    secrets: list[str | None] = [settings.teams_webhook_url, settings.graph_access_token]

    def announce(record: Record) -> None:
        url = _status_url(settings, record)
        if settings.teams_webhook_url:
            outcome = _post(
                http,
                settings.teams_webhook_url,
                teams_message(record, url),
                {"Content-Type": "application/json; charset=utf-8"},
                lambda s: 200 <= s < 300,
                sleep,
            )
            log.info("remediation %s: teams %s", record.id, redact(outcome, secrets))
        if settings.email_from and settings.email_to:
            token = settings.graph_access_token or _graph_token(settings, graph_token)
            endpoint = (
                f"{settings.graph_base_url}/v1.0/users/{quote(settings.email_from, safe='@')}"
                "/sendMail"
            )
            outcome = _post(
                http,
                endpoint,
                email_body(record, url, settings.email_to),
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                lambda s: s == 202,
                sleep,
            )
            log.info("remediation %s: email %s", record.id, outcome)

    return announce


def _graph_token(settings: Settings, provider: Callable[[], str] | None) -> str:
    if provider is not None:
        return provider()
    from auditor.identity.tokens import token_provider

    return token_provider(replace(settings, exo_access_token=None), GRAPH_SCOPE).get_token()
