"""`make demo`: two nightly audits of an emulated tenant, recorded in a local Table Storage.

1. starts Azurite (in memory, free port) and the Exchange emulator with a generated tenant of
   a few thousand mailboxes (organisation allows SMTP AUTH, some explicit opt-ins, shared and
   resource mailboxes) and writes a CSV allowlist with real-looking exceptions;
2. runs the audit (the same `run_audit` the timer runs), changes a few mailboxes in the
   emulator (fixes, a new violation, a mailbox deleted, one created), runs it again;
3. prints what changed between the two runs and writes HTML/JSON/CSV reports, the list of runs
   and one mailbox's history to the output folder (default `demo-output/`).

The services it started are stopped on success, failure and Ctrl-C; it can be run again.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .config import Settings
from .devservices import ROOT, azurite
from .emulator import Emulator
from .history_report import render_history, render_runs
from .model import Status
from .policy import effective_state
from .queries import mailbox_timeline
from .report import render
from .service import RunSummary, exchange_collector, run_audit
from .store import AuditStore, from_setting
from .tenantgen import Tenant, generate_tenant

DEFAULT_OUT = ROOT / "demo-output"
TOKEN = "demo-emulator-token"  # noqa: S105 - accepted by the local emulator only


def _pick(tenant: Tenant, setting: bool | None, kind: str, count: int, skip: set[str]) -> list[str]:
    out = []
    for guid in sorted(tenant.cas):
        if guid in skip:
            continue
        record = tenant.cas[guid]
        if record["SmtpClientAuthenticationDisabled"] is setting and (
            tenant.mailboxes[guid]["RecipientTypeDetails"] == kind
        ):
            out.append(guid)
            if len(out) == count:
                break
    return out


def write_allowlist(tenant: Tenant, path: Path, today: datetime) -> dict[str, list[str]]:
    """A CSV allowlist with owners, tickets and expiry dates; returns the roles it gave."""
    used: set[str] = set()
    roles: dict[str, list[str]] = {}
    for role, setting, kind, count in (
        ("exempt", False, "UserMailbox", 4),
        ("inherited", None, "SharedMailbox", 1),
        ("unused", True, "UserMailbox", 1),
    ):
        roles[role] = _pick(tenant, setting, kind, count, used)
        used.update(roles[role])
    day = today.date()
    rows = ["Identity,Owner,Reason,Ticket,Expires"]
    for index, guid in enumerate(roles["exempt"]):
        address = tenant.cas[guid]["PrimarySmtpAddress"]
        expires = {0: day + timedelta(days=5), 1: day - timedelta(days=20)}.get(
            index, day + timedelta(days=200)
        )
        rows.append(f"{address},it-ops@contoso.com,Scan to email,CHG00{4100 + index},{expires}")
    for guid in roles["inherited"]:
        upn = tenant.mailboxes[guid]["UserPrincipalName"]
        rows.append(f"{upn},finance@contoso.com,Invoice relay,CHG004200,")
    for guid in roles["unused"]:
        rows.append(f"{tenant.mailboxes[guid]['Alias']},erp@contoso.com,ERP notifications,,")
    rows.append("old-scanner@contoso.com,facilities@contoso.com,Retired copier,CHG003001,")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return roles


def change_tenant(tenant: Tenant, protected: set[str]) -> list[str]:
    """What happens in a tenant between two nights; returns a line per change."""
    notes = []
    for guid in _pick(tenant, False, "UserMailbox", 3, protected):
        tenant.cas[guid]["SmtpClientAuthenticationDisabled"] = True
        notes.append(f"fixed: {tenant.cas[guid]['PrimarySmtpAddress']} set to true (blocked)")
    for guid in _pick(tenant, True, "SharedMailbox", 1, protected):
        tenant.cas[guid]["SmtpClientAuthenticationDisabled"] = False
        notes.append(f"new exception nobody approved: {tenant.cas[guid]['PrimarySmtpAddress']}")
    for guid in _pick(tenant, None, "RoomMailbox", 1, protected):
        notes.append(f"deleted: {tenant.cas[guid]['PrimarySmtpAddress']}")
        del tenant.cas[guid], tenant.mailboxes[guid]
    guid = "5eed0000-0000-4000-8000-000000000001"
    address = "new.printer@contoso.com"
    tenant.cas[guid] = {
        "Guid": guid,
        "ExternalDirectoryObjectId": "5eed0000-0000-4000-8000-0000000000ed",
        "Identity": "new.printer",
        "Name": "new.printer",
        "PrimarySmtpAddress": address,
        "SmtpClientAuthenticationDisabled": False,
    }
    tenant.mailboxes[guid] = {
        "Guid": guid,
        "ExternalDirectoryObjectId": "5eed0000-0000-4000-8000-0000000000ed",
        "UserPrincipalName": address,
        "Alias": "new.printer",
        "Name": "new.printer",
        "PrimarySmtpAddress": address,
        "RecipientTypeDetails": "SharedMailbox",
        "EmailAddresses": [f"SMTP:{address}"],
    }
    notes.append(f"created and explicitly enabled: {address}")
    return notes


def _effective(setting: object, org: bool | None) -> str:
    code = str(setting)
    present = code != "missing"
    value = {"true": True, "false": False}.get(code)
    return effective_state(value, present, org)[0].value


def print_changes(summary: RunSummary) -> None:
    org = summary.evaluation.org_disabled if summary.evaluation else None
    print(f"\nWhat changed between the two audits (run {summary.run_id}):")
    for change in summary.mailbox_changes:
        before, after = change.before or {}, change.after or {}
        if change.kind == "changed":
            print(
                f"  changed   {change.label}: SmtpClientAuthenticationDisabled "
                f"{before.get('setting')} -> {after.get('setting')} (SMTP AUTH "
                f"{_effective(before.get('setting'), org)} -> "
                f"{_effective(after.get('setting'), org)})"
            )
        else:
            print(f"  {change.kind:9} {change.label}: setting {after.get('setting')}")
    titles = {"resolved": "resolved", "status": "changed", "reopened": "reopened"}
    for event in summary.finding_events:
        print(
            f"  finding {titles.get(event.kind, event.kind):8} {event.control} {event.subject}: "
            f"{event.before} -> {event.after}"
        )
    if summary.evaluation is not None:
        new = set(summary.new_findings)
        for finding in summary.evaluation.findings:
            if finding.id in new and finding.status is not Status.PASS:
                print(
                    f"  finding new      {finding.control} {finding.subject}: "
                    f"{finding.status.value}"
                )


def _line(title: str, summary: RunSummary) -> None:
    c = summary.counts
    print(
        f"{title}: run {summary.run_id} {summary.status} in {summary.durations['total']:.1f} s — "
        f"{c.get('mailboxes', 0)} mailboxes, SMTP AUTH enabled on "
        f"{c.get('mailboxes_enabled', 0)}; findings: {c.get('fail', 0)} fail, "
        f"{c.get('exempt', 0)} exempt, {c.get('warning', 0)} warning, "
        f"{c.get('unknown', 0)} unknown; {summary.table_ops.get('writes', 0)} table writes"
    )


def run_demo(out: Path, mailboxes: int) -> int:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    now = datetime.now(UTC)
    tenant = generate_tenant(mailboxes, seed=2026, org_disabled=False)
    roles = write_allowlist(tenant, out / "allowlist.csv", now)
    print(f"Tenant {tenant.domain}: {mailboxes} generated mailboxes; organisation allows SMTP AUTH")
    print(f"Allowlist: {out / 'allowlist.csv'} (owners, tickets, one expiring, one expired)")
    with azurite() as connection, Emulator(tenant, token=TOKEN) as emu:
        print(f"Azurite (Table Storage) and the Exchange emulator ({emu.base_url}) are running")
        settings = Settings.from_env(
            {
                "EXO_TENANT": tenant.domain,
                "EXO_BASE_URL": emu.base_url,
                "EXO_ACCESS_TOKEN": TOKEN,
                "AUDITOR_STORAGE": connection,
                "AUDITOR_ALLOWLIST": str(out / "allowlist.csv"),
            }
        )
        store: AuditStore = from_setting(connection, prefix="demo")
        with exchange_collector(settings) as collect:

            def audit() -> RunSummary:
                return run_audit(
                    store=store,
                    collect=collect,
                    tenant=tenant.domain,
                    allowlist_path=settings.allowlist,
                    expiring_days=settings.expiring_days,
                )

            first = audit()
            _line("\nFirst audit ", first)
            print("\nOvernight in the tenant:")
            protected = {g for guids in roles.values() for g in guids}
            for note in change_tenant(tenant, protected):
                print(f"  {note}")
            time.sleep(0.01)  # distinct run timestamps
            second = audit()
            _line("\nSecond audit", second)
        print_changes(second)
        assert second.evaluation is not None
        for fmt in ("html", "json", "csv"):
            (out / f"findings.{fmt}").write_text(render(second.evaluation, fmt), encoding="utf-8")
        (out / "runs.txt").write_text(render_runs(store.runs(), "text"), encoding="utf-8")
        changes = sorted(second.mailbox_changes, key=lambda c: c.kind != "changed")
        if changes:  # the history of one mailbox that changed, as `history MAILBOX` shows it
            timeline = mailbox_timeline(store, changes[0].label)
            (out / "history.html").write_text(render_history(timeline, "html"), encoding="utf-8")
            print(f"\n{render_history(timeline, 'text')}")
    print(f"Reports written to {out}/: findings.html, findings.json, findings.csv, runs.txt,")
    print("history.html, allowlist.csv. Services stopped.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m auditor.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder")
    parser.add_argument("--mailboxes", type=int, default=3000, help="tenant size (default 3000)")
    args = parser.parse_args(argv)
    if args.mailboxes < 50:
        parser.error("--mailboxes must be at least 50")
    try:
        return run_demo(args.out, args.mailboxes)
    except KeyboardInterrupt:
        print("\ninterrupted: services stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
