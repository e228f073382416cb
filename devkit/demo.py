"""`make demo`: two nightly audits of an emulated tenant, recorded in a local Table Storage.

1. starts Azurite (in memory, free port) and the Exchange emulator with a generated tenant of
   a few thousand mailboxes (organisation allows SMTP AUTH, some explicit opt-ins, shared and
   resource mailboxes) and writes a CSV allowlist with real-looking exceptions;
2. runs the audit (the same `run_audit` the timer runs), changes a few mailboxes in the
   emulator (fixes, a new violation, a mailbox deleted, one created), runs it again;
3. prints what changed between the two runs and writes HTML/JSON/CSV reports, the list of runs
   and one mailbox's history to the output folder (default `demo-output/`).

The services it started are stopped on success, failure, Ctrl-C and SIGTERM; it can be run
again. The recorded runs stay in `<out>/storage/` (Azurite `--location`), and the demo prints
the commands and environment that read them again (`show latest`, `runs`, `history`).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from auditor.app import wiring
from auditor.app.alerting import run_alerter
from auditor.app.audit import RunSummary, run_audit
from auditor.app.queries import mailbox_timeline
from auditor.app.settings import Settings
from auditor.core.model import Setting, Status
from auditor.core.policy import effective_state
from auditor.core.proposals import TERMINAL, Record
from auditor.core.routes import remediation_url
from auditor.reports.findings import render
from auditor.reports.history import render_history, render_runs
from auditor.reports.trend import trend
from auditor.web import runtime as remediation_runtime
from devkit import demo_usage
from devkit.demo_identity import DemoIdentity
from devkit.demo_usage import admin_change, collectors, print_usage, seed_signins
from devkit.devserver import DevServer
from devkit.devservices import ROOT, azurite, azurite_command, free_port
from devkit.emulator import Emulator
from devkit.graph_emulator import GraphEmulator
from devkit.receiver import Receiver
from devkit.tenantgen import Tenant, generate_tenant

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
    value, present = Setting.from_code(str(setting))
    return effective_state(value, present, org)[0].value


def _capped(lines: list[str], limit: int, what: str) -> None:
    for line in lines[:limit]:
        print(line)
    if len(lines) > limit:
        print(f"  ... and {len(lines) - limit} more {what} (see `python -m auditor runs` / `show`)")


def print_changes(summary: RunSummary) -> None:
    org = summary.evaluation.org_disabled if summary.evaluation else None
    print(f"\nWhat changed between the two audits (run {summary.run_id}):")
    others, changed = [], []
    for change in summary.mailbox_changes:
        before, after = change.before or {}, change.after or {}
        if change.kind == "changed":
            changed.append(
                f"  changed   {change.label}: SmtpClientAuthenticationDisabled "
                f"{before.get('setting')} -> {after.get('setting')} (SMTP AUTH "
                f"{_effective(before.get('setting'), org)} -> "
                f"{_effective(after.get('setting'), org)})"
            )
        else:
            others.append(f"  {change.kind:9} {change.label}: setting {after.get('setting')}")
    _capped(others + changed, 10, "mailbox changes")
    titles = {"resolved": "resolved", "status": "changed", "reopened": "reopened"}
    events = [
        f"  finding {titles.get(event.kind, event.kind):8} {event.control} {event.subject}: "
        f"{event.before} -> {event.after}"
        for event in summary.finding_events
    ]
    if summary.evaluation is not None:
        new = set(summary.new_findings)
        events[:0] = [
            f"  finding new      {finding.control} {finding.subject}: {finding.status.value}"
            for finding in summary.evaluation.findings
            if finding.id in new and finding.status is not Status.PASS
        ]
    _capped(events, 10, "finding changes")


def _line(title: str, summary: RunSummary) -> None:
    c = summary.counts
    print(
        f"{title}: run {summary.run_id} {summary.status} in {summary.durations['total']:.1f} s — "
        f"{c.get('mailboxes', 0)} mailboxes, SMTP AUTH enabled on "
        f"{c.get('mailboxes_enabled', 0)}; findings: {c.get('fail', 0)} fail, "
        f"{c.get('exempt', 0)} exempt, {c.get('warning', 0)} warning, "
        f"{c.get('unknown', 0)} unknown; {summary.table_ops.get('writes', 0)} table writes"
    )


def demo_env(
    *,
    tenant: Tenant,
    emulator: Emulator,
    connection: str,
    allowlist: Path,
    teams: Receiver,
    graph: Receiver,
    idp: DemoIdentity,
    public_url: str,
) -> dict[str, str]:
    """The app settings of the demo: every service is local, every secret throwaway."""
    return {
        "EXO_TENANT": tenant.domain,
        "EXO_BASE_URL": emulator.base_url,
        "EXO_ACCESS_TOKEN": TOKEN,
        "AUDITOR_STORAGE": connection,
        "AUDITOR_TABLE_PREFIX": "demo",
        "AUDITOR_ALLOWLIST": str(allowlist),
        "ALERT_TEAMS_WEBHOOK_URL": f"{teams.url}/workflows/demo/triggers/manual/paths/invoke",
        "ALERT_EMAIL_FROM": "smtp-auditor@contoso.com",
        "ALERT_EMAIL_TO": "secops@contoso.com",
        "GRAPH_BASE_URL": graph.url,
        "GRAPH_ACCESS_TOKEN": "demo-graph-token",
        "APPROVER_TENANT_ID": idp.tenant,
        "APPROVER_AUDIENCE": idp.audience,
        "APPROVER_ROLE": idp.role,
        "APPROVER_JWKS_URL": idp.jwks_url,
        "AUDITOR_FORM_SECRET": secrets.token_hex(32),
        "APPROVAL_SIGNING_KEY": secrets.token_hex(32),
        "REMEDIATION_PUBLIC_URL": public_url,
    }


def print_proposals(settings: Settings, ids: tuple[str, ...]) -> list[Record]:
    store = wiring.proposal_store(settings)
    records = [store.get(pid) for pid in ids]
    print("\nProposed remediations (nothing changes until a named approver approves):")
    for record in records:
        print(
            f"  {record.id}  {record.kind.value:10} {record.title} ({len(record.targets)} targets)"
        )
        print(f"      confirm: {remediation_url(settings.remediation_public_url, record.id)}")
    return records


def approve_from_cli(env: dict[str, str], record: Record, token_file: Path) -> None:
    """Approve as the demo approver, exactly as a person would: `python -m auditor approve`."""
    command = [
        sys.executable,
        "-m",
        "auditor",
        "approve",
        record.id,
        "--as",
        str(token_file),
        "--plan-hash",
        record.plan_hash,
    ]
    print(f"\nApproving {record.id} as the demo approver:")
    print(
        f"  $ python -m auditor approve {record.id} --as {token_file.name} "
        f"--plan-hash {record.plan_hash[:12]}..."
    )
    done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        command,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    for line in lines[:8]:
        print(f"    {line}")
    if len(lines) > 8:
        print(f"    ... ({len(lines) - 8} more lines)")
    if done.returncode != 0:
        raise RuntimeError(f"approval failed (exit {done.returncode})")


def wait_until_done(settings: Settings, record: Record, timeout: float = 300.0) -> Record:
    """A queued approval runs in the background (the queue function): wait for its outcome."""
    store = wiring.proposal_store(settings)
    deadline = time.monotonic() + timeout
    current = store.get(record.id)
    while current.state not in TERMINAL:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{record.id} still {current.state.value} after {timeout:.0f} s")
        time.sleep(0.2)
        current = store.get(record.id)
    results: dict[str, int] = {}
    for target in current.targets:
        results[target.result.value] = results.get(target.result.value, 0) + 1
    print(
        f"  executed: {current.state.value} — "
        + ", ".join(f"{count} {name}" for name, count in sorted(results.items()))
        + " (each target re-read before the change and read back after it)"
    )
    return current


def write_alert_files(out: Path, graph: Receiver) -> None:
    """Each email as the HTML a reader would see, beside the raw requests the receivers wrote."""
    for number, request in enumerate(graph.requests, start=1):
        message = request.json().get("message", {})
        html = message.get("body", {}).get("content", "")
        (out / f"email-{number:03d}.html").write_text(html, encoding="utf-8")


def run_demo(out: Path, mailboxes: int, serve: bool) -> int:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    alerts = out / "alerts"
    now = datetime.now(UTC)
    tenant = generate_tenant(mailboxes, seed=2026, org_disabled=False)
    roles = write_allowlist(tenant, out / "allowlist.csv", now)
    print(f"Tenant {tenant.domain}: {mailboxes} generated mailboxes; organisation allows SMTP AUTH")
    print(f"Allowlist: {out / 'allowlist.csv'} (owners, tickets, one expiring, one expired)")
    with ExitStack() as stack:
        storage = out / "storage"
        storage_port = free_port()
        connection = stack.enter_context(azurite(location=storage, port=storage_port))
        emu = stack.enter_context(Emulator(tenant, token=TOKEN))
        teams = stack.enter_context(Receiver("teams", out_dir=alerts))
        graph = stack.enter_context(Receiver("graph", out_dir=alerts))
        signins = stack.enter_context(GraphEmulator(token=demo_usage.GRAPH_TOKEN))
        idp = stack.enter_context(DemoIdentity())
        port = free_port()
        env = demo_env(
            tenant=tenant,
            emulator=emu,
            connection=connection,
            allowlist=out / "allowlist.csv",
            teams=teams,
            graph=graph,
            idp=idp,
            public_url=f"http://127.0.0.1:{port}",
        )
        settings = Settings.from_env(env)
        http = stack.enter_context(httpx.Client(timeout=30.0))
        token_file = out / "approver.token"
        token_file.write_text(
            idp.token(
                name="Dana Demo (approver)", object_id="de000000-0000-4000-8000-00000000a11c"
            ),
            encoding="utf-8",
        )
        remediation_runtime.install(remediation_runtime.build_service(settings, http=http))
        stack.callback(remediation_runtime.reset)
        import function_app

        server = DevServer(
            function_app.app.get_functions(),
            port=port,
            inject_token=token_file.read_text(encoding="utf-8") if serve else None,
        ).start()
        stack.callback(server.stop)
        print(
            f"Azurite, the Exchange emulator ({emu.base_url}), Teams and Graph receivers, a demo "
            f"identity provider and function_app's HTTP functions ({server.url}/api/) are running"
        )
        store = wiring.store_from_settings(settings)
        alerter = run_alerter(settings, http=http, ledger=store, store=store)
        proposer = wiring.proposer_from_settings(settings)
        collect = stack.enter_context(wiring.exchange_collector(settings))
        for note in seed_signins(signins, tenant, roles, now):  # usage evidence (issue 15)
            print(f"Sign-ins: {note}")
        usage, change_log, exchange = collectors(signins, emu, tenant, TOKEN, http)

        def audit() -> RunSummary:
            return run_audit(
                store=store,
                collect=collect,
                tenant=tenant.domain,
                allowlist_path=settings.allowlist,
                expiring_days=settings.expiring_days,
                alerter=alerter,
                proposer=proposer,
                usage=usage,
                changes=change_log,
            )

        first = audit()
        _line("\nFirst audit ", first)
        print(f"  alerts: {first.alerts}")
        records = print_proposals(settings, first.proposals)
        fix = next((r for r in records if r.id.startswith("rev-mai")), None)
        if fix is not None:
            approve_from_cli(env, fix, token_file)
            fix = wait_until_done(settings, fix)
        print("\nDuring the day in the tenant:")
        protected = {g for guids in roles.values() for g in guids}
        for note in change_tenant(tenant, protected):
            print(f"  {note}")
        changed_by_hand = admin_change(emu, exchange, tenant, protected)
        print(f"  alice@contoso.com enabled SMTP AUTH for {changed_by_hand} (Set-CASMailbox)")
        time.sleep(0.01)  # distinct run timestamps
        second = audit()
        _line("\nSecond audit", second)
        print(f"  alerts: {second.alerts}")
        if fix is not None:
            verify_fix(second, fix)
        print_changes(second)
        assert second.evaluation is not None
        history = print_usage(
            second.evaluation, print_proposals(settings, second.proposals), store, changed_by_hand
        )
        (out / "usage-history.txt").write_text(history, encoding="utf-8")
        chart = trend(store.runs(), upto=second.run_id)
        for fmt in ("html", "json", "csv"):
            page = render(second.evaluation, fmt, trend=chart)
            (out / f"findings.{fmt}").write_text(page, encoding="utf-8")
        (out / "runs.txt").write_text(render_runs(store.runs(), "text"), encoding="utf-8")
        changes = sorted(second.mailbox_changes, key=lambda c: c.kind != "changed")
        if changes:  # the history of one mailbox that changed, as `history MAILBOX` shows it
            timeline = mailbox_timeline(store, changes[0].label)
            (out / "history.html").write_text(render_history(timeline, "html"), encoding="utf-8")
            print(f"\n{render_history(timeline, 'text')}")
        write_alert_files(alerts, graph)
        print(f"Reports written to {out}/: findings.html, findings.json, findings.csv, runs.txt,")
        print(
            f"history.html, allowlist.csv; in {alerts}/ the alerts of the two runs and the "
            f"remediation's outcome ({len(teams.requests)} Teams, {len(graph.requests)} email)."
        )
        print_reuse(out, storage, storage_port, connection, tenant.domain)
        if not serve:
            print(
                "To open the confirmation pages in a browser, signed in as the demo approver: "
                ".venv/bin/python -m devkit.demo --serve"
            )
        if serve:
            pending = [r for r in records if r.id != (fix.id if fix else None)]
            print("\nServing the confirmation pages until Ctrl+C (signed in as the demo approver):")
            for record in pending:
                print(f"  {remediation_url(server.url, record.id)}")
            assert server.thread is not None
            while server.thread.is_alive():
                server.thread.join(timeout=1.0)
    print("Services stopped.")
    return 0


def print_reuse(out: Path, storage: Path, port: int, connection: str, domain: str) -> None:
    """The exact commands to read the demo's recorded runs again after it stopped."""
    command = " ".join(shlex.quote(part) for part in azurite_command(port, storage))
    env = (
        f"AUDITOR_STORAGE={shlex.quote(connection)} AUDITOR_TABLE_PREFIX=demo "
        f"EXO_TENANT={domain} AUDITOR_ALLOWLIST={shlex.quote(str(out / 'allowlist.csv'))}"
    )
    print(f"\nThe recorded runs are kept in {storage}/. To read them again later:")
    print(f"  AZURITE_ACCEPT_EULA=true {command} &")
    print(f"  export {env}")
    print("  .venv/bin/python -m auditor show latest")
    print("  .venv/bin/python -m auditor runs")


