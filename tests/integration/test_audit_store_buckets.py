"""record_run compares the previous state bucket by bucket; what it records must be exactly what
the pure diff of the whole state gives (history.mailbox_changes / finding_changes): the same
changes and events in the same order, the same new findings, the same state afterwards."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from auditor.core.history import finding_changes, mailbox_changes
from auditor.core.model import Allowlist
from auditor.core.policy import evaluate
from auditor.core.snapshot import parse_snapshot
from auditor.storage.audit_store import AuditStore
from tests.support.store_helpers import T0, doc, new_store, record

DAY = timedelta(days=1)
COUNT = 500  # mailboxes in most of the 256 buckets, several in many


def settings(shift: int) -> dict[int, Any]:
    """Every fourth mailbox's setting moves with `shift`."""
    values = [None, True, False]
    return {n: values[(n + (shift if n % 4 == 0 else 0)) % 3] for n in range(COUNT)}


def run_and_compare(store: AuditStore, document: dict[str, Any], day: int) -> None:
    now = T0 + day * DAY
    raw = json.dumps(document).encode()
    snapshot = parse_snapshot(raw)
    evaluation = evaluate(snapshot, Allowlist(), now.date(), evaluated_at=now)
    complete = not snapshot.errors and snapshot.org_disabled is not None
    complete = complete and snapshot.mailboxes is not None
    last_complete = next((r.run_id for r in store.runs() if r.complete), None)
    previous_mailboxes = store.mailbox_states()
    previous_findings = store.finding_states()
    handle = store.begin_run(tenant=snapshot.tenant, now=now)
    try:
        # The whole diff at once, from the states as the buckets hold them (packed).
        mailbox_writes, changes = mailbox_changes(
            {key: state.pack() for key, state in previous_mailboxes.items()},
            snapshot,
            handle.run_id,
            complete=complete,
        )
        finding_writes, events = finding_changes(
            {fid: state.pack() for fid, state in previous_findings.items()},
            evaluation.findings,
            handle.run_id,
            complete=complete,
            last_complete_run=last_complete,
        )
        result = store.record_run(
            handle,
            snapshot=snapshot,
            evaluation=evaluation,
            evidence=raw,
            allowlist=b"",
            allowlist_source="",
            today=now.date(),
            expiring_days=14,
            durations={},
        )
    finally:
        store.release(handle)
    assert result.mailbox_changes == tuple(changes)
    assert result.finding_events == tuple(events)
    assert result.new_findings == tuple(f for f in finding_writes if f not in previous_findings)
    assert result.baseline == (not previous_mailboxes)
    assert store.mailbox_states() == {**previous_mailboxes, **mailbox_writes}
    assert store.finding_states() == {**previous_findings, **finding_writes}


def test_bucketed_record_equals_the_whole_diff(azurite: str) -> None:
    org = False  # the organisation allows SMTP AUTH: a finding per mailbox
    store = new_store(azurite)
    run_and_compare(store, doc(settings(0), org=org), 0)  # baseline
    # Changed settings, removed (n % 11 == 0) and added mailboxes.
    second = {n: v for n, v in settings(1).items() if n % 11} | {COUNT + n: None for n in range(40)}
    run_and_compare(store, doc(second, org=org), 1)
    # Removed ones return, some others change; then a partial run resolves nothing.
    run_and_compare(store, doc(settings(2), org=org), 2)
    partial = doc(settings(0), org=None, errors=[{"source": "Get-TransportConfig", "message": "x"}])
    run_and_compare(store, partial, 3)
    run_and_compare(store, doc({n: v for n, v in settings(0).items() if n % 5}, org=org), 4)


def test_record_helper_still_counts_changes(azurite: str) -> None:
    store = new_store(azurite)
    record(store, doc(settings(0)), now=T0)
    result = record(store, doc({n: v for n, v in settings(1).items() if n % 11}), now=T0 + DAY)
    assert result.run.changes["mailboxes_removed"] == len([n for n in range(COUNT) if n % 11 == 0])
    changed = sum(1 for c in result.mailbox_changes if c.kind == "changed")
    assert result.run.changes["mailboxes_changed"] == changed > 0


def test_a_store_from_before_commit_records_is_read_and_migrated(azurite: str) -> None:
    """Stores written before issue 13 (one `mailbox`/`00` row per bucket, `org`/`current`,
    no commit record) are read as committed; the first new run migrates them."""
    import json
    import zlib

    from auditor.core.history import bucket_of
    from auditor.storage.packing import pack
    from tests.support.store_helpers import T0, doc, new_store, record

    store = new_store(azurite)
    first = record(store, doc({1: None, 2: True, 3: False}, org=False), now=T0)
    states = store.mailbox_states()
    # Rewrite it in the old layout: one row per bucket, no versions, no commit record.
    for entity in list(store.state.partition("mailbox")) + list(store.state.partition("commit")):
        store.state.delete(entity["PartitionKey"], entity["RowKey"])
    buckets: dict[str, dict[str, object]] = {}
    for key, state in states.items():
        buckets.setdefault(bucket_of(key), {})[key] = state.pack()
    for bucket, records in buckets.items():
        body = zlib.compress(json.dumps(records).encode())
        store.state.replace({"PartitionKey": "mailbox", "RowKey": bucket, **pack(body)})
    store.state.replace({"PartitionKey": "org", "RowKey": "current", "setting": "false"})
    assert store.mailbox_states() == states  # read as they were

    second = record(store, doc({1: None, 2: False, 3: False}, org=False), now=T0 + DAY)
    assert [c.kind for c in second.mailbox_changes] == ["changed"]  # nothing "added"
    assert second.org_change is None
    rows = {e["RowKey"] for e in store.state.partition("mailbox")}
    commit = store._versions.current()
    assert not commit.legacy and rows == set(commit.versions["mailbox"].values())
    changed = bucket_of(second.mailbox_changes[0].key)
    assert "." in commit.versions["mailbox"][changed]  # rewritten as a version; others kept
    assert store.state.get("org", "current") is None
    assert first.run.run_id != second.run.run_id
