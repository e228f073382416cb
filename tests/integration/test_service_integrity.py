"""Honest history (issue 13) through run_audit, the Exchange emulator and Azurite: partial
reads keep verdicts, the plausibility guard, one bad record, and the `audit` exit codes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditor.app.audit import AuditIncomplete, Collector, run_audit
from auditor.core.model import Status
from auditor.storage.audit_store import AuditStore
from tests.support.builders import EMULATOR_TOKEN, emulator_collector
from tests.support.store_helpers import new_store

_CLOCK = itertools.count()
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def clock() -> datetime:
    return T0 + timedelta(days=next(_CLOCK))


@pytest.fixture
def collect(exchange_emulator: Any) -> Iterator[Collector]:
    with httpx.Client(timeout=30) as http:
        yield emulator_collector(exchange_emulator, http, EMULATOR_TOKEN)


def audit(store: AuditStore, collect: Collector, emu: Any, allowlist: Path | None = None) -> Any:
    return run_audit(
        store=store, collect=collect, tenant=emu.domain, allowlist_path=allowlist, clock=clock
    )


def test_partial_read_keeps_verdicts_that_need_directory_data(
    azurite: str, exchange_emulator: Any, collect: Collector, tmp_path: Path
) -> None:
    emu = exchange_emulator
    store = new_store(azurite)
    emu.state.org_disabled = True  # only explicit enables fail: no confirmed org fail
    guid = sorted(emu.state.cas)[3]
    emu.state.cas[guid]["SmtpClientAuthenticationDisabled"] = False
    upn = "svc-printer-7@contoso.onmicrosoft.com"  # only Get-Mailbox knows it
    emu.state.mailboxes[guid]["UserPrincipalName"] = upn
    allowlist = tmp_path / "allow.csv"
    allowlist.write_text(f"Identity,Owner,Reason\n{upn},ops,printer\n")
    first = audit(store, collect, emu, allowlist)  # the UPN entry matches: exempt
    exempt = [f for f in first.evaluation.findings if f.status is Status.EXEMPT]
    assert len(exempt) == 1
    fid = exempt[0].id
    fails_before = {f.id for f in first.evaluation.findings if f.status is Status.FAIL}

    emu.faults.add("deny", cmdlet="Get-Mailbox", times=None)  # no UPNs this time
    with pytest.raises(AuditIncomplete) as caught:
        audit(store, collect, emu, allowlist)
    summary = caught.value.summary
    by_id = {f.id: f for f in summary.evaluation.findings}
    assert by_id[fid].status is Status.UNKNOWN and "unknown evidence" in by_id[fid].reason
    # Never a flip stored as an event: the exempt mailbox stays exempt in the history.
    assert summary.finding_events == ()
    state = store.finding_state(fid)
    assert state is not None and state.status == "exempt" and store.finding_events(fid) == []
    assert {k for k, s in store.finding_states().items() if s.status == "fail"} >= fails_before
    # No new-or-confirmed fail: the run's exit code is 3 (README, exit codes).
    assert not any(f.status is Status.FAIL for f in summary.evaluation.findings)
    assert summary.exit_code == 3

    emu.faults.clear()
    third = audit(store, collect, emu, allowlist)
    assert third.complete and store.finding_events(fid) == []  # exempt throughout
    # Only what the partial run itself opened (its collection error, the entry it could not
    # match) is resolved.
    assert {e.kind for e in third.finding_events} == {"resolved"}


def test_plausibility_guard_marks_nothing_removed_until_confirmed(
    azurite: str, exchange_emulator: Any, collect: Collector
) -> None:
    from auditor.app.alerting import run_alerter
    from auditor.app.settings import Settings
    from devkit.receiver import Receiver, Reply

    emu = exchange_emulator
    store = new_store(azurite)
    teams = Receiver("teams", default=Reply(202)).start()
    settings = Settings.from_env({"ALERT_TEAMS_WEBHOOK_URL": f"{teams.url}/w?sig=abcdefgh12"})
    http = httpx.Client(timeout=30)
    alerter = run_alerter(settings, http=http, ledger=store, sleep=lambda _: None)

    def audit(store: AuditStore, collect: Collector, emu: Any) -> Any:
        return run_audit(
            store=store, collect=collect, tenant=emu.domain, clock=clock, alerter=alerter
        )

    first = audit(store, collect, emu)
    assert first.counts["mailboxes"] == 250
    saved = dict(emu.state.cas)
    for guid in sorted(saved)[:100]:  # 40% vanish from a read that reports no error
        del emu.state.cas[guid], emu.state.mailboxes[guid]
    with pytest.raises(AuditIncomplete) as caught:
        audit(store, collect, emu)
    suspect = caught.value.summary
    assert suspect.status == "suspect" and not suspect.complete
    assert [e.source for e in suspect.errors] == ["plausibility"]
    assert "100 of 250" in suspect.errors[0].message
    assert suspect.changes["mailboxes_removed"] == 0
    assert suspect.changes["findings_resolved"] == 0
    assert all(not s.removed for s in store.mailbox_states().values())
    assert store.run("latest").status == "suspect"
    loud = teams.requests[-1].body.decode()  # the alert says why, loudly
    assert "100 of 250" in loud and "AUDIT_MAX_REMOVED_PERCENT" in loud

    confirmed = audit(store, collect, emu)  # a following run sees the same: confirmed
    assert confirmed.complete and confirmed.changes["mailboxes_removed"] == 100
    http.close()
    teams.stop()


def test_one_bad_record_is_one_unknown_mailbox_named_in_the_errors(
    azurite: str, exchange_emulator: Any, collect: Collector
) -> None:
    emu = exchange_emulator
    store = new_store(azurite)
    guids = sorted(emu.state.cas)
    surrogate, huge = guids[7], guids[8]
    emu.state.cas[surrogate]["PrimarySmtpAddress"] = "bad\udc80@contoso.com"
    emu.state.mailboxes[surrogate]["PrimarySmtpAddress"] = "bad\udc80@contoso.com"
    emu.state.cas[huge]["Name"] = "x" * 100_000  # over the 64 KiB a property may hold
    emu.state.mailboxes[huge]["Name"] = "x" * 100_000
    first = audit(store, collect, emu)  # completes: the rest of the tenant is recorded
    assert first.complete and first.status == "complete"
    named = [e for e in first.errors if e.source.startswith("record:")]
    assert len(named) == 2, first.errors
    assert any(surrogate in e.message and "primary_smtp_address" in e.message for e in named)
    assert any(huge in e.message and "name" in e.message for e in named)
    unknown = {
        f.mailbox.guid
        for f in first.evaluation.findings
        if f.mailbox and f.status is Status.UNKNOWN
    }
    assert {surrogate, huge} <= unknown
    assert first.counts["mailboxes"] == 250

    second = audit(store, collect, emu)  # the same bad records: no false removed / added
    assert second.complete and second.mailbox_changes == ()


def test_audit_command_exit_codes_for_partial_runs(
    azurite: str,
    exchange_emulator: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README, exit codes: a partial run exits 3 unless it read a `fail`; then 1."""
    from auditor.cli.main import main

    emu = exchange_emulator
    emu.state.org_disabled = True
    guid = sorted(emu.state.cas)[3]
    explicit = [
        g for g, r in emu.state.cas.items() if r.get("SmtpClientAuthenticationDisabled") is False
    ]
    for other in explicit:  # only one explicit enable: the allowlisted one
        emu.state.cas[other]["SmtpClientAuthenticationDisabled"] = None
    emu.state.cas[guid]["SmtpClientAuthenticationDisabled"] = False
    emu.state.mailboxes[guid]["UserPrincipalName"] = "svc-scanner-3@contoso.onmicrosoft.com"
    allowlist = tmp_path / "allow.txt"
    allowlist.write_text("svc-scanner-3@contoso.onmicrosoft.com\n")
    for name, value in {
        "EXO_TENANT": emu.domain,
        "EXO_BASE_URL": emu.base_url,
        "EXO_ACCESS_TOKEN": EMULATOR_TOKEN,
        "AUDITOR_STORAGE": azurite,
        "AUDITOR_TABLE_PREFIX": f"exit{datetime.now(UTC):%H%M%S%f}",
        "AUDITOR_ALLOWLIST": str(allowlist),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["audit", "--format", "json"]) == 0  # complete, compliant
    emu.faults.add("deny", cmdlet="Get-Mailbox", times=None)
    assert main(["audit", "--format", "json"]) == 3  # partial, no fail it could confirm
    emu.state.cas[sorted(emu.state.cas)[9]]["SmtpClientAuthenticationDisabled"] = False
    emu.faults.clear()
    emu.faults.add("deny", cmdlet="Get-TransportConfig", times=None)
    # Partial again (no organisation value) but with Get-Mailbox data: the new explicit
    # enable that no entry names is a fail it read.
    assert main(["audit", "--format", "json"]) == 1
    capsys.readouterr()


def test_storage_failing_during_recording_marks_the_run_failed_with_the_cause(
    azurite: str, exchange_emulator: Any, collect: Collector
) -> None:
    from azure.data.tables import TableServiceClient

    from auditor.core.errors import StoreError
    from devkit.faultproxy import FaultProxy, Plan
    from tests.integration.test_crash_harness import table_endpoint

    with FaultProxy(table_endpoint(azurite)) as proxy:
        service = TableServiceClient.from_connection_string(
            proxy.connection_string(azurite), retry_total=0
        )
        store = AuditStore(service, prefix=f"recfail{datetime.now(UTC):%H%M%S%f}")
        audit(store, collect, exchange_emulator)
        proxy.reset(Plan(on_path={'"PartitionKey": "commit"': ("unavailable", 3)}))
        with pytest.raises(StoreError, match="throttled or busy"):
            audit(store, collect, exchange_emulator)
        proxy.reset()
        run = store.runs()[0]
        assert run.status == "failed" and run.errors[0].source == "storage"
        assert "503" in run.errors[0].message
        assert store.state.get("lock", "audit") is None  # released all the same
