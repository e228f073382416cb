"""Who changed it, end to end: Set-* served by the Exchange emulator are audited (with a lag),
the nightly audit reads `Search-UnifiedAuditLog`, and `history`/`check` say who changed it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from azure.data.tables import TableServiceClient

from auditor.app.attribution import AUDITLOG_BLOB, attributed_timeline, incremental_changes
from auditor.app.audit import run_audit
from auditor.app.queries import mailbox_timeline
from auditor.core.attribution import ChangeLog, decode_changelog
from auditor.exchange.auditlog import read_changes
from auditor.exchange.client import ExchangeClient
from auditor.identity.tokens import StaticToken
from auditor.reports.history import render_history
from auditor.storage.audit_store import AuditStore
from tests.support.builders import EMULATOR_TOKEN, emulator_collector

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def client(emu: Any, http: httpx.Client) -> ExchangeClient:
    return ExchangeClient(
        base_url=emu.base_url,
        tenant=emu.domain,
        tokens=StaticToken(EMULATOR_TOKEN),
        http=http,
        sleep=lambda _: None,
    )


def changes_from(exchange: ExchangeClient) -> Callable[[datetime, ChangeLog | None], ChangeLog]:
    def collect(now: datetime, previous: ChangeLog | None) -> ChangeLog:
        return incremental_changes(
            lambda start, end: read_changes(exchange, start=start, end=end), now, previous
        )

    return collect


def test_change_attributed_after_the_audit_record_lags(
    azurite: str, exchange_emulator: Any
) -> None:
    emu = exchange_emulator
    clock = Clock(T0)
    prefix = f"att{uuid.uuid4().hex[:8]}"
    store = AuditStore(
        TableServiceClient.from_connection_string(azurite), prefix=prefix, clock=clock
    )
    target = next(
        r for r in emu.state.cas.values() if r["SmtpClientAuthenticationDisabled"] is None
    )
    address = target["PrimarySmtpAddress"]
    emu.auditlog.lag = timedelta(hours=3)
    emu.auditlog.clock = clock
    with httpx.Client(timeout=30) as http:
        exchange = client(emu, http)
        collect = emulator_collector(emu, http, EMULATOR_TOKEN)

        def audit() -> Any:
            return run_audit(
                store=store,
                collect=collect,
                tenant=emu.domain,
                clock=clock,
                changes=changes_from(exchange),
            )

        audit()  # day 0: the baseline
        clock.now = T0 + timedelta(hours=12, minutes=2)
        emu.auditlog.actor, emu.auditlog.client_ip = "alice@contoso.com", "198.51.100.8"
        exchange.set_cas_mailbox(target["Guid"], False)
        emu.auditlog.actor = "bob@contoso.com"
        exchange.set_transport_config(True)
        clock.now = T0 + timedelta(hours=12, minutes=30)  # before the record is searchable
        seen = audit()
        kept = store.read_blob(seen.run_id, AUDITLOG_BLOB)
        assert kept is not None and decode_changelog(kept).changes == ()
        timeline = attributed_timeline(store, mailbox_timeline(store, address))
        changed = next(e for e in timeline.entries if e.cause == "changed")
        assert changed.changed_by == (
            "changed by: not yet in the audit log (audit records can take up to 24 h)"
        )

        clock.now = T0 + timedelta(days=1)  # the next night: the record has arrived
        audit()
    timeline = attributed_timeline(store, mailbox_timeline(store, address))
    changed = next(e for e in timeline.entries if e.cause == "changed")
    assert changed.changed_by == "changed by alice@contoso.com at 14:02 UTC (from 198.51.100.8)"
    # the organisation flip, on the timeline of a mailbox that inherits it, is bob's
    other = next(
        r
        for r in emu.state.cas.values()
        if r["SmtpClientAuthenticationDisabled"] is None and r is not target
    )
    flipped = attributed_timeline(store, mailbox_timeline(store, other["PrimarySmtpAddress"]))
    org_entry = next(e for e in flipped.entries if e.cause == "organisation")
    assert org_entry.changed_by is not None
    assert org_entry.changed_by.startswith("changed by bob@contoso.com at 14:02 UTC")
    text = render_history(timeline, "text")
    assert "changed_by" in text and "changed by alice@contoso.com at 14:02 UTC" in text

    # the `history` and `check` commands say the same, from the stored logs
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EXO_", "AUDITOR_"))},
        "AUDITOR_STORAGE": azurite,
        "AUDITOR_TABLE_PREFIX": prefix,
        "EXO_TENANT": emu.domain,
        "EXO_BASE_URL": emu.base_url,
        "EXO_ACCESS_TOKEN": EMULATOR_TOKEN,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "auditor", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    history = cli("history", address)
    assert history.returncode == 0, history.stderr
    assert "changed by alice@contoso.com at 14:02 UTC" in history.stdout
    check = cli("check", address, "--live")
    assert "changed by alice@contoso.com at 14:02 UTC" in check.stdout, check.stdout + check.stderr


def test_refused_audit_log_leaves_attribution_unknown(azurite: str, exchange_emulator: Any) -> None:
    emu = exchange_emulator
    clock = Clock(T0)
    store = AuditStore(
        TableServiceClient.from_connection_string(azurite),
        prefix=f"att{uuid.uuid4().hex[:8]}",
        clock=clock,
    )
    target = next(
        r for r in emu.state.cas.values() if r["SmtpClientAuthenticationDisabled"] is None
    )
    emu.auditlog.clock = clock
    with httpx.Client(timeout=30) as http:
        exchange = client(emu, http)
        collect = emulator_collector(emu, http, EMULATOR_TOKEN)
        run_audit(
            store=store, collect=collect, tenant=emu.domain, clock=clock,
            changes=changes_from(exchange),
        )  # fmt: skip
        clock.now = T0 + timedelta(hours=10)
        exchange.set_cas_mailbox(target["Guid"], False)
        emu.faults.add("deny", cmdlet="Search-UnifiedAuditLog", times=None)
        clock.now = T0 + timedelta(days=1)
        run_audit(
            store=store, collect=collect, tenant=emu.domain, clock=clock,
            changes=changes_from(exchange),
        )  # fmt: skip
    timeline = attributed_timeline(store, mailbox_timeline(store, target["PrimarySmtpAddress"]))
    changed = next(e for e in timeline.entries if e.cause == "changed")
    assert changed.changed_by is not None
    assert changed.changed_by.startswith(
        "changed by: unknown (the audit log read failed: missing the View-Only Audit Logs role"
    )
