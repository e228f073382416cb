"""PURE: an `Alert` as a Teams Workflows webhook message (Adaptive Card 1.5), size-bounded.

The message is the `attachments` envelope that the Workflows trigger "When a Teams webhook request
is received" expects. Teams renders Adaptive Cards up to 1.5 and drops messages
over about 28 KB, and from a webhook only `Action.OpenUrl` works, so:

- buttons are `Action.OpenUrl` only (the run's report; the remediation confirmation page when
  one is proposed). Links are opened by scanners and previews: they only ever lead to pages
  where a person confirms with a POST.
- values that come from Exchange or the allowlist (addresses, names, reasons) go into
  `RichTextBlock`/`TextRun`, which is not processed as Markdown, so `john_doe_x@contoso.com`
  is not shown in italics;
- each list shows its top items and a clear "… and N more" line; the number of items is cut
  until the serialized message (UTF-8 bytes) fits `max_bytes`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from auditor.alerts.decide import (
    Alert,
    AlertItem,
    headline,
    item_detail,
    org_line,
    root_cause_text,
)
from auditor.core.model import Severity

__all__ = [
    "CARD_VERSION",
    "MAX_ACTIONS",
    "MAX_BYTES",
    "build_message",
    "message_size",
    "serialize",
    "safe_url",
]

CARD_VERSION = "1.5"
# Teams refuses messages over about 28 KB; stay clearly below it.
MAX_BYTES = 27_000
# Items per list tried in turn until the message fits.
_LIMITS = (25, 15, 10, 5, 3, 1, 0)
_TEXT_MAX = 200

_SECTIONS = (
    ("new", "New violations", "attention"),
    ("unknown", "Unknown evidence (could not be read)", "warning"),
    ("expiring", "Exceptions expiring soon", "warning"),
    ("resolved", "Resolved since the last run", "good"),
)
_STYLE = {
    Severity.HIGH: "attention",
    Severity.MEDIUM: "warning",
    Severity.LOW: "good",
    Severity.INFO: "default",
}
_TITLE = {"baseline": "First audit", "change": "What changed", "digest": "Daily digest"}


def safe_url(url: str | None) -> str | None:
    """The URL if it is an absolute http(s) URL, else None (never a `javascript:` link)."""
    if url is None:
        return None
    text = url.strip()
    if text.lower().startswith(("https://", "http://")) and " " not in text:
        return text
    return None


def _cut(text: str, limit: int = _TEXT_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": _cut(text), **style}


def _line(*inlines: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(inlines), **extra}


_NBSP = "\u00a0"  # Teams trims a run's edge spaces; a no-break space keeps runs apart


def _facts(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A FactSet: labels and values in two aligned columns (never "Tenant:contoso")."""
    return {
        "type": "FactSet",
        "facts": [{"title": label, "value": _cut(value)} for label, value in pairs],
    }


def _counts(alert: Alert) -> str:
    c = alert.counts
    parts = [f"{c.get(k, 0)} {k}" for k in ("fail", "unknown", "warning", "exempt", "pass")]
    return " · ".join(parts)


def _header(alert: Alert) -> list[dict[str, Any]]:
    org = org_line(alert)
    c = alert.counts
    blocks: list[dict[str, Any]] = [
        {
            "type": "Container",
            "style": _STYLE[alert.severity],
            "bleed": True,
            "items": [
                _line(
                    _run(f"SMTP AUTH audit: {alert.tenant}", size="Large", weight="Bolder"),
                ),
                _line(_run(f"{_TITLE[alert.kind]}: {headline(alert)}", weight="Bolder")),
            ],
        },
    ]
    blocks += _root_cause(alert)
    blocks.append(
        _facts(
            [
                ("Tenant", alert.tenant),
                ("Run", alert.run_id),
                ("Run time (UTC)", alert.evaluated_at.strftime("%Y-%m-%d %H:%M")),
                ("Organisation", org),
                ("Collection", "complete" if alert.complete else "INCOMPLETE: evidence unknown"),
                ("Findings", _counts(alert)),
                (
                    "Mailboxes enabled",
                    f"{c.get('mailboxes_enabled', 0)} of {c.get('mailboxes', 0)} "
                    f"({c.get('mailboxes_enabled_explicit', 0)} explicit, "
                    f"{c.get('mailboxes_enabled_inherited', 0)} inherited)",
                ),
            ]
        )
    )
    if alert.readiness:
        blocks.append(_facts([("Readiness", alert.readiness)]))
    return blocks


