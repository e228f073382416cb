"""`apply-allowlist FILE`: the allowlist as desired state, through an approved grant.

Replaces the runbook's loop

    Get-Content allowlist.txt | foreach {
        Set-CASMailbox -Identity $_ -SmtpClientAuthenticationDisabled $false }

which changes the tenant directly, errors on names that match nothing or several mailboxes,
and re-enables expired exceptions. `--dry-run` shows, entry by entry, what that loop would do
and what the grant proposal contains; without it the grant proposal is stored for approval
(never a direct change). Revocations are never part of it: an approver never enables and
disables in one click.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditor.app import wiring
from auditor.app.settings import Settings
from auditor.app.sources import latest_snapshot, live_snapshot
from auditor.cli.commands.evaluate import parse_today
from auditor.cli.options import EXIT_OK, EXIT_UNKNOWN, write_output
from auditor.core import routes
from auditor.core.allowlist import match, read_allowlist
from auditor.core.errors import CollectionFailed, ConfigError
from auditor.core.model import Allowlist, Mailbox, Setting, Snapshot
from auditor.core.policy import effective_state, evaluate
from auditor.core.proposals import Proposal
from auditor.core.snapshot import read_snapshot
from auditor.remediation.plan import plan_grants


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "apply-allowlist",
        help="propose enabling SMTP AUTH on the allowlisted mailboxes (approval-gated)",
        description=(
            "Compare FILE with the tenant and propose a grant (set false) for each current, "
            "unambiguous entry whose mailbox is disabled or only inherits. --dry-run shows the "
            "diff; otherwise the proposal is stored and must be approved."
        ),
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="allowlist (.txt or .csv)")
    parser.add_argument("--dry-run", action="store_true", help="show the diff, store nothing")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--snapshot", type=Path, help="use this snapshot file")
    source.add_argument("--live", action="store_true", help="read the tenant now")
    parser.add_argument("--today", help="judge exception expiry as of this UTC date")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--out", type=Path, help="write to this file instead of standard output")
    parser.set_defaults(func=run)


def _raw(mailbox: Mailbox) -> str:
    return Setting.code(mailbox.setting, mailbox.setting_present)


def _loop_effect(mailboxes: list[Mailbox]) -> str:
    """What `Set-CASMailbox -Identity <entry> -SmtpClientAuthenticationDisabled $false` does."""
    if not mailboxes:
        return "error: no such mailbox"
    if len(mailboxes) > 1:
        return f"error: matches {len(mailboxes)} mailboxes"
    mailbox = mailboxes[0]
    if not mailbox.setting_present:
        return "set false (current value unknown)"
    return "no change (already false)" if mailbox.setting is False else "set false"


def diff_rows(
    snapshot: Snapshot, allowlist: Allowlist, proposal: Proposal | None, today: Any
) -> list[dict[str, Any]]:
    """One row per allowlist entry: the mailbox, its state, the runbook's effect, ours."""
    mailboxes = snapshot.mailboxes or ()
    matches = match(allowlist, mailboxes)
    granted = {t.guid for t in proposal.targets} if proposal else set()
    rows: list[dict[str, Any]] = []
    for entry in allowlist.entries:
        named = matches.mailboxes_of.get(entry.key, [])
        mailbox = named[0] if len(named) == 1 else None
        state = via = None
        if mailbox is not None:
            effective, via = effective_state(
                mailbox.setting, mailbox.setting_present, snapshot.org_disabled
            )
            state = effective.value
        if mailbox is not None and mailbox.guid in granted:
            ours = "grant: set false"
        elif not entry.is_current(today):
            ours = f"not proposed: the exception expired on {entry.expires}"
        elif not named:
            ours = "not proposed: no such mailbox"
        elif len(named) > 1:
            ours = "not proposed: ambiguous entry"
        elif mailbox is not None and not mailbox.setting_present:
            ours = "not proposed: current value unknown"
        else:
            ours = "nothing to do (already enabled explicitly)"
        rows.append(
            {
                "entry": entry.identity,
                "where": entry.where,
                "mailbox": mailbox.display if mailbox else None,
                "candidates": [m.display for m in named] if len(named) > 1 else [],
                "setting": _raw(mailbox) if mailbox else None,
                "effective": state,
                "enabled_via": via,
                "runbook_loop": _loop_effect(named),
                "auditor": ours,
            }
        )
    return rows


