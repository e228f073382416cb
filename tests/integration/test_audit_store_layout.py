"""The state layout follows the tenant's size (issue 17; docs/architecture.md, "Bucket
width"): a tenant that outgrows its buckets is rewritten into wider ones by its next run, in
one commit, a run cut short while doing so changes nothing, and a store written before issue
17 (256 buckets, JSON bucket maps, history in `mbx.<2 hex>`) is read and carried on.

The stores here hold at most 1 record per bucket before they widen (`bucket_records=1`), so
a few hundred mailboxes outgrow the 256 buckets of width 2."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from auditor.core.errors import StoreError
from auditor.core.history import key_hash
from auditor.storage.audit_store import AuditStore
from devkit.faultproxy import FaultProxy, Plan
from tests.integration.test_audit_store_buckets import run_and_compare
from tests.integration.test_crash_harness import table_endpoint
from tests.support.store_helpers import T0, doc, new_store, record

DAY = timedelta(days=1)


def tenant(count: int, shift: int = 0) -> dict[int, Any]:
    """`count` mailboxes; every third one's setting moves with `shift`."""
    values = [None, True, False]
    return {n: values[(n + (shift if n % 3 == 0 else 0)) % 3] for n in range(count)}


def assert_only_committed_rows(store: AuditStore) -> None:
    commit = store._versions.current()
    for kind in ("mailbox", "finding"):
        rows = {e["RowKey"] for e in store.state.partition(kind)}
        assert rows == set(commit.versions[kind].values()), kind
        assert {len(row.partition(".")[0]) for row in rows} <= {commit.width(kind)}


def test_a_growing_tenant_moves_to_wider_buckets_in_one_run(azurite: str) -> None:
    store = new_store(azurite, bucket_records=1)
    run_and_compare(store, doc(tenant(200)), 0)  # 200 <= 256 x 1: width 2
    assert store._versions.current().width("mailbox") == 2
    # 300 mailboxes (some changed, some new): every record moves to 4,096 buckets, and what
    # is recorded is exactly the whole diff.
    run_and_compare(store, doc(tenant(300, shift=1)), 1)
    commit = store._versions.current()
    assert commit.width("mailbox") == 3
    # Each kind by its own size: findings widen once there are more than 256 of them.
    assert commit.width("finding") == (3 if len(store.finding_states()) > 256 else 2)
    assert_only_committed_rows(store)  # the 256-bucket versions are gone
    key = "00000000-0000-4000-8000-000000000007"
    state = store.mailbox_state(key)
    assert state is not None and state.address == "user7@contoso.com"
    # The next run writes only the buckets it changes, at the new width.
    before = len(commit.versions["mailbox"])
    changed = tenant(300, shift=1) | {7: False}  # mailbox 7 (was True): explicitly enabled
    result = record(store, doc(changed), now=T0 + 2 * DAY)
    assert [c.key for c in result.mailbox_changes] == [key]
    after = store._versions.current()
    assert len(after.versions["mailbox"]) == before
    old = commit.versions["mailbox"]
    moved = {b for b, row in after.versions["mailbox"].items() if row != old[b]}
    assert moved == {key_hash(key)[:3]}
    assert [c.kind for c in store.mailbox_changes(key)] == ["changed"]
    assert_only_committed_rows(store)


def test_a_move_cut_short_before_its_commit_changes_nothing(azurite: str) -> None:
    with FaultProxy(table_endpoint(azurite)) as proxy:
        service = TableServiceClient.from_connection_string(
            proxy.connection_string(azurite), retry_total=0
        )
        store = AuditStore(service, prefix=f"move{id(proxy) % 10**6}", bucket_records=1)
        record(store, doc(tenant(200)), now=T0)
        states = store.mailbox_states()
        proxy.reset(Plan(on_path={'"PartitionKey": "commit"': ("unavailable", 10)}))
        with pytest.raises(StoreError, match="503"):
            record(store, doc(tenant(300, shift=1)), now=T0 + DAY)
        dead = store.runs()[0]
        assert dead.status == "running"
        # Its 4,096-bucket versions were written but are not current: nothing moved.
        assert store._versions.current().width("mailbox") == 2
        assert store.mailbox_states() == states
        widths = {len(e["RowKey"].partition(".")[0]) for e in store.state.partition("mailbox")}
        assert widths == {2, 3}
        proxy.reset()
        result = record(store, doc(tenant(300, shift=1)), now=T0 + 2 * DAY)
        assert store.run(dead.run_id).status == "abandoned"
        assert result.run.changes["mailboxes_added"] == 100
        assert store._versions.current().width("mailbox") == 3
        assert len(store.mailbox_states()) == 300
        assert_only_committed_rows(store)  # the dead run's versions went too
        rows = list(store.history.query("PartitionKey ne @x", {"x": ""}))
        assert dead.run_id not in {row["run_id"] for row in rows}


