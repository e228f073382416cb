"""The history store against a real Azurite: history questions, partial runs, write counts,
concurrency, and the service limits enforced on the client."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from random import Random

import pytest

from auditor.core.errors import StoreError
from auditor.core.history import run_key
from auditor.core.model import Allowlist
from auditor.core.policy import evaluate
from auditor.core.snapshot import parse_snapshot
from auditor.storage.audit_store import RunInProgress
from auditor.storage.blobs import Blobs, IncompleteBlob
from auditor.storage.limits import check_key, encode_entity, split_batches
from tests.support.store_helpers import T0, doc, guid, new_store, record

DAY = timedelta(days=1)


def test_history_questions_across_runs(azurite: str) -> None:
    store = new_store(azurite)
    r1 = record(store, doc({1: None, 2: True, 3: False}, org=False), now=T0).run
    r2 = record(store, doc({1: True, 2: True, 4: None}, org=False), now=T0 + DAY).run
    r3 = record(store, doc({1: True, 2: True, 4: None}, org=True), now=T0 + 2 * DAY).run
    r4 = record(store, doc({1: None, 2: True, 4: None}, org=True), now=T0 + 3 * DAY).run

    assert [r.run_id for r in store.runs()] == [r4.run_id, r3.run_id, r2.run_id, r1.run_id]
    assert all(r.status == "complete" for r in store.runs())

    # Mailbox 1: null -> true in r2, true -> null in r4; newest first.
    changes = store.mailbox_changes(guid(1))
    assert [
        (c.run_id, c.before and c.before["setting"], c.after and c.after["setting"])
        for c in changes
    ] == [(r4.run_id, "true", "null"), (r2.run_id, "null", "true")]
    # Mailbox 2 never changed: no rows, and its record says since when.
    assert store.mailbox_changes(guid(2)) == []
    state2 = store.mailbox_state(guid(2))
    assert state2 is not None and state2.first_seen == r1.run_id and state2.setting == "true"
    # Mailbox 3 removed in r2, mailbox 4 added in r2.
    assert [c.kind for c in store.mailbox_changes(guid(3))] == ["removed"]
    state3 = store.mailbox_state(guid(3))
    assert state3 is not None and state3.removed and state3.since == r2.run_id
    assert [c.kind for c in store.mailbox_changes(guid(4))] == ["added"]

    # Organisation: first read false in r1, flipped to true in r3.
    org = store.org_history()
    assert [(o.run_id, o.before, o.after, o.first) for o in org] == [
        (r3.run_id, False, True, False),
        (r1.run_id, None, False, True),
    ]

    # Finding lifecycle: mailbox 1 failed (inherits while org allows) from r1, resolved in r2.
    states = store.finding_states()
    mbx1 = next(s for s in states.values() if s.subject == "user1@contoso.com")
    assert (mbx1.first_seen, mbx1.resolved, mbx1.last_seen) == (r1.run_id, r2.run_id, r1.run_id)
    assert [e.kind for e in store.finding_events(mbx1.id)] == ["resolved"]
    # The organisation finding changed status fail -> pass in r3 and stays open.
    org_finding = next(s for s in states.values() if s.control == "SMTPAUTH-ORG")
    assert org_finding.open and org_finding.status == "pass" and org_finding.since == r3.run_id
    events = store.finding_events(org_finding.id)
    assert [(e.kind, e.before, e.after, e.run_id) for e in events] == [
        ("status", "fail", "pass", r3.run_id)
    ]
    # Mailbox 4 failed when added (org allows), resolved when the organisation was fixed.
    mbx4 = next(s for s in states.values() if s.subject == "user4@contoso.com")
    assert (mbx4.first_seen, mbx4.resolved) == (r2.run_id, r3.run_id)

    # Raw evidence of every run is kept and reads back byte for byte.
    assert b'"user3@contoso.com"' in (store.read_blob(r1.run_id, "snapshot") or b"")
    assert b"user3@contoso.com" not in (store.read_blob(r2.run_id, "snapshot") or b"x")


def test_mailbox_states_of_reads_only_the_buckets_of_the_keys(azurite: str) -> None:
    store = new_store(azurite)
    record(store, doc({n: False for n in range(1, 41)}), now=T0)
    second = record(store, doc({n: False for n in range(1, 40)}), now=T0 + DAY)  # 40 deleted
    assert second.run.changes["mailboxes_removed"] == 1
    before = store.counter.snapshot()
    states = store.mailbox_states_of([guid(40), guid(2), "no-such-mailbox"])
    after = store.counter.snapshot()
    assert set(states) == {guid(40), guid(2)}
    gone = states[guid(40)]
    assert gone.removed and gone.rtype == "UserMailbox" and gone.address == "user40@contoso.com"
    assert not states[guid(2)].removed
    # the commit record and one entity per bucket asked for (at most 3), not the 256 buckets
    assert after["reads"] - before["reads"] <= 4
    assert store.mailbox_states_of([]) == {}
    # Many buckets (read several at a time): each record as the one-key look-up gives it.
    keys = [guid(n) for n in range(1, 41)] + [f"missing-{n}" for n in range(20)]
    many = store.mailbox_states_of(keys)
    assert set(many) == {guid(n) for n in range(1, 41)}
    assert all(many[key] == store.mailbox_state(key) for key in many)
    assert [key for key in many if many[key].removed] == [guid(40)]


def test_partial_collection_resolves_nothing_and_removes_nothing(azurite: str) -> None:
    store = new_store(azurite)
    r1 = record(store, doc({1: False, 2: None, 3: True}, org=False), now=T0).run
    before = store.finding_states()

    # CAS listing came back short (paging broke off): mailbox 1 and 2 missing, with an error.
    short = doc({3: True}, org=False, errors=[{"source": "Get-CASMailbox", "message": "cut"}])
    result = record(store, short, now=T0 + DAY)
    assert result.run.status == "incomplete" and not result.run.complete
    assert result.run.errors[0].source == "Get-CASMailbox"
    assert result.mailbox_changes == ()
    assert [e for e in result.finding_events if e.kind == "resolved"] == []
    for key in (guid(1), guid(2)):
        state = store.mailbox_state(key)
        assert state is not None and not state.removed
    after = store.finding_states()
    assert {k: v.resolved for k, v in after.items() if k in before} == dict.fromkeys(before)

    # Nothing collected for mailboxes, organisation not read: no state touched at all.
    empty = doc(
        {},
        org=None,
        cas_collected=False,
        errors=[{"source": "Get-CASMailbox", "message": "HTTP 503"}],
    )
    result = record(store, empty, now=T0 + 2 * DAY)
    assert not result.run.complete and result.mailbox_changes == ()
    assert all(s.status != "unknown" for k, s in store.finding_states().items() if k in before)
    assert store.org_history()[0].run_id == r1.run_id

    previous = store.previous_run()
    assert previous is not None and previous.run_id == result.run.run_id
    assert previous.complete is False

    # The next complete run does resolve and remove.
    r4 = record(store, doc({3: True}, org=False), now=T0 + 3 * DAY)
    assert r4.run.complete
    assert sorted(c.kind for c in r4.mailbox_changes) == ["removed", "removed"]
    resolved = sorted(e.subject for e in r4.finding_events if e.kind == "resolved")
    # Both mailboxes, the collection error and the "all mailboxes unknown" of the failed reads.
    assert resolved == ["Get-CASMailbox", "all mailboxes", "user1@contoso.com", "user2@contoso.com"]


def test_steady_state_writes_are_proportional_to_changes(azurite: str) -> None:
    store = new_store(azurite)
    settings = {n: (None if n % 10 else True) for n in range(1, 3001)}
    record(store, doc(settings, org=True), now=T0)
    first = store.counter.snapshot()
    # Baseline: packed state, a few evidence entities, run and lock: far fewer than 3,000.
    assert first["writes"] < 600

    for n in range(1, 6):
        settings[n * 100 + 1] = False  # five mailboxes explicitly enabled
    result = record(store, doc(settings, org=True), now=T0 + DAY)
    second = {k: v - first[k] for k, v in store.counter.snapshot().items()}
    assert result.run.changes["mailboxes_changed"] == 5
    assert result.run.changes["findings_new"] == 5
    # 5 history rows + <= 5 + 5 state bucket versions (and as many superseded ones deleted)
    # + evidence + manifest + commit + run + lease: O(changes).
    assert second["writes"] <= 45, second

    record(store, doc(settings, org=True), now=T0 + 2 * DAY)
    third = {k: v - first[k] - second[k] for k, v in store.counter.snapshot().items()}
    # Nothing changed: run (begun, finished), evidence, commit, lease only.
    assert third["writes"] <= 10, third


def test_second_concurrent_run_refuses_clearly(azurite: str) -> None:
    store = new_store(azurite)
    handle = store.begin_run(tenant="contoso.onmicrosoft.com", now=T0)
    with pytest.raises(RunInProgress, match=handle.run_id):
        store.begin_run(tenant="contoso.onmicrosoft.com", now=T0 + timedelta(seconds=30))
    store.release(handle)
    again = store.begin_run(tenant="contoso.onmicrosoft.com", now=T0 + timedelta(minutes=6))
    store.release(again)


def test_racing_runs_exactly_one_wins(azurite: str) -> None:
    stores = [new_store(azurite) for _ in range(2)]
    prefix_store = stores[0]
    # Both writers share one set of tables: same prefix, separate clients.
    from azure.data.tables import TableServiceClient

    from auditor.storage.audit_store import AuditStore

    table_prefix = prefix_store.runs_table.name[: -len("runs")]
    writers = [
        AuditStore(TableServiceClient.from_connection_string(azurite), prefix=table_prefix)
        for _ in range(6)
    ]
    writers[0].ensure_tables()
    outcomes: list[str] = []
    barrier = threading.Barrier(len(writers))

    def start(store: AuditStore) -> None:
        barrier.wait(timeout=10)
        try:
            store.begin_run(tenant="t", now=T0)
            outcomes.append("won")
        except RunInProgress:
            outcomes.append("refused")

    threads = [threading.Thread(target=start, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["refused"] * 5 + ["won"]


def test_stale_lock_of_a_crashed_run_expires(azurite: str) -> None:
    store = new_store(azurite, lock_ttl=timedelta(minutes=30))
    crashed = store.begin_run(tenant="t", now=T0)  # never released: the host died
    with pytest.raises(RunInProgress):
        store.begin_run(tenant="t", now=T0 + timedelta(minutes=29))
    later = store.begin_run(tenant="t", now=T0 + timedelta(minutes=31))
    assert later.run_id != crashed.run_id
    # The crashed run, if it came back to life, may not write over the new run.
    from auditor.core.snapshot import build_snapshot

    snapshot = build_snapshot(doc({1: None}))
    evaluation = evaluate(snapshot, Allowlist(), T0.date(), evaluated_at=T0)
    with pytest.raises(RunInProgress, match="lost its lock"):
        store.record_run(
            crashed,
            snapshot=snapshot,
            evaluation=evaluation,
            evidence=b"{}",
            allowlist=b"",
            allowlist_source="",
            today=T0.date(),
            expiring_days=14,
            durations={},
        )
    store.release(crashed)  # a no-op: it does not own the lock any more
    assert store.state.get("lock", "audit") is not None
    store.release(later)
    assert store.state.get("lock", "audit") is None
    statuses = {r.run_id: r.status for r in store.runs()}
    assert statuses[crashed.run_id] == "abandoned"  # found dead by the run that took over
    dead = store.run(crashed.run_id)
    assert dead.abandoned_by == later.run_id and dead.abandoned_at is not None


def test_alert_delivery_ledger(azurite: str) -> None:
    store = new_store(azurite)
    run = record(store, doc({1: None}), now=T0).run
    assert store.alert_deliveries(run.run_id) == {}
    store.record_alert_delivery(run.run_id, "teams", "sent", "HTTP 202")
    store.record_alert_delivery(run.run_id, "email", "failed", "HTTP 503 after 3 tries")
    store.record_alert_delivery(run.run_id, "email", "sent", "HTTP 202")
    assert store.alert_deliveries(run.run_id) == {"teams": "sent", "email": "sent"}
    with pytest.raises(StoreError):
        store.record_alert_delivery(run.run_id, "teams/../x", "sent", "")


def test_large_evidence_spans_several_entities(azurite: str) -> None:
    import os

    store = new_store(azurite)
    store.ensure_tables()
    data = os.urandom(2_500_000)  # incompressible: 11 x 64 KiB per entity
    written = store._blobs.write("0000000000001-abc", {"snapshot": data})
    assert written > 2_400_000
    rows = list(store.evidence.partition("0000000000001-abc"))
    assert len(rows) == 4
    store.runs_table.insert({"PartitionKey": "run", "RowKey": "x", "run_id": "x"})

    run_id = "20261101T020000000Z-abc"
    store._blobs.write(run_key(run_id), {"snapshot": data})
    assert store.read_blob(run_id, "snapshot") == data


@pytest.mark.parametrize("bad", ["a/b", "a\\b", "a#b", "a?b", "a\nb", "a\x00b", "x" * 513, ""])
def test_keys_that_need_escaping_are_refused(bad: str) -> None:
    with pytest.raises(StoreError):
        check_key(bad, "RowKey")


def test_entity_limits_are_enforced_before_sending() -> None:
    base = {"PartitionKey": "p", "RowKey": "r"}
    with pytest.raises(StoreError, match="64 KiB"):
        encode_entity("t", {**base, "s": "x" * 40_000})  # 80,000 bytes in UTF-16
    encode_entity("t", {**base, "s": "x" * 32_000})
    with pytest.raises(StoreError, match="64 KiB"):
        encode_entity("t", {**base, "b": b"x" * 65_537})
    with pytest.raises(StoreError, match="252"):
        encode_entity("t", {**base, **{f"p{i}": i for i in range(253)}})
    with pytest.raises(StoreError, match="1 MiB"):
        encode_entity("t", {**base, **{f"b{i}": b"x" * 65_000 for i in range(17)}})
    with pytest.raises(StoreError, match="body limit"):
        encode_entity("t", {**base, **{f"b{i}": b"x" * 65_000 for i in range(14)}})
    with pytest.raises(StoreError, match="not allowed"):
        encode_entity("t", {**base, "smtp-auth": 1})
    with pytest.raises(StoreError, match="Int64"):
        encode_entity("t", {**base, "n": 2**64})
    encoded = encode_entity("t", {**base, "gone": None, "d": {"a": [1, 2]}, "n": 2**40})
    assert "gone" not in encoded and encoded["d"] == '{"a":[1,2]}'


def test_batches_stay_within_one_partition_and_100_operations() -> None:
    ops = [("upsert", {"PartitionKey": "p", "RowKey": f"r{i}"}, {}) for i in range(250)]
    assert [len(b) for b in split_batches("t", ops)] == [100, 100, 50]
    mixed = [*ops[:2], ("upsert", {"PartitionKey": "q", "RowKey": "r"}, {})]
    with pytest.raises(StoreError, match="one partition"):
        list(split_batches("t", mixed))
    with pytest.raises(StoreError, match="twice"):
        list(split_batches("t", [ops[0], ops[0]]))
    big = [
        ("upsert", {"PartitionKey": "p", "RowKey": f"r{i}", "b": b"x" * 60_000}, {})
        for i in range(60)
    ]
    assert all(
        sum(len(op[1]["b"]) for op in b) * 4 / 3 < 4 * 1024 * 1024 for b in split_batches("t", big)
    )


def test_int64_and_json_round_trip_through_azurite(azurite: str) -> None:
    store = new_store(azurite)
    store.ensure_tables()
    store.state.replace({"PartitionKey": "p", "RowKey": "r", "n": 2**40, "d": {"k": [1]}})
    entity = store.state.get("p", "r")
    assert entity is not None and entity["n"] == 2**40 and entity["d"] == '{"k":[1]}'
    store.history.submit_partitions(
        [("upsert", {"PartitionKey": f"p{i % 3}", "RowKey": f"r{i}"}, {}) for i in range(250)]
    )
    assert sum(1 for _ in store.history.partition("p0")) == 84


def test_the_alert_baseline_is_what_the_marked_run_left_open(azurite: str) -> None:
    store = new_store(azurite)
    assert store.alert_baseline() is None  # nothing delivered yet: everything is told
    first = doc({n: None for n in range(1, 301)}, org=False)  # every mailbox fails
    first["cas_mailboxes"][0]["PrimarySmtpAddress"] = 'odd"\\ é\U0001f642@contoso.com'
    r1 = record(store, first, now=T0).run
    store.mark_alerted(r1.run_id)
    told = store.alert_baseline()
    previous = store.previous_run()
    assert told is not None and previous is not None
    assert (told.run_id, told.org_disabled, told.complete) == (r1.run_id, False, True)
    assert told.evaluated_at == previous.evaluated_at
    assert told.findings == previous.findings and len(told.findings) == 301  # and the org
    assert 'odd"\\ é\U0001f642@contoso.com' in {f.subject for f in told.findings.values()}

    # A clean run leaves nothing failing; an older run's mark never moves the baseline back.
    r2 = record(store, doc({n: True for n in range(1, 301)}, org=True), now=T0 + DAY).run
    store.mark_alerted(r2.run_id)
    store.mark_alerted(r1.run_id)
    told = store.alert_baseline()
    assert told is not None and told.run_id == r2.run_id
    assert told.findings == (store.previous_run() or told).findings
    assert all(f.status.value != "fail" for f in told.findings.values())


def test_the_alert_baseline_is_read_a_bucket_line_at_a_time_and_as_written_before(
    azurite: str,
) -> None:
    store = new_store(azurite)
    r1 = record(store, doc({n: None for n in range(1, 301)}, org=False), now=T0).run
    store.mark_alerted(r1.run_id)
    lines = Blobs(store.evidence).lines(run_key(r1.run_id), "alerted", r1.run_id)
    assert lines is not None
    head, *buckets, end = list(lines)
    assert head.endswith(b'"findings": {') and end == b"}}" and len(buckets) > 1
    whole = json.loads(b"\n".join([head, *buckets, end]))  # one JSON document all the same
    assert len(whole["findings"]) == 301
    told = store.alert_baseline()
    assert told is not None and len(told.findings) == 301

    # Given this run's findings, the baseline holds their strings, not copies: the same
    # findings, and a subject that changed since keeps the baseline's own.
    renamed = doc({n: None for n in range(1, 301)}, org=False)
    renamed["cas_mailboxes"][5]["PrimarySmtpAddress"] = "renamed@contoso.com"
    current = evaluate(
        parse_snapshot(json.dumps(renamed).encode()), Allowlist(), T0.date(), evaluated_at=T0
    ).findings
    shared = store.alert_baseline(current)
    assert shared is not None and shared.findings == told.findings
    by_id = {f.id: f for f in current}
    same = [p for p in shared.findings.values() if by_id[p.id].subject == p.subject]
    assert len(same) == 300
    assert all(p.subject is by_id[p.id].subject and p.id is by_id[p.id].id for p in same)
    assert "renamed@contoso.com" not in {p.subject for p in shared.findings.values()}

    # A baseline written before the lines (one line, the whole document) reads the same.
    one_line = json.dumps(whole).encode()
    assert b"\n" not in one_line
    Blobs(store.evidence).write(run_key(r1.run_id), {"alerted": one_line})
    again = store.alert_baseline()
    assert again is not None and again.findings == told.findings
    assert (again.run_id, again.complete, again.org_disabled) == (r1.run_id, True, False)


def test_a_blob_is_read_a_line_at_a_time_and_checked_whole(azurite: str) -> None:
    store = new_store(azurite)
    store.ensure_tables()
    blobs = Blobs(store.evidence)
    random = Random(7)
    data = b"\n".join(
        random.randbytes(random.randrange(0, 3000)).hex().encode() for _ in range(900)
    )
    data += b"\n\n"  # empty lines, at the end too
    blobs.write("rk", {"b": data})
    rows = sorted(store.evidence.rows_between("rk", "b.", "b.~"), key=lambda e: e["RowKey"])
    assert len(rows) >= 3  # lines cross the entities' bounds
    lines = blobs.lines("rk", "b", "run 1")
    assert lines is not None and list(lines) == data.split(b"\n")
    assert blobs.lines("rk", "other", "run 1") is None

    # A last entity cut short: the lines before it come, then the blob is refused at its end.
    last = dict(rows[-1])
    last["d0"] = bytes(last["d0"])[:-10]
    store.evidence.replace(last)
    lines = blobs.lines("rk", "b", "run 1")
    assert lines is not None
    with pytest.raises(IncompleteBlob, match="corrupt"):
        list(lines)
    # An entity missing: refused before any line.
    store.evidence.delete(rows[1]["PartitionKey"], rows[1]["RowKey"])
    with pytest.raises(IncompleteBlob, match="incomplete"):
        blobs.lines("rk", "b", "run 1")