def verify_fix(summary: RunSummary, record: Record) -> None:
    """The approved fix, as the next audit sees it: every revoked mailbox now disabled."""
    evaluation = summary.evaluation
    assert evaluation is not None
    failing = {
        f.mailbox.guid
        for f in evaluation.findings
        if f.mailbox is not None and f.status is Status.FAIL
    }
    revoked = [t.target.guid for t in record.targets if t.result.value == "applied"]
    still = [str(guid) for guid in revoked if guid in failing]
    print(
        f"  verified by the audit: {len(revoked) - len(still)} of the {len(revoked)} mailboxes "
        f"changed by {record.id} no longer fail"
        + (f"; still failing: {', '.join(still[:5])}" if still else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder")
    parser.add_argument("--mailboxes", type=int, default=3000, help="tenant size (default 3000)")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="afterwards, keep serving the confirmation pages until Ctrl+C",
    )
    args = parser.parse_args(argv)
    if args.mailboxes < 50:
        parser.error("--mailboxes must be at least 50")
    # SIGTERM (a service manager, `kill`, a CI timeout) unwinds like Ctrl+C: every service the
    # demo started is stopped on the way out, Azurite included.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return run_demo(args.out, args.mailboxes, args.serve)
    except KeyboardInterrupt:
        print("\ninterrupted: services stopped", file=sys.stderr)
        return 130
    except _Terminated:
        print("\nterminated: services stopped", file=sys.stderr)
        return 143


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every `with` block closes its service."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


if __name__ == "__main__":
    raise SystemExit(main())