def to_previous_layout(store: AuditStore) -> None:
    """Rewrite a store as the version before issue 17 left it: the commit record with JSON
    bucket maps (`mailbox`, `finding`) and no `layout`, history rows in `mbx.<2 hex>` /
    `fnd.<2 hex>`."""
    entity = store.state.get("commit", "state")
    assert entity is not None and entity["layout"] == 2
    commit = store._versions.current()
    assert commit.width("mailbox") == 2
    old = {
        k: v
        for k, v in entity.items()
        if not k.startswith("_")
        and k not in ("layout", "history_legacy", "mparts")
        and not (k[0] == "m" and k[1:].isdigit())
    }
    for kind in ("mailbox", "finding"):
        old[kind] = json.dumps(dict(sorted(commit.versions[kind].items())))
    store.state.replace(old)
    for row in list(store.history.query("PartitionKey ne @x", {"x": ""})):
        kind, _, digit = str(row["PartitionKey"]).partition(".")
        if kind not in ("mbx", "fnd"):
            continue
        store.history.delete(row["PartitionKey"], row["RowKey"])
        moved = {k: v for k, v in row.items() if not k.startswith("_") and k != "Timestamp"}
        moved["PartitionKey"] = f"{kind}.{str(row['RowKey'])[:2]}"
        assert moved["PartitionKey"].startswith(f"{kind}.{digit}")
        store.history.replace(moved)


def test_a_store_written_by_the_previous_version_is_read_and_carried_on(azurite: str) -> None:
    store = new_store(azurite, bucket_records=1)
    record(store, doc(tenant(200)), now=T0)
    record(store, doc(tenant(200, shift=1)), now=T0 + DAY)
    key = "00000000-0000-4000-8000-000000000003"  # n % 3 == 0: changed by the shift
    changes = store.mailbox_changes(key)
    fid = next(iter(store.finding_states()))
    events = store.finding_events(fid)
    states, findings = store.mailbox_states(), store.finding_states()
    assert len(changes) == 1

    to_previous_layout(store)
    legacy = store._versions.current()
    assert legacy.history_legacy and legacy.width("mailbox") == 2 and not legacy.legacy
    assert store.mailbox_states() == states and store.finding_states() == findings
    assert store.mailbox_changes(key) == changes  # found in its old partition
    assert store.finding_events(fid) == events
    assert store.mailbox_state(key) == states[key]

    # Its next run (a tenant grown past 256 buckets) rewrites it: the new commit form, 4,096
    # buckets, the new rows in the new partitions; the old rows are still read.
    result = record(store, doc(tenant(300, shift=2)), now=T0 + 2 * DAY)
    assert result.run.changes["mailboxes_added"] == 100
    assert key in {c.key for c in result.mailbox_changes}
    entity = store.state.get("commit", "state")
    assert entity is not None and entity["layout"] == 2 and "mailbox" not in entity
    commit = store._versions.current()
    assert commit.history_legacy and commit.width("mailbox") == 3
    assert_only_committed_rows(store)
    kinds = [c.kind for c in store.mailbox_changes(key)]
    assert kinds == ["changed", "changed"]  # one from each partition
    partitions = {
        str(r["PartitionKey"])
        for r in store.history.query("PartitionKey ne @x", {"x": ""})
        if r.get("mailbox") == key
    }
    assert partitions == {f"mbx.{key_hash(key)[:2]}", f"mbx.{key_hash(key)[:1]}"}
