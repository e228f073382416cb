"""run_audit end to end: the Exchange emulator over HTTP, Azurite, the real policy; and the
timer function called through the Functions indexing with a real TimerRequest."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.data.tables import TableServiceClient
from azure.functions.timer import TimerRequest

from auditor.app.audit import AuditIncomplete, Collector, run_audit
from auditor.core.errors import CollectionFailed, InputError, StoreError
from auditor.storage.audit_store import AuditStore, Committed, RunInProgress
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


def test_two_audits_record_what_changed(
    azurite: str, exchange_emulator: Any, collect: Any, tmp_path: Path
) -> None:
    emu = exchange_emulator
    store = new_store(azurite)
    guids = sorted(emu.state.cas)
    allowlist = tmp_path / "allow.txt"
    allowlist.write_text(emu.state.cas[guids[0]]["PrimarySmtpAddress"] + "\n")
    first = audit(store, collect, emu, allowlist)
    assert first.complete and first.baseline and first.status == "complete"
    assert first.counts["mailboxes"] == 250
    assert first.mailbox_changes == ()
    assert set(first.durations) >= {"collect", "evaluate", "record", "total"}

    emu.state.cas[guids[1]]["SmtpClientAuthenticationDisabled"] = True
    emu.state.cas[guids[2]]["SmtpClientAuthenticationDisabled"] = False
    second = audit(store, collect, emu, allowlist)
    assert second.complete and not second.baseline
    changed = {c.key: (c.before, c.after) for c in second.mailbox_changes}
    assert set(changed) == {guids[1], guids[2]}
    assert changed[guids[2]][1]["setting"] == "false"
    assert second.changes["mailboxes_changed"] == 2
    # Logged summary carries ids and counts, never addresses.
    line = second.log_line()
    assert second.run_id in line and "@" not in line

    runs = store.runs()
    assert [r.run_id for r in runs] == [second.run_id, first.run_id]
    assert runs[0].allowlist_source == str(allowlist)
    assert store.read_blob(first.run_id, "allowlist") == allowlist.read_bytes()


def test_partial_collection_is_recorded_and_raises(
    azurite: str, exchange_emulator: Any, collect: Any
) -> None:
    emu = exchange_emulator
    store = new_store(azurite)
    first = audit(store, collect, emu)
    emu.faults.add("deny", cmdlet="Get-CASMailbox", times=None)
    with pytest.raises(AuditIncomplete) as caught:
        audit(store, collect, emu)
    summary = caught.value.summary
    assert not summary.complete and summary.status == "incomplete"
    assert [e.source for e in summary.errors] == ["Get-CASMailbox"]
    assert summary.changes["mailboxes_removed"] == 0
    assert summary.changes["findings_resolved"] == 0
    assert all(not s.removed for s in store.mailbox_states().values())
    assert store.runs()[0].status == "incomplete"
    assert store.runs()[1].run_id == first.run_id
    assert store.state.get("lock", "audit") is None  # released


def test_failed_collection_is_recorded_as_failed(azurite: str) -> None:
    store = new_store(azurite)

    def broken(now: datetime) -> dict[str, Any]:
        raise CollectionFailed("token endpoint unreachable")

    with pytest.raises(CollectionFailed, match="failed: token endpoint unreachable"):
        run_audit(store=store, collect=broken, tenant="contoso.onmicrosoft.com", clock=clock)
    run = store.runs()[0]
    assert run.status == "failed" and run.errors[0].message == "token endpoint unreachable"
    assert store.mailbox_states() == {}


def test_bad_allowlist_records_nothing(azurite: str, tmp_path: Path) -> None:
    store = new_store(azurite)
    bad = tmp_path / "allow.txt"
    bad.write_text("*@contoso.com\n")
    with pytest.raises(InputError, match=r"allow\.txt:1"):
        run_audit(store=store, collect=lambda now: {}, tenant="t", allowlist_path=bad)
    assert store.runs() == []


class WatchedStore(AuditStore):
    """The real store, telling when the committed state is read and failing that read the
    first `failures` times (as a table service that is briefly unavailable would)."""

    def __init__(self, *args: Any, failures: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures
        self.reads = 0
        self.reading = threading.Event()

    def committed(self) -> Committed:
        self.reads += 1
        self.reading.set()
        if self.reads <= self.failures:
            raise StoreError("state table unavailable (test)")
        return super().committed()


def watched_store(azurite: str, **kwargs: Any) -> WatchedStore:
    return WatchedStore(
        TableServiceClient.from_connection_string(azurite),
        prefix=f"w{datetime.now(UTC):%H%M%S%f}",
        **kwargs,
    )


def test_the_committed_state_is_read_while_the_run_pages(
    azurite: str, exchange_emulator: Any, collect: Collector
) -> None:
    store = watched_store(azurite)
    audit(store, collect, exchange_emulator)
    exchange_emulator.state.cas[sorted(exchange_emulator.state.cas)[0]][
        "SmtpClientAuthenticationDisabled"
    ] = True
    seen_while_paging: list[bool] = []

    def paging(now: datetime) -> Any:
        evidence = collect(now)
        seen_while_paging.append(store.reading.wait(timeout=10))
        return evidence

    store.reading.clear()
    second = audit(store, paging, exchange_emulator)
    assert seen_while_paging == [True]
    assert store.reads == 2  # once per run: recording used what was read while paging
    assert second.complete and second.changes["mailboxes_changed"] == 1


def test_a_failed_state_read_while_paging_is_read_again_to_record(
    azurite: str, exchange_emulator: Any, collect: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    store = watched_store(azurite, failures=1)
    first = audit(store, collect, exchange_emulator)
    assert first.complete and first.counts["mailboxes"] == 250
    assert store.reads == 2
    assert "state read while paging failed, read again to record" in caplog.text
    assert len(store.mailbox_states()) == 250


def test_a_state_read_that_keeps_failing_fails_the_recording(
    azurite: str, exchange_emulator: Any, collect: Collector
) -> None:
    store = watched_store(azurite, failures=2)
    with pytest.raises(StoreError, match="state table unavailable"):
        audit(store, collect, exchange_emulator)
    run = store.runs()[0]
    assert run.status == "failed" and "state table unavailable" in run.errors[0].message
    assert store.mailbox_states() == {}


def test_a_planner_that_crashes_costs_the_run_neither_its_record_nor_its_alert(
    azurite: str, exchange_emulator: Any, collect: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    store = new_store(azurite)
    told: list[tuple[str, bool, tuple[str, ...]]] = []

    def crashing(evaluation: Any, run_id: str, now: datetime) -> Any:
        raise RuntimeError("a bug in planning")

    def alerter(evaluation: Any, previous: Any, run_id: str, complete: bool, *rest: Any) -> None:
        told.append((run_id, complete, rest[-1]))

    summary = run_audit(
        store=store,
        collect=collect,
        tenant=exchange_emulator.domain,
        clock=clock,
        proposer=crashing,
        alerter=alerter,  # type: ignore[arg-type]
    )
    assert summary.complete and summary.proposals == ()
    assert told == [(summary.run_id, True, ())]
    assert store.runs()[0].status == "complete"
    assert "remediation proposals not planned: planning crashed" in caplog.text


def test_audit_refuses_while_another_runs(
    azurite: str, exchange_emulator: Any, collect: Any
) -> None:
    store = new_store(azurite)
    holder = store.begin_run(tenant="t", now=datetime.now(UTC))
    with pytest.raises(RunInProgress, match=holder.run_id):
        run_audit(store=store, collect=collect, tenant=exchange_emulator.domain)
    store.release(holder)


def test_timer_function_runs_the_audit(
    app_functions: dict[str, Any],
    azurite: str,
    exchange_emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    function = app_functions["nightly_audit"]
    bindings = {b.name: b for b in function.get_bindings()}
    timer = bindings["timer"]
    assert timer.type == "timerTrigger"
    assert timer.schedule == "%AUDIT_SCHEDULE%"
    assert timer.use_monitor is True and timer.run_on_startup is False
    prefix = f"timer{datetime.now(UTC):%H%M%S%f}"
    for name, value in {
        "EXO_TENANT": exchange_emulator.domain,
        "EXO_BASE_URL": exchange_emulator.base_url,
        "EXO_ACCESS_TOKEN": EMULATOR_TOKEN,
        "AUDITOR_STORAGE": azurite,
        "AUDITOR_TABLE_PREFIX": prefix,
    }.items():
        monkeypatch.setenv(name, value)  # the app settings the host would provide
    caplog.set_level(logging.INFO)
    function.get_user_function()(TimerRequest(past_due=True))
    assert "past_due=true" in caplog.text
    audit_lines = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("audit run_id=")
    ]
    assert len(audit_lines) == 1 and "mailboxes=250" in audit_lines[0]
    assert "@" not in audit_lines[0] and EMULATOR_TOKEN not in caplog.text

    store = AuditStore(TableServiceClient.from_connection_string(azurite), prefix=prefix)
    assert [r.status for r in store.runs()] == ["complete"]

    # A failed collection makes the invocation fail (the host marks it failed).
    exchange_emulator.faults.add("deny", cmdlet="Get-TransportConfig", times=None)
    with pytest.raises(CollectionFailed):
        function.get_user_function()(TimerRequest(past_due=False))
    assert [r.status for r in store.runs()] == ["incomplete", "complete"]