def _root_cause(alert: Alert) -> list[dict[str, Any]]:
    root = alert.root_cause
    if root is None:
        return []
    return [
        {
            "type": "Container",
            "style": "attention",
            "separator": True,
            "items": [
                _line(_run(root_cause_text(root), weight="Bolder")),
                _line(_run(root.fix, fontType="Monospace"), spacing="Small"),
            ],
        }
    ]


def _more(alert: Alert, hidden: int) -> dict[str, Any]:
    return {
        "type": "TextBlock",
        "text": f"… and {hidden} more: {alert.more_hint}",
        "isSubtle": True,
        "wrap": True,
        "spacing": "None",
    }


def _section(
    alert: Alert, title: str, colour: str, section: str, detail: str, limit: int
) -> list[dict[str, Any]]:
    """One section of the card: its title with the count, its first `limit` items (their
    detail as `item_detail(section=detail)` says), and how many it leaves out."""
    items: Sequence[AlertItem] = getattr(alert, section)
    if not items:
        return []
    total = alert.total(section)
    out: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": f"{title} ({total})",
            "weight": "Bolder",
            "color": colour,
            "separator": True,
            "wrap": True,
        }
    ]
    for item in items[:limit]:
        out.append(
            _line(
                _run(item.subject, weight="Bolder"),
                _run(f"{_NBSP}· " + item_detail(item, section=detail)),
                spacing="None",
            )
        )
    hidden = total - min(limit, len(items))
    if hidden:
        out.append(_more(alert, hidden))
    return out


def _errors(alert: Alert, limit: int) -> list[dict[str, Any]]:
    if not alert.errors:
        return []
    out: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": f"Collection errors ({len(alert.errors)})",
            "weight": "Bolder",
            "color": "attention",
            "separator": True,
            "wrap": True,
        }
    ]
    shown = alert.errors[: max(limit, 1)]
    for error in shown:
        out.append(
            _line(
                _run(error.source, weight="Bolder"),
                _run(f":{_NBSP}" + error.message),
                spacing="None",
            )
        )
    if len(alert.errors) > len(shown):
        out.append(_more(alert, len(alert.errors) - len(shown)))
    return out


# The renderer's default host config shows at most 5 actions.
MAX_ACTIONS = 5


def _actions(alert: Alert) -> list[dict[str, Any]]:
    """Every open proposal's page (the organisation fix first when it allows), then the report."""
    actions: list[dict[str, Any]] = []
    for link in alert.links:
        url = safe_url(link.url)
        if url:
            actions.append({"type": "Action.OpenUrl", "title": link.title, "url": url})
    if not actions:
        remediation = safe_url(alert.remediation_url)
        if remediation:
            actions.append(
                {"type": "Action.OpenUrl", "title": "Review the proposed fix", "url": remediation}
            )
    report = safe_url(alert.report_url)
    if report:
        actions = actions[: MAX_ACTIONS - 1]
        actions.append({"type": "Action.OpenUrl", "title": "Open the report", "url": report})
    return actions[:MAX_ACTIONS]


def _message(alert: Alert, limit: int) -> dict[str, Any]:
    body = _header(alert)
    # Expired exceptions are always listed (they are few, and easy to miss among inherited).
    body.extend(
        _section(
            alert,
            "Expired exceptions",
            "attention",
            "expired",
            "new",
            max(limit, min(len(alert.expired), 10)),
        )
    )
    for key, title, colour in _SECTIONS:
        if key == "new" and alert.kind == "baseline":
            title = "Violations"
        body.extend(_section(alert, title, colour, key, key, limit))
    body.extend(_errors(alert, limit))
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "fallbackText": _cut(f"SMTP AUTH audit {alert.tenant}: {headline(alert)}"),
        "msteams": {"width": "Full"},
        "body": body,
        "actions": _actions(alert),
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def message_size(message: dict[str, Any]) -> int:
    """Bytes on the wire: the UTF-8 JSON exactly as `notify` posts it."""
    return len(serialize(message))


def serialize(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def build_message(alert: Alert, *, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """The webhook message for `alert`, with as many items per list as fit in `max_bytes`.

    Raises ValueError if even the summary alone does not fit (it cannot with the default
    bound: every text is cut to a few hundred characters).
    """
    for limit in _LIMITS:
        message = _message(alert, limit)
        if message_size(message) <= max_bytes:
            return message
    raise ValueError(f"the alert summary alone exceeds {max_bytes} bytes")
