"""PURE: the runbook's listings, done right — one row per mailbox with raw and effective state.

The runbook lists mailboxes by raw value (`-eq $true`, `-eq $false`, `-eq $null`); the row also
shows the effective state, so a mailbox that inherits while the organisation allows SMTP AUTH —
the case the runbook's `-eq $false` one-liner misses — is visible at a glance.
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from auditor.core.allowlist import match
from auditor.core.model import Allowlist, AllowlistEntry, Effective, Mailbox, Snapshot
from auditor.core.policy import effective_state
from auditor.reports.html import render_page
from auditor.reports.text import DEFAULT_WIDTH
from auditor.reports.text import table as text_table

__all__ = [
    "SETTING_LABELS",
    "MailboxRow",
    "mailbox_rows",
    "select",
    "tally",
    "render_rows",
    "setting_label",
]

# Runbook vocabulary: the raw SmtpClientAuthenticationDisabled value, named for what it does.
SETTING_LABELS = {True: "disabled", False: "enabled", None: "inherit"}


def setting_label(mailbox: Mailbox) -> str:
    return SETTING_LABELS[mailbox.setting] if mailbox.setting_present else "missing"


@dataclass(frozen=True, slots=True)
class MailboxRow:
    mailbox: Mailbox
    setting: str  # disabled (true) / enabled (false) / inherit (null) / missing
    effective: Effective
    via: str | None
    allowlist: str  # allowlisted / expired / ambiguous / "" (not listed)
    entry: AllowlistEntry | None


def mailbox_rows(snapshot: Snapshot, allowlist: Allowlist, today: date) -> list[MailboxRow]:
    """One row per mailbox of the snapshot (empty when mailboxes were not collected)."""
    mailboxes = snapshot.mailboxes or ()
    matches = match(allowlist, mailboxes)
    ambiguous = matches.ambiguous()
    rows: list[MailboxRow] = []
    for mailbox in mailboxes:
        state, via = effective_state(
            mailbox.setting, mailbox.setting_present, snapshot.org_disabled
        )
        entries = matches.entries_of.get(id(mailbox), [])
        valid = [e for e in entries if e.key not in ambiguous]
        current = [e for e in valid if e.is_current(today)]
        if current:
            status, entry = "allowlisted", current[0]
        elif valid:
            status, entry = "expired", valid[0]
        elif entries:
            status, entry = "ambiguous", entries[0]
        else:
            status, entry = "", None
        rows.append(MailboxRow(mailbox, setting_label(mailbox), state, via, status, entry))
    return rows


def select(
    rows: Iterable[MailboxRow],
    *,
    setting: str | None = None,
    effective: str | None = None,
    types: Sequence[str] = (),
) -> list[MailboxRow]:
    """Filter rows; `types` compares RecipientTypeDetails case-insensitively."""
    wanted_types = {t.lower() for t in types}
    return [
        row
        for row in rows
        if (setting is None or row.setting == setting)
        and (effective is None or row.effective.value == effective)
        and (not wanted_types or (row.mailbox.recipient_type_details or "").lower() in wanted_types)
    ]


def tally(rows: Iterable[MailboxRow]) -> dict[str, int]:
    """The runbook's three counts beside the effective ones."""
    counts = dict.fromkeys(
        (
            "mailboxes",
            "setting_disabled",
            "setting_enabled",
            "setting_inherit",
            "setting_missing",
            "effective_enabled",
            "effective_disabled",
            "effective_unknown",
            "inherit_enabled",
        ),
        0,
    )
    for row in rows:
        counts["mailboxes"] += 1
        counts[f"setting_{row.setting}"] += 1
        counts[f"effective_{row.effective.value}"] += 1
        if row.setting == "inherit" and row.effective is Effective.ENABLED:
            counts["inherit_enabled"] += 1
    return counts


COLUMNS = (
    "mailbox",
    "primary_smtp_address",
    "user_principal_name",
    "guid",
    "recipient_type_details",
    "setting",
    "raw_value",
    "effective",
    "enabled_via",
    "allowlist",
    "owner",
    "expires",
)


