"""`check IDENTITY`: one mailbox, explained.

Replaces `Get-CASMailbox -Identity X | Format-List SmtpClientAuthenticationDisabled`, which
shows a raw value that means nothing without the organisation's.
"""

from __future__ import annotations

import argparse
import difflib
import json
from datetime import UTC, datetime
from typing import Any

from auditor.app.settings import Settings
from auditor.app.sources import load_snapshot
from auditor.app.wiring import allowlist_now
from auditor.cli.commands.evaluate import parse_today
from auditor.cli.commands.mailboxes import add_source_options
from auditor.cli.options import EXIT_OK, EXIT_UNKNOWN, add_output_options, write_output
from auditor.core.allowlist import find_mailboxes
from auditor.core.errors import CollectionFailed, InputError
from auditor.core.model import Finding, Mailbox, Setting, Snapshot, Status
from auditor.core.policy import evaluate
from auditor.reports.findings import finding_dict
from auditor.reports.html import render_page
from auditor.reports.inventory import mailbox_rows


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "check",
        help="explain one mailbox: raw value, organisation value, effective state, verdict",
        description=(
            "IDENTITY is any identity the allowlist accepts: address, proxy address, UPN, "
            "alias, name, Guid. Exit 0 compliant, 1 fail, 2 no or several matches, 3 unknown."
        ),
    )
    parser.add_argument("identity", metavar="IDENTITY")
    add_source_options(parser)
    add_output_options(parser)
    parser.set_defaults(func=run)


def _candidates(identity: str, mailboxes: tuple[Mailbox, ...]) -> list[str]:
    """Up to five mailboxes the user may have meant: a substring of an identity, or close."""
    needle = identity.strip().lower()
    found = [m.display for m in mailboxes if any(needle in key for key in m.match_keys)]
    if len(found) < 5:
        names = [m.display for m in mailboxes]
        found += difflib.get_close_matches(identity, names, n=5, cutoff=0.6)
    return list(dict.fromkeys(found))[:5]


def find_one(identity: str, snapshot: Snapshot) -> Mailbox:
    """The single mailbox `identity` names; InputError listing candidates otherwise."""
    if snapshot.mailboxes is None:
        raise CollectionFailed(
            f"{snapshot.source}: the per-mailbox settings (Get-CASMailbox) were not collected"
        )
    found = find_mailboxes(identity, snapshot.mailboxes)
    if len(found) == 1:
        return found[0]
    if not found:
        close = _candidates(identity, snapshot.mailboxes)
        hint = f"; did you mean: {', '.join(close)}" if close else ""
        raise InputError(identity, f"matches no mailbox{hint}")
    names = ", ".join(sorted(f"{m.display} ({m.guid})" for m in found))
    raise InputError(identity, f"matches {len(found)} mailboxes: {names}; use an address or Guid")


