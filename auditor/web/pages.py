"""Self-contained HTML for remediation proposals: the confirmation, status and message pages.

The presentation lives in Jinja2 templates (`auditor/reports/templates/confirmation.html.j2`,
`status.html.j2`, `message.html.j2`), autoescaped, sharing the reports' one inline stylesheet.
No external assets (no scripts, styles or images from elsewhere): the page works inside a
locked-down browser and leaks nothing to third parties. Unlike the reports, these pages
carry no script at all (the web layer's Content-Security-Policy allows none): long lists are
collapsed, sorted and offered as a CSV download, and the browser's find-in-page searches them.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from auditor.core.model import Setting
from auditor.core.proposals import Record, Result, Role, State, type_counts, will_break
from auditor.reports.html import render_page

__all__ = ["confirmation_page", "status_page", "message_page", "dry_run_page"]

_show = Setting.text  # the one setting codec, short for the many messages below


def _role_text(role: Role) -> str:
    return {
        Role.REVOKE: "loses SMTP AUTH",
        Role.PIN: "pinned to false: keeps working",
        Role.ORG: "organisation switch",
        Role.GRANT: "gains SMTP AUTH",
    }[role]


def _kind_copy(record: Record, has_org: bool, changes: int, loses: int) -> tuple[str, str, str]:
    """(headline, note, button label) that fit the proposal's kind."""
    if record.kind.value == "grant":
        return (
            f"Enable SMTP AUTH for {changes} allowlisted mailbox(es)",
            "This is a grant: it enables SMTP AUTH, only for mailboxes the allowlist names.",
            f"Approve {changes} grant(s)",
        )
    if has_org:
        return (
            f"1 change fixes {loses} mailbox(es): disable SMTP AUTH for the organisation",
            "This is a revocation: allowlisted mailboxes that inherit are pinned to false first "
            "so they keep working, then the organisation switch is set to true.",
            "Approve the organisation fix",
        )
    return (
        f"Disable SMTP AUTH on {changes} mailbox(es)",
        "This is a revocation: it only removes SMTP AUTH from mailboxes that are not allowlisted.",
        f"Approve {changes} change(s)",
    )


def _csv_uri(names: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["mailbox"])
    for name in names:
        writer.writerow(["'" + name if name[:1] in ("=", "+", "-", "@") else name])
    return "data:text/csv;charset=utf-8," + quote(buffer.getvalue())


def confirmation_page(
    record: Record,
    *,
    approve_url: str,
    reject_url: str,
    status_url: str,
    form_token: str,
    approver: str,
    now: datetime | None = None,
    successor_url: str | None = None,
) -> str:
    """The plan as the approver will approve it. A GET of this page changes nothing. A
    superseded, stale, expired or closed proposal says why and offers nothing to approve."""
    rows: list[dict[str, str]] = []
    loses: list[str] = []
    for t in record.targets:
        target = t.target
        if target.role is Role.REVOKE and target.step == 3:
            loses.append(target.display)
            continue
        rows.append(
            {
                "key": target.key,
                "display": target.display,
                "effect": _role_text(target.role),
                "before": _show(target.before),
                "after": _show(target.after),
                "reason": target.reason,
            }
        )
    loses.sort(key=str.lower)
    has_org = any(t.target.role is Role.ORG for t in record.targets)
    by_role = Counter(t.target.role for t in record.targets)
    counts = [
        (_role_text(role).replace("loses", "lose" if n != 1 else "loses"), n)
        for role, n in sorted(by_role.items(), key=lambda kv: kv[0])
    ]
    headline, note, label = _kind_copy(record, has_org, len(rows), len(loses))
    closed = _closed(record, now)
    breaking = [(b.display, b.reason) for b in will_break(t.target for t in record.targets)]
    return render_page(
        "confirmation.html.j2",
        record=record,
        breaking=breaking,
        by_type=type_counts(t.target for t in record.targets),
        proposed=not closed,
        closed=closed,
        successor_url=successor_url,
        approve_url=approve_url,
        reject_url=reject_url,
        status_url=status_url,
        form_token=form_token,
        approver=approver,
        rows=rows,
        loses=loses,
        has_org=has_org,
        counts=counts,
        headline=headline,
        kind_note=note,
        approve_label=label,
        csv_uri=_csv_uri(loses),
        csv_name=f"{record.id}-loses-smtp-auth.csv",
        scripts=False,
    )


def _closed(record: Record, now: datetime | None) -> str:
    """Why this proposal cannot be approved: "superseded", "stale", "expired", its state, or ""."""
    if record.state is State.SUPERSEDED:
        return "superseded" if record.superseded_by else "stale"
    if record.state is State.PROPOSED and now is not None and now > record.expires_at:
        return "expired"
    return "" if record.state is State.PROPOSED else record.state.value


# States in which a proposal never ran: its pending targets will not happen.
_NOT_RUN = frozenset({State.REJECTED, State.EXPIRED, State.SUPERSEDED})


def status_page(record: Record, trail: list[Any] | None = None) -> str:
    def result(t: Any) -> str:
        if record.state in _NOT_RUN and t.result is Result.PENDING:
            return "not run"
        return str(t.result.value)

    rows = [
        {
            "display": t.target.display,
            "effect": _role_text(t.target.role),
            "before": _show(t.target.before),
            "after": _show(t.target.after),
            "result": result(t),
            "detail": t.detail,
        }
        for t in record.targets
    ]
    approved = (
        f"{record.approver_name or ''} ({record.approver_oid or ''}) at "
        f"{record.approved_at.isoformat() if record.approved_at else ''}"
        if record.approver_oid
        else "not approved"
    )
    results = sorted(Counter(r["result"] for r in rows).items())
    lead = {"applied": "ok", "failed": "", "partially_applied": ""}.get(
        record.state.value, "unknown"
    )
    return render_page(
        "status.html.j2",
        record=record,
        rows=rows,
        approved=approved,
        results=results,
        trail=list(trail or []),
        lead_class=lead,
        scripts=False,
    )


def message_page(
    title: str,
    message: str,
    *,
    link: str | None = None,
    back: str | None = None,
    link_label: str = "Open the status page",
) -> str:
    """A short result or error page, always with a way on: the status page, back to the
    proposal, or (with neither) a word about the browser's Back button."""
    return render_page(
        "message.html.j2",
        title=title,
        message=message,
        link=link,
        back=back,
        link_label=link_label,
        rows=[],
        columns=(),
        caption="",
        scripts=False,
    )


def dry_run_page(
    record: Record,
    lines: Sequence[dict[str, Any]],
    *,
    back: str | None = None,
    breaking: Sequence[dict[str, str]] = (),
) -> str:
    """The dry run's result as a table: what each selected target would do now, after the
    selected targets that will break (used SMTP AUTH in the sign-in window), first and apart."""
    actions = Counter(str(x.get("action", "")) for x in lines)
    summary = ", ".join(f"{n} {a}" for a, n in sorted(actions.items())) or "no target"
    return render_page(
        "message.html.j2",
        title="Dry run: nothing changed",
        message=f"{record.title}: {len(lines)} target(s) previewed ({summary}).",
        link=None,
        back=back,
        link_label="",
        breaking=[(b["display"], b["detail"]) for b in breaking],
        rows=[
            [
                str(x.get("display") or x.get("key") or ""),
                str(x.get("action", "")),
                str(x.get("detail", "")),
            ]
            for x in lines
        ],
        columns=("mailbox", "would", "detail"),
        caption="What an approval would do now",
        scripts=False,
    )