def _row_dict(row: MailboxRow) -> dict[str, Any]:
    mb = row.mailbox
    return {
        "mailbox": mb.display,
        "primary_smtp_address": mb.primary_smtp_address,
        "user_principal_name": mb.user_principal_name,
        "guid": mb.guid,
        "recipient_type_details": mb.recipient_type_details,
        "setting": row.setting,
        "raw_value": mb.setting if mb.setting_present else "missing",
        "effective": row.effective.value,
        "enabled_via": row.via,
        "allowlist": row.allowlist or None,
        "owner": row.entry.owner if row.entry else None,
        "expires": row.entry.expires.isoformat() if row.entry and row.entry.expires else None,
    }


def _org(snapshot: Snapshot) -> str:
    return {True: "disabled (true)", False: "enabled (false)", None: "unknown"}[
        snapshot.org_disabled
    ]


def _summary_lines(snapshot: Snapshot, counts: dict[str, int]) -> list[str]:
    return [
        f"Tenant: {snapshot.tenant}   collected: {snapshot.collected_at.isoformat()}",
        f"Organisation SMTP AUTH: {_org(snapshot)}",
        f"Raw setting:  explicit disabled (true) {counts['setting_disabled']} | "
        f"explicit enabled (false) {counts['setting_enabled']} | "
        f"inheriting (null) {counts['setting_inherit']} | missing {counts['setting_missing']}",
        f"Effective:    enabled {counts['effective_enabled']} | "
        f"disabled {counts['effective_disabled']} | unknown {counts['effective_unknown']}"
        f"   (inheriting and enabled by the organisation: {counts['inherit_enabled']})",
    ]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def render_rows(
    snapshot: Snapshot,
    rows: Sequence[MailboxRow],
    counts: dict[str, int],
    fmt: str,
    *,
    width: int = DEFAULT_WIDTH,
) -> str:
    """The listing in every `--format` (text, json, csv, md, html)."""
    dicts = [_row_dict(r) for r in rows]
    if fmt == "json":
        document = {
            "schema": "smtp-auth-mailboxes/1",
            "tenant": snapshot.tenant,
            "collected_at": snapshot.collected_at.isoformat(),
            "org_setting": snapshot.org_disabled,
            "counts": counts,
            "mailboxes": dicts,
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for d in dicts:
            writer.writerow([_cell(d[c]) for c in COLUMNS])
        return buffer.getvalue()
    summary = _summary_lines(snapshot, counts)
    shown = (
        "primary_smtp_address",
        "recipient_type_details",
        "setting",
        "effective",
        "enabled_via",
        "allowlist",
    )
    if fmt == "md":
        lines = ["# SMTP AUTH by mailbox", "", *[f"- {s}" for s in summary], ""]
        lines.append("| " + " | ".join(shown) + " |")
        lines.append("|" + "---|" * len(shown))
        for d in dicts:
            lines.append("| " + " | ".join(_cell(d[c]).replace("|", "\\|") for c in shown) + " |")
        return "\n".join(lines) + "\n"
    if fmt == "html":
        allows = snapshot.org_disabled is False
        return render_page(
            "table_page.html.j2",
            title=f"SMTP AUTH by mailbox — {snapshot.tenant}",
            summary=summary,
            lead_class="" if allows else "ok",
            caption=f"{len(dicts)} of {counts['mailboxes']} mailbox(es) listed",
            columns=shown,
            rows=[[_cell(d[c]) for c in shown] for d in dicts],
            footer="",
        )
    titles = ("MAILBOX", "TYPE", "SETTING", "EFFECTIVE", "VIA", "ALLOWLIST")
    lines = [w for s in summary for w in textwrap.wrap(s, max(width, 40)) or [""]]
    lines.append("")
    lines += text_table(titles, [[_cell(d[c]) for c in shown] for d in dicts], width)
    lines.append(f"{len(dicts)} of {counts['mailboxes']} mailbox(es) listed")
    return "\n".join(lines) + "\n"