def _last_change(settings: Settings, mailbox: Mailbox) -> dict[str, Any] | None:
    if not settings.storage:
        return None
    from auditor.app.attribution import attributor
    from auditor.app.wiring import store_from_settings

    store = store_from_settings(settings)
    changes = store.mailbox_changes(mailbox.key)
    if not changes:
        return None
    change = changes[0]
    result: dict[str, Any] = {
        "run_id": change.run_id,
        "kind": change.kind,
        "before": change.before,
        "after": change.after,
    }
    attribute_change = attributor(store) if "setting" in change.fields else None
    if attribute_change is not None:
        after = str((change.after or {}).get("setting") or "")
        identities = {mailbox.key, *mailbox.match_keys}
        result["changed_by"] = attribute_change(change.run_id, identities, after, False).text()
    return result


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    today = parse_today(args.today)
    allowlist = allowlist_now(settings, args.allowlist)
    snapshot = load_snapshot(settings, path=args.snapshot, live=args.live)
    mailbox = find_one(args.identity, snapshot)
    row = next(r for r in mailbox_rows(snapshot, allowlist, today) if r.mailbox is mailbox)
    evaluation = evaluate(snapshot, allowlist, today, evaluated_at=datetime.now(UTC))
    finding: Finding | None = next(
        (
            f
            for f in evaluation.findings
            if f.mailbox is mailbox and f.control == "SMTPAUTH-MAILBOX"
        ),
        None,
    )
    related = [
        f for f in evaluation.findings if f.mailbox is mailbox and f.control != "SMTPAUTH-MAILBOX"
    ]
    if finding is None:
        verdict, reason = "pass", "SMTP AUTH is effectively disabled for this mailbox."
    else:
        verdict, reason = finding.status.value, finding.reason
    entry = row.entry
    result = {
        "mailbox": {
            "primary_smtp_address": mailbox.primary_smtp_address,
            "user_principal_name": mailbox.user_principal_name,
            "guid": mailbox.guid,
            "recipient_type_details": mailbox.recipient_type_details,
        },
        "raw_value": mailbox.setting if mailbox.setting_present else "missing",
        "org_value": snapshot.org_disabled,
        "effective": row.effective.value,
        "enabled_via": row.via,
        "allowlist": {
            "status": row.allowlist or "not listed",
            "entry": entry.identity if entry else None,
            "where": entry.where if entry else None,
            "owner": entry.owner if entry else None,
            "expires": entry.expires.isoformat() if entry and entry.expires else None,
        },
        "last_change": _last_change(settings, mailbox),
        "verdict": verdict,
        "reason": reason,
        "other_findings": [finding_dict(f) for f in related],
        "evidence": snapshot.source,
    }
    write_output(_render(result, args.format), args.out)
    if verdict == Status.FAIL.value:
        return 1
    return EXIT_UNKNOWN if verdict == Status.UNKNOWN.value else EXIT_OK


def _text_value(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return Setting.text(value)
    return str(value)


def _pairs(result: dict[str, Any]) -> list[tuple[str, str]]:
    mb, allow = result["mailbox"], result["allowlist"]
    pairs = [
        (
            "Mailbox",
            f"{mb['primary_smtp_address'] or mb['user_principal_name'] or mb['guid'] or '?'} "
            f"({mb['recipient_type_details'] or 'type unknown'})",
        ),
        ("UPN", _text_value(mb["user_principal_name"])),
        ("Guid", _text_value(mb["guid"])),
        ("SmtpClientAuthenticationDisabled (mailbox)", _text_value(result["raw_value"])),
        ("SmtpClientAuthenticationDisabled (organisation)", _text_value(result["org_value"])),
        (
            "Effective",
            result["effective"] + (f" ({result['enabled_via']})" if result["enabled_via"] else ""),
        ),
        ("Allowlist", allow["status"] + (f" at {allow['where']}" if allow["where"] else "")),
    ]
    if allow["owner"] or allow["expires"]:
        pairs.append(
            ("Exception", f"owner {allow['owner'] or '-'}, expires {allow['expires'] or 'never'}")
        )
    change = result["last_change"]
    if change:
        by = f"; {change['changed_by']}" if change.get("changed_by") else ""
        pairs.append(("Last change", f"{change['kind']} in run {change['run_id']}{by}"))
    pairs.append(("Verdict", f"{result['verdict'].upper()}: {result['reason']}"))
    for other in result["other_findings"]:
        pairs.append(("Also", f"{other['control']} {other['status']}: {other['reason']}"))
    pairs.append(("Evidence", result["evidence"]))
    return pairs


def _render(result: dict[str, Any], fmt: str) -> str:
    import csv
    import io

    if fmt == "json":
        return json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    pairs = _pairs(result)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(("field", "value"))
        for key, value in pairs:
            writer.writerow((key, "'" + value if value[:1] in "=+-@" else value))
        return buffer.getvalue()
    if fmt == "md":
        rows = "\n".join(f"| {k} | {v.replace('|', chr(92) + '|')} |" for k, v in pairs)
        return f"| field | value |\n|---|---|\n{rows}\n"
    if fmt == "html":
        return render_page(
            "table_page.html.j2",
            title="SMTP AUTH check",
            summary=[],
            lead_class="",
            caption="One mailbox, as judged",
            columns=("field", "value"),
            rows=[list(p) for p in pairs],
            footer="",
        )
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width)} : {v}" for k, v in pairs) + "\n"
