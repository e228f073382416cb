"""Self-contained HTML for remediation proposals: the confirmation page and the status page.

No external assets (no scripts, styles or images from elsewhere): the page works inside a
locked-down browser and leaks nothing to third parties. Every value is escaped.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from auditor.core.model import Setting
from auditor.core.proposals import Record, Result, Role, State

__all__ = ["confirmation_page", "status_page", "message_page"]

_show = Setting.text  # the one setting codec, short for the many messages below

_STYLE = """
body{font-family:Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;max-width:70rem;color:#1b1b1b}
h1{font-size:1.4rem}table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;font-size:.9rem}
th{background:#f3f3f3}code{font-size:.85rem}.warn{background:#fff4ce;padding:.6rem}
.state{font-weight:bold}.failed{color:#a4262c}.applied,.verified{color:#107c10}
button{font-size:1rem;padding:.5rem 1.2rem;margin-right:1rem}
"""


def _shell(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<meta name='referrer' content='no-referrer'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _role_text(role: Role) -> str:
    return {
        Role.REVOKE: "loses SMTP AUTH",
        Role.PIN: "pinned to false: keeps working",
        Role.ORG: "organisation switch",
        Role.GRANT: "gains SMTP AUTH",
    }[role]


def _closed_note(record: Record, now: datetime | None, successor_url: str | None) -> str:
    """Why this proposal cannot be approved (empty when it can)."""
    if record.state is State.SUPERSEDED:
        if record.superseded_by:
            link = (
                f" <a id='successor' href='{escape(successor_url)}'>"
                f"{escape(record.superseded_by)}</a>"
                if successor_url
                else f" {escape(record.superseded_by)}"
            )
            return (
                "<p class='warn' id='closed'>This proposal was <b>superseded</b>: a later audit "
                f"planned a different change.{link} is the current proposal.</p>"
            )
        return (
            "<p class='warn' id='closed'>This proposal is <b>stale</b>: the latest audit no "
            f"longer proposes it ({escape(record.outcome)}). Nothing here can be approved.</p>"
        )
    if record.state is State.PROPOSED and now is not None and now > record.expires_at:
        return (
            "<p class='warn' id='closed'>This proposal has <b>expired</b>; it can no longer be "
            "approved.</p>"
        )
    if record.state is not State.PROPOSED:
        return (
            f"<p class='warn' id='closed'>This proposal is <b>{escape(record.state.value)}</b>; "
            "it can no longer be approved.</p>"
        )
    return ""


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
    """The plan as the approver will approve it. A GET of this page changes nothing."""
    rows: list[str] = []
    consequences: list[str] = []
    for t in record.targets:
        target = t.target
        if target.role is Role.REVOKE and target.step == 3:
            consequences.append(f"<li>{escape(target.display)}</li>")
            continue
        box = (
            f"<input type='checkbox' name='target' value='{escape(target.key)}' checked "
            f"id='t-{escape(target.key)}'>"
        )
        rows.append(
            "<tr>"
            f"<td>{box}</td><td><label for='t-{escape(target.key)}'>"
            f"{escape(target.display)}</label></td>"
            f"<td>{escape(_role_text(target.role))}</td>"
            f"<td><code>{_show(target.before)}</code> → <code>{_show(target.after)}</code></td>"
            f"<td>{escape(target.reason)}</td></tr>"
        )
    lose_block = ""
    if consequences:
        lose_block = (
            f"<h2>Who loses SMTP AUTH when the organisation is disabled ({len(consequences)})</h2>"
            "<p>These mailboxes inherit (null) and are not allowlisted. They are not written; "
            "each is read back after the organisation switch to verify.</p>"
            f"<ul id='loses'>{''.join(consequences)}</ul>"
        )
    kind_note = (
        "This is a <b>grant</b>: it enables SMTP AUTH."
        if record.kind.value == "grant"
        else "This is a <b>revocation</b>: it only removes SMTP AUTH (pins keep allowlisted "
        "mailboxes working)."
    )
    body = (
        f"<h1>{escape(record.title)}</h1>"
        f"<p>{kind_note}</p>"
        "<table><tr><th>proposal</th><td><code id='proposal-id'>"
        f"{escape(record.id)}</code></td></tr>"
        f"<tr><th>tenant</th><td>{escape(record.tenant)}</td></tr>"
        f"<tr><th>from audit run</th><td>{escape(record.run_id)}</td></tr>"
        "<tr><th>last confirmed by run</th><td id='last-confirmed'>"
        f"{escape(record.last_confirmed)}</td></tr>"
        f"<tr><th>state</th><td class='state' id='state'>{escape(record.state.value)}</td></tr>"
        f"<tr><th>expires</th><td>{escape(record.expires_at.isoformat())}</td></tr>"
        "<tr><th>plan hash</th><td><code id='plan-hash'>"
        f"{escape(record.plan_hash)}</code></td></tr>"
        f"<tr><th>signed in as</th><td>{escape(approver)}</td></tr></table>"
    )
    closed = _closed_note(record, now, successor_url)
    if closed:
        body += closed + f"<p><a href='{escape(status_url)}'>Status</a></p>"
        return _shell(record.title, body)
    body += (
        f"<form method='post' action='{escape(approve_url)}' id='approve-form'>"
        f"<input type='hidden' name='plan_hash' value='{escape(record.plan_hash)}'>"
        f"<input type='hidden' name='csrf' value='{escape(form_token)}'>"
        "<input type='hidden' name='form' value='1'>"
        "<p>Each change is re-checked before it is made and read back after. Untick a row to "
        "leave it out; the organisation switch needs every pin.</p>"
        "<table><tr><th></th><th>mailbox</th><th>effect</th><th>change</th><th>why</th></tr>"
        f"{''.join(rows)}</table>{lose_block}"
        "<p><label><input type='checkbox' name='dry_run' value='true' id='dry-run'> "
        "dry run: only show what would change</label></p>"
        "<button type='submit' id='approve'>Approve</button></form>"
        f"<form method='post' action='{escape(reject_url)}' id='reject-form'>"
        f"<input type='hidden' name='csrf' value='{escape(form_token)}'>"
        "<input type='hidden' name='form' value='1'>"
        "<p><label>Reason (required) <input type='text' name='reason' size='40' required "
        "maxlength='1000'></label> "
        "<button type='submit' id='reject'>Reject</button></p></form>"
    )
    return _shell(record.title, body)


_NOT_RUN = frozenset({State.REJECTED, State.EXPIRED, State.SUPERSEDED})


def status_page(record: Record, trail: list[Any] | None = None) -> str:
    def result(t: Any) -> str:
        # A proposal that never ran has no pending targets: nothing will happen to them.
        if record.state in _NOT_RUN and t.result is Result.PENDING:
            return "not run"
        return str(t.result.value)

    rows = "".join(
        f"<tr class='{escape(result(t))}'><td>{escape(t.target.display)}</td>"
        f"<td>{escape(_role_text(t.target.role))}</td>"
        f"<td><code>{_show(t.target.before)}</code> → <code>{_show(t.target.after)}</code></td>"
        f"<td class='{escape(result(t))}'>{escape(result(t))}</td>"
        f"<td>{escape(t.detail)}</td></tr>"
        for t in record.targets
    )
    rejected = ""
    if record.state is State.REJECTED:
        rejected = (
            f"<tr><th>rejected by</th><td id='rejected-by'>{escape(record.rejected_by or '')}"
            "</td></tr><tr><th>rejected at</th><td id='rejected-at'>"
            f"{escape(record.rejected_at.isoformat() if record.rejected_at else '')}</td></tr>"
            f"<tr><th>reason</th><td id='reject-reason'>{escape(record.reject_reason)}</td></tr>"
        )
    superseded = ""
    if record.state is State.SUPERSEDED:
        superseded = (
            "<tr><th>superseded by</th><td id='superseded-by'>"
            f"{escape(record.superseded_by or 'nothing (stale)')}</td></tr>"
        )
    approved = (
        f"{escape(record.approver_name or '')} ({escape(record.approver_oid or '')}) at "
        f"{escape(record.approved_at.isoformat() if record.approved_at else '')}"
        if record.approver_oid
        else "not approved"
    )
    events = "".join(
        f"<tr><td>{escape(e.at)}</td><td>{escape(e.event)}</td><td>{escape(e.actor)}</td>"
        f"<td>{escape(e.detail)}</td></tr>"
        for e in trail or []
    )
    body = (
        f"<h1>{escape(record.title)}</h1>"
        "<table>"
        f"<tr><th>proposal</th><td><code>{escape(record.id)}</code></td></tr>"
        f"<tr><th>state</th><td class='state' id='state'>{escape(record.state.value)}</td></tr>"
        f"<tr><th>approved by</th><td id='approver'>{approved}</td></tr>{rejected}{superseded}"
        f"<tr><th>outcome</th><td id='outcome'>{escape(record.outcome)}</td></tr>"
        f"<tr><th>plan hash</th><td><code>{escape(record.plan_hash)}</code></td></tr></table>"
        "<h2>Targets</h2><table id='targets'><tr><th>mailbox</th><th>effect</th><th>change</th>"
        f"<th>result</th><th>detail</th></tr>{rows}</table>"
        "<h2>Audit trail</h2><table id='trail'><tr><th>at</th><th>event</th><th>actor</th>"
        f"<th>detail</th></tr>{events}</table>"
    )
    return _shell(f"{record.title}: {record.state.value}", body)


def message_page(title: str, message: str, *, link: str | None = None) -> str:
    more = f"<p><a id='status-link' href='{escape(link)}'>Status</a></p>" if link else ""
    return _shell(title, f"<h1>{escape(title)}</h1><p id='message'>{escape(message)}</p>{more}")
