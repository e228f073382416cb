"""Storage faults against Azurite through the fault proxy (devkit.faultproxy): lost responses
after a committed write are our own writes, 503 bursts are ridden out, and errors name the
real cause (issue 13)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from auditor.core.errors import StoreError
from auditor.storage.audit_store import AuditStore
from devkit.faultproxy import FaultProxy, Plan
from tests.integration.test_crash_harness import table_endpoint
from tests.support.store_helpers import T0, doc, record

_COUNT = iter(range(1, 10**6))


@pytest.fixture
def faulty(azurite: str) -> Iterator[tuple[FaultProxy, AuditStore]]:
    with FaultProxy(table_endpoint(azurite)) as proxy:
        service = TableServiceClient.from_connection_string(proxy.connection_string(azurite))
        store = AuditStore(service, prefix=f"flt{next(_COUNT)}x{id(proxy) % 10**6}")
        store.ensure_tables()
        yield proxy, store


def settings(n: int) -> dict[int, Any]:
    return {i: i > n for i in range(1, 30)}  # the first n explicitly enabled


def test_lost_response_of_the_lock_insert_is_our_own_lease(
    faulty: tuple[FaultProxy, AuditStore],
) -> None:
    proxy, store = faulty
    proxy.reset(Plan(on_path={"state": ("lose", 1)}))  # the lease insert lands, unanswered
    handle = store.begin_run(tenant="t", now=T0)
    lock = store.state.get("lock", "audit")
    assert lock is not None and lock["owner"] == handle.run_id
    assert [entry[3] for entry in proxy.log[:1]] == ["lose"]
    store.release(handle)
    assert store.state.get("lock", "audit") is None


def test_lost_response_of_the_run_row_insert(faulty: tuple[FaultProxy, AuditStore]) -> None:
    proxy, store = faulty
    proxy.reset(Plan(on_path={"runs": ("lose", 1)}))
    handle = store.begin_run(tenant="t", now=T0)
    assert store.run(handle.run_id).status == "running"
    store.release(handle)


@pytest.mark.parametrize(
    "fragment",
    [
        "PartitionKey='commit'",  # the commit record: our 412 is our own commit
        "$batch",  # a history or state batch: written again, the same rows
        "PartitionKey='lock'",  # the lease renewal: our 412 is our own renewal
    ],
)
def test_lost_response_after_a_committed_write_is_not_another_writer(
    faulty: tuple[FaultProxy, AuditStore], fragment: str
) -> None:
    proxy, store = faulty
    record(store, doc(settings(2), org=True), now=T0)
    proxy.reset(Plan(on_path={fragment: ("lose", 1)}))
    result = record(store, doc(settings(5), org=True), now=T0.replace(day=2))
    assert any(entry[3] == "lose" for entry in proxy.log), proxy.log
    assert result.run.status == "complete"
    assert store.run(result.run.run_id).status == "complete"
    assert result.run.changes["mailboxes_changed"] == 3
    states = store.mailbox_states()
    assert sum(1 for s in states.values() if s.setting == "false") == 5
    for n in (3, 4, 5):
        key = next(k for k, s in states.items() if s.address == f"user{n}@contoso.com")
        assert len(store.mailbox_changes(key)) == 1


def test_a_burst_of_503_is_ridden_out(faulty: tuple[FaultProxy, AuditStore]) -> None:
    proxy, store = faulty
    record(store, doc(settings(2), org=True), now=T0)
    proxy.reset(Plan(on_path={"PartitionKey='commit'": ("unavailable", 2)}))
    result = record(store, doc(settings(4), org=True), now=T0.replace(day=2))
    assert [e[3] for e in proxy.log].count("unavailable") == 2
    assert result.run.status == "complete"


def test_unreachable_storage_is_named_as_such(azurite: str) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    parts = [
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1"
        if p.startswith("TableEndpoint=")
        else p
        for p in azurite.split(";")
    ]
    service = TableServiceClient.from_connection_string(";".join(parts), retry_total=0)
    store = AuditStore(service, prefix="unreach", workers=1)
    with pytest.raises(StoreError, match="unreachable"):
        store.runs_table.get("run", "x")


def test_a_long_collection_keeps_its_lease_and_a_stale_one_is_taken_over(azurite: str) -> None:
    """The lease is renewed while the run works (AUDIT_LEASE_SECONDS), so a collection longer
    than the lease is not taken over; once renewal stops, the next run takes over."""
    import time
    from datetime import UTC, datetime, timedelta

    from auditor.storage.audit_store import RunInProgress
    from tests.support.store_helpers import new_store

    store = new_store(azurite, lock_ttl=timedelta(seconds=3))
    other = AuditStore(store.runs_table._service, prefix=store.runs_table.name[: -len("runs")])
    handle = store.begin_run(tenant="t", now=datetime.now(UTC))
    store.keep_alive(handle)
    time.sleep(4.5)  # longer than the lease: renewed meanwhile
    with pytest.raises(RunInProgress, match=handle.run_id):
        other.begin_run(tenant="t", now=datetime.now(UTC))
    handle.lease.stop()  # the run hangs: nobody renews
    time.sleep(3.5)
    taker = other.begin_run(tenant="t", now=datetime.now(UTC))
    dead = other.run(handle.run_id)
    assert dead.status == "abandoned" and dead.abandoned_by == taker.run_id
    with pytest.raises(RunInProgress, match="lost its lock"):
        handle.lease.renew()
    other.release(taker)


def test_a_first_run_that_dies_before_its_commit_leaves_the_next_one_the_baseline(
    azurite: str,
) -> None:
    """Killed (here: storage refusing) before its commit, the first run leaves nothing a
    reader sees: the next run is still the baseline — nothing reported `added` — and the dead
    run is `abandoned`, its history rows gone."""
    with FaultProxy(table_endpoint(azurite)) as proxy:
        service = TableServiceClient.from_connection_string(
            proxy.connection_string(azurite), retry_total=0
        )
        store = AuditStore(service, prefix=f"first{next(_COUNT)}x{id(proxy) % 10**6}")
        store.ensure_tables()
        proxy.reset(Plan(on_path={'"PartitionKey": "commit"': ("unavailable", 10)}))
        with pytest.raises(StoreError, match="503"):
            record(store, doc(settings(3), org=True), now=T0)
        dead = store.runs()[0]
        assert dead.status == "running"
        assert store.mailbox_states() == {}  # its bucket versions are not current
        proxy.reset()
        result = record(store, doc(settings(3), org=True), now=T0.replace(day=2))
        assert result.baseline and result.mailbox_changes == ()
        assert result.run.changes["mailboxes_added"] == 0
        assert store.run(dead.run_id).status == "abandoned"
        assert len(store.mailbox_states()) == 29
        rows = list(store.history.query("PartitionKey ne @x", {"x": ""}))
        assert {row["run_id"] for row in rows} == {result.run.run_id}  # the dead run's: gone


def test_storage_failing_mid_recording_names_the_cause_and_leaves_no_history(
    azurite: str,
) -> None:
    with FaultProxy(table_endpoint(azurite)) as proxy:
        service = TableServiceClient.from_connection_string(
            proxy.connection_string(azurite), retry_total=0
        )
        store = AuditStore(service, prefix=f"mid{next(_COUNT)}x{id(proxy) % 10**6}")
        record(store, doc(settings(1), org=True), now=T0)
        proxy.reset(Plan(on_path={'"PartitionKey": "mailbox"': ("unavailable", 5)}))
        with pytest.raises(StoreError, match="503") as caught:
            record(store, doc(settings(4), org=True), now=T0.replace(day=2))
        # The real cause, not a clean-up failure.
        assert "ServerBusy" in str(caught.value) and "throttled" in str(caught.value)
        assert any(e[3] == "unavailable" for e in proxy.log)
        failed = store.runs()[0]
        rows = list(store.history.query("PartitionKey ne @x", {"x": ""}))
        assert [r for r in rows if r.get("run_id") == failed.run_id] == []
        proxy.reset()
        result = record(store, doc(settings(4), org=True), now=T0.replace(day=3))
        assert result.run.changes["mailboxes_changed"] == 3