def _load(settings: Settings, args: argparse.Namespace) -> tuple[Snapshot, str]:
    now = datetime.now(UTC)
    if args.snapshot is not None:
        return read_snapshot(args.snapshot), f"file-{now:%Y%m%dT%H%M%S}"
    if args.live:
        return live_snapshot(settings), f"live-{now:%Y%m%dT%H%M%S}"
    return latest_snapshot(settings)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    today = parse_today(args.today)
    allowlist = read_allowlist(args.file)
    snapshot, run_id = _load(settings, args)
    if snapshot.mailboxes is None:
        raise CollectionFailed(
            f"{snapshot.source}: the per-mailbox settings (Get-CASMailbox) were not collected"
        )
    now = datetime.now(UTC)
    evaluation = evaluate(snapshot, allowlist, today, evaluated_at=now)
    proposals = plan_grants(
        evaluation, run_id=run_id, created_at=now, expiry_days=settings.remediation_expiry_days
    )
    proposal = proposals[0] if proposals else None
    rows = diff_rows(snapshot, allowlist, proposal, today)
    notes: list[str] = []
    configured = settings.allowlist
    if configured is None or configured.resolve() != args.file.resolve():
        notes.append(
            "Approval re-checks every target against the configured allowlist "
            f"(AUDITOR_ALLOWLIST={configured or 'unset'}); targets it does not list are skipped."
        )
    stored = False
    if proposal is not None and not args.dry_run:
        stored = _store(settings, proposal, now)
    result = {
        "allowlist": str(args.file),
        "evidence": snapshot.source,
        "dry_run": bool(args.dry_run),
        "proposal": None
        if proposal is None
        else {
            "id": proposal.id,
            "plan_hash": proposal.plan_hash,
            "expires_at": proposal.expires_at.isoformat(),
            "gains": list(proposal.gains),
            "stored": stored,
            "url": _url(settings, proposal.id) if stored else None,
        },
        "entries": rows,
        "notes": notes,
    }
    write_output(_render(result, args.format), args.out)
    return EXIT_UNKNOWN if snapshot.errors else EXIT_OK


def _store(settings: Settings, proposal: Proposal, now: datetime) -> bool:

    if not settings.storage:
        raise ConfigError("AUDITOR_STORAGE", "is required to store the grant proposal")
    store = wiring.proposal_store(settings)
    store.save(proposal, now=now)
    return True


def _url(settings: Settings, proposal_id: str) -> str | None:
    return routes.remediation_url(settings.remediation_public_url, proposal_id)


def _render(result: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    lines = [f"Allowlist: {result['allowlist']}   evidence: {result['evidence']}", ""]
    for row in result["entries"]:
        state = (
            f"SmtpClientAuthenticationDisabled {row['setting']}, effective {row['effective']}"
            + (f" ({row['enabled_via']})" if row["enabled_via"] else "")
            if row["mailbox"]
            else "-"
        )
        lines.append(f"{row['entry']}  ({row['where']})")
        lines.append(f"    mailbox:      {row['mailbox'] or ', '.join(row['candidates']) or '-'}")
        lines.append(f"    now:          {state}")
        lines.append(f"    runbook loop: {row['runbook_loop']}")
        lines.append(f"    auditor:      {row['auditor']}")
    lines.append("")
    proposal = result["proposal"]
    if proposal is None:
        lines.append("No grant needed: every current allowlisted mailbox is enabled explicitly.")
    elif result["dry_run"]:
        lines.append(
            f"Dry run: a grant proposal would enable {len(proposal['gains'])} mailbox(es); "
            "nothing was stored or changed."
        )
    else:
        lines.append(
            f"Grant proposal {proposal['id']} stored (plan hash {proposal['plan_hash'][:12]}..., "
            f"expires {proposal['expires_at']}); it changes nothing until approved."
        )
        lines.append(
            f"Confirm at {proposal['url']}"
            if proposal["url"]
            else f"Approve with: python -m auditor approve {proposal['id']} --as TOKEN"
        )
    lines.extend(f"note: {note}" for note in result["notes"])
    return "\n".join(lines) + "\n"
