"""Proposal storage and state machine against a real Azurite: ETag transitions, audit trail."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from auditor.core.errors import Refused, StoreError
from auditor.core.proposals import Proposal, Result, State
from auditor.remediation.plan import plan
from auditor.storage.proposal_rows import CHUNK, clean, pack, unpack
from auditor.storage.proposal_store import ProposalStore
from auditor.storage.tables import Table
from tests.support.remediation_fixtures import APPROVER, NOW, OTHER, box, make_evaluation, new_store


def org_proposal() -> Proposal:
    ev = make_evaluation(
        False,
        [box("keep", None), box("keep2", None), box("lose", None), box("x", False)],
        "keep@contoso.com\nkeep2@contoso.com\n",
    )
    return {p.scope: p for p in plan(ev, run_id="run-1", created_at=NOW)}["organisation"]


@pytest.fixture
def store(azurite: str) -> ProposalStore:
    return new_store(azurite)


def test_save_and_read_back(store: ProposalStore) -> None:
    proposal = org_proposal()
    assert store.save(proposal, now=NOW)
    assert not store.save(proposal, now=NOW)  # same id: stored once
    record = store.get(proposal.id)
    assert record.state is State.PROPOSED
    assert record.plan_hash == proposal.plan_hash
    assert [t.target for t in record.targets] == list(proposal.targets)
    assert [r.id for r in store.recent()] == [proposal.id]
    assert [e.event for e in store.trail(proposal.id)] == ["proposed"]
    with pytest.raises(Refused) as caught:
        store.get("nope")
    assert caught.value.code == "not_found"


def test_concurrent_approvals_approve_once(store: ProposalStore) -> None:
    proposal = org_proposal()
    store.save(proposal, now=NOW)
    outcomes: list[object] = []
    barrier = threading.Barrier(6)

    def approve(who: int) -> None:
        barrier.wait(timeout=10)
        try:
            store.approve(
                proposal.id,
                plan_digest=proposal.plan_hash,
                principal=APPROVER if who % 2 else OTHER,
                now=NOW,
            )
            outcomes.append("ok")
        except Refused as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes.count("ok") == 1
    assert [o for o in outcomes if o != "ok"] == ["already_used"] * 5
    assert store.get(proposal.id).state is State.APPROVED
    events = [e.event for e in store.trail(proposal.id)]
    assert events.count("approved") == 1
    assert events.count("refused") == 5


def test_replayed_approval_is_refused(store: ProposalStore) -> None:
    proposal = org_proposal()
    store.save(proposal, now=NOW)
    store.approve(proposal.id, plan_digest=proposal.plan_hash, principal=APPROVER, now=NOW)
    with pytest.raises(Refused) as caught:
        store.approve(proposal.id, plan_digest=proposal.plan_hash, principal=APPROVER, now=NOW)
    assert caught.value.code == "already_used"
    assert "Ada Approver" in str(caught.value)


def test_wrong_plan_hash_expiry_and_rejection(store: ProposalStore) -> None:
    proposal = org_proposal()
    store.save(proposal, now=NOW)
    with pytest.raises(Refused) as caught:
        store.approve(proposal.id, plan_digest="0" * 64, principal=APPROVER, now=NOW)
    assert caught.value.code == "plan_changed"
    late = NOW + timedelta(days=8)
    with pytest.raises(Refused) as caught:
        store.approve(proposal.id, plan_digest=proposal.plan_hash, principal=APPROVER, now=late)
    assert caught.value.code == "expired"
    assert store.get(proposal.id).state is State.EXPIRED


def test_rejected_cannot_be_approved(store: ProposalStore) -> None:
    proposal = org_proposal()
    store.save(proposal, now=NOW)
    record = store.reject(proposal.id, principal=OTHER, now=NOW, reason="not this week")
    assert record.state is State.REJECTED
    with pytest.raises(Refused) as caught:
        store.approve(proposal.id, plan_digest=proposal.plan_hash, principal=APPROVER, now=NOW)
    assert caught.value.code == "rejected"


def test_tampered_target_row_is_refused(store: ProposalStore) -> None:
    proposal = org_proposal()
    store.save(proposal, now=NOW)
    row = store.targets.get(proposal.id, "plan.0000")
    assert row is not None
    targets = unpack(row)
    targets[0]["after"] = True  # someone with storage access turns a pin into a revocation
    store.targets.replace({**clean(row), **pack(targets)})
    with pytest.raises(Refused) as caught:
        store.approve(proposal.id, plan_digest=proposal.plan_hash, principal=APPROVER, now=NOW)
    assert caught.value.code == "tampered"


def test_subset_rules(store: ProposalStore) -> None:
    proposal = org_proposal()
    store.save(proposal, now=NOW)
    pins = [t.key for t in proposal.targets if t.role.value == "pin"]
    with pytest.raises(Refused) as caught:
        store.approve(
            proposal.id,
            plan_digest=proposal.plan_hash,
            principal=APPROVER,
            now=NOW,
            subset=["organisation", pins[0]],
        )
    assert caught.value.code == "bad_subset"
    with pytest.raises(Refused):
        store.approve(
            proposal.id, plan_digest=proposal.plan_hash, principal=APPROVER, now=NOW, subset=["x"]
        )
    record = store.approve(
        proposal.id, plan_digest=proposal.plan_hash, principal=APPROVER, now=NOW, subset=pins[:1]
    )
    assert record.subset
    chosen = {t.target.key: t.result for t in record.targets}
    assert chosen[pins[0]] is Result.PENDING
    assert chosen["organisation"] is Result.NOT_SELECTED


def test_start_once_and_take_over_after_the_lease(store: ProposalStore) -> None:
    proposal = org_proposal()
    store.save(proposal, now=NOW)
    assert store.start(proposal.id, now=NOW) is None  # not approved yet
    store.approve(proposal.id, plan_digest=proposal.plan_hash, principal=APPROVER, now=NOW)
    first = store.start(proposal.id, now=NOW)
    assert first is not None and first.state is State.RUNNING
    assert store.start(proposal.id, now=NOW + timedelta(minutes=1)) is None
    later = store.start(proposal.id, now=NOW + timedelta(minutes=30))
    assert later is not None and later.attempts == 2
    done = store.finish(proposal.id, State.APPLIED, "all verified", now=NOW)
    assert done.state is State.APPLIED
    assert store.start(proposal.id, now=NOW + timedelta(hours=2)) is None
    events = [e.event for e in store.trail(proposal.id)]
    assert events == ["proposed", "approved", "started", "resumed", "applied"]


def test_large_plans_are_packed_and_subsets_of_any_size_are_signed(store: ProposalStore) -> None:
    boxes = [box(f"keep{n}", None, guid=f"00000000-0000-0000-0001-{n:012d}") for n in range(2500)]
    boxes.append(box("lose", None))
    allow = "".join(f"keep{n}@contoso.com\n" for n in range(2500))
    ev = make_evaluation(False, boxes, allow)
    proposal = {p.scope: p for p in plan(ev, run_id="run-1", created_at=NOW)}["organisation"]
    assert len(proposal.targets) == 2502
    before = store.counter.snapshot()["writes"]
    store.save(proposal, now=NOW)
    # Two packed plan rows, the proposal row, the slot's index row, one trail row.
    assert store.counter.snapshot()["writes"] - before == 5
    record = store.get(proposal.id)
    assert [t.target for t in record.targets] == list(proposal.targets)
    pins = [t.key for t in proposal.targets if t.role.value == "pin"]
    approved = store.approve(
        proposal.id,
        plan_digest=proposal.plan_hash,
        principal=APPROVER,
        now=NOW,
        subset=pins[:-1],
    )
    chosen = {t.target.key for t in approved.targets if t.selected}
    assert chosen == set(pins[:-1])
    assert approved.approval is not None
    assert approved.approval["subset_size"] == 2499
    assert len(approved.extra["row"]["Approval"]) < 1000  # a digest, not 2,499 keys


def big_org_proposal(losers: int) -> Proposal:
    boxes = [
        box(f"u{n:05d}", None, guid=f"00000000-0000-0000-0000-{n:012d}") for n in range(losers)
    ]
    ev = make_evaluation(False, boxes)
    return {p.scope: p for p in plan(ev, run_id="run-1", created_at=NOW)}["organisation"]


def test_a_plan_of_several_rows_is_written_whole_and_read_back_in_order(
    store: ProposalStore,
) -> None:
    proposal = big_org_proposal(2 * CHUNK + 500)  # three plan rows, sent at once
    assert store.save(proposal, now=NOW)
    rows = [store.targets.get(proposal.id, f"plan.{i:04d}") for i in range(4)]
    assert [row is not None for row in rows] == [True, True, True, False]
    assert [row["n"] for row in rows if row is not None] == [CHUNK, CHUNK, 501]
    record = store.get(proposal.id)
    assert [t.target for t in record.targets] == list(proposal.targets)


class FailingRow(Table):
    """The targets table, whose write of one row fails as a storage outage would."""

    def __init__(self, table: Table, row_key: str) -> None:
        self.__dict__.update(table.__dict__)
        self.row_key = row_key

    def replace(self, entity: Mapping[str, Any], *, etag: str | None = None) -> str:
        if entity["RowKey"] == self.row_key:
            raise StoreError(f"{self.name}: write of {self.row_key} failed")
        return super().replace(entity, etag=etag)


def test_a_plan_row_that_fails_to_write_stores_no_proposal(store: ProposalStore) -> None:
    proposal = big_org_proposal(2 * CHUNK + 500)
    store.targets = FailingRow(store.targets, "plan.0001")
    with pytest.raises(StoreError, match=r"plan\.0001"):
        store.save(proposal, now=NOW)
    with pytest.raises(Refused) as caught:  # never a proposal row without all of its targets
        store.get(proposal.id)
    assert caught.value.code == "not_found"
