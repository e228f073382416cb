"""The nightly audit stores its run's remediation proposals; approving one is verified by the
next audit (emulator + Azurite)."""

from __future__ import annotations

import gc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.data.tables import TableServiceClient

from auditor.app.audit import AuditIncomplete, run_audit
from auditor.app.settings import Settings
from auditor.app.wiring import proposer_from_settings
from auditor.core.proposals import PlannedProposals, State
from auditor.exchange.collect import collect_snapshot
from auditor.remediation.execute import execute
from auditor.storage.proposal_store import ProposalStore
from auditor.storage.tables import OpCounter
from tests.support.remediation_env import DOMAIN, remediation_env
from tests.support.remediation_fixtures import APPROVER, SIGNING_KEY
from tests.support.store_helpers import new_store


def test_audit_stores_proposals_and_the_next_audit_verifies_the_fix(
    azurite: str, tmp_path: Path
) -> None:
    boxes = {"erp": False, "keep": None, "lonely": True}
    allow = tmp_path / "allow.txt"
    allow.write_text("keep@contoso.com\nlonely@contoso.com\n", encoding="utf-8")
    prefix = f"p{uuid.uuid4().hex[:8]}"
    tables = TableServiceClient.from_connection_string(azurite)
    settings = Settings(storage=azurite, table_prefix=prefix, approval_signing_key=SIGNING_KEY)
    with remediation_env(azurite, True, boxes, allow.read_text()) as env:
        audit_store = new_store(azurite)
        times = iter([datetime(2026, 11, 27, 2, tzinfo=UTC) + timedelta(days=d) for d in range(9)])

        def collect(now: datetime) -> dict[str, Any]:
            return collect_snapshot(env.exchange, tenant=DOMAIN, now=now)

        def audit() -> Any:
            return run_audit(
                store=audit_store,
                collect=collect,
                tenant=DOMAIN,
                allowlist_path=allow,
                clock=lambda: next(times),
                proposer=proposer_from_settings(settings, tables=tables),
            )

        first = audit()
        assert first.exit_code == 1
        store = ProposalStore(tables, prefix=prefix, signing_key=SIGNING_KEY)
        records = {store.get(pid).kind.value: store.get(pid) for pid in first.proposals}
        assert set(records) == {"revocation", "grant"}  # never mixed in one proposal
        revoke = records["revocation"]
        assert revoke.run_id == first.run_id
        assert [t.target.display for t in revoke.targets] == ["erp@contoso.com"]
        grant = records["grant"]
        # Allowlisted but effectively disabled (the organisation blocks): a grant each.
        assert sorted(t.target.display for t in grant.targets) == [
            "keep@contoso.com",
            "lonely@contoso.com",
        ]

        store.approve(revoke.id, plan_digest=revoke.plan_hash, principal=APPROVER, now=env.now())
        done = execute(
            revoke.id,
            store=store,
            exchange=env.exchange,
            load_allowlist=env.allowlist,
            now=env.now,
        )
        assert done.state is State.APPLIED
        second = audit()
        assert second.exit_code == 0  # the next audit verifies: no failing mailbox is left
        again = {store.get(pid).kind.value for pid in second.proposals}
        assert again == {"grant"}  # the allowlisted mailboxes are still unused
        # The same grant plan the next night is the same, living proposal, confirmed again.
        assert second.proposals == (grant.id,)
        confirmed = store.get(grant.id)
        assert confirmed.state is State.PROPOSED and confirmed.last_confirmed == second.run_id
        assert [r.id for r in store.recent()] == [grant.id]  # open ones only
        assert store.get(revoke.id).state is State.APPLIED


def test_identical_nightly_runs_keep_one_proposal_and_write_o_changes(
    azurite: str, tmp_path: Path
) -> None:
    # The organisation allows SMTP AUTH: one organisation-level plan with every inheriting
    # mailbox in it (pins and losers), plus explicit enables.
    boxes: dict[str, bool | None] = {f"u{n}": None for n in range(120)}
    boxes.update({"erp": False, "scan": False, "keep": None})
    allow = tmp_path / "allow.txt"
    allow.write_text("keep@contoso.com\n", encoding="utf-8")
    prefix = f"p{uuid.uuid4().hex[:8]}"
    tables = TableServiceClient.from_connection_string(azurite)
    settings = Settings(storage=azurite, table_prefix=prefix, approval_signing_key=SIGNING_KEY)
    counter = OpCounter()
    with remediation_env(azurite, False, boxes, allow.read_text()) as env:
        audit_store = new_store(azurite)
        times = iter([datetime(2026, 11, 27, 2, tzinfo=UTC) + timedelta(days=d) for d in range(9)])

        def audit() -> Any:
            return run_audit(
                store=audit_store,
                collect=lambda now: collect_snapshot(env.exchange, tenant=DOMAIN, now=now),
                tenant=DOMAIN,
                allowlist_path=allow,
                clock=lambda: next(times),
                proposer=proposer_from_settings(settings, tables=tables, counter=counter),
            )

        first = audit()
        first_writes = counter.snapshot()["writes"]
        store = ProposalStore(tables, prefix=prefix, signing_key=SIGNING_KEY)
        org = next(store.get(p) for p in first.proposals if store.get(p).scope == "organisation")
        assert len(org.targets) == 122  # 1 pin, 120 losers, the organisation
        for night in range(2):
            before = counter.snapshot()["writes"]
            again = audit()
            writes = counter.snapshot()["writes"] - before
            assert again.proposals == first.proposals  # the same proposals, not new ones
            # One entity per living proposal (its LastConfirmed run), nothing per target.
            assert writes == len(first.proposals), (night, writes)
        assert first_writes > writes
        assert store.get(org.id).last_confirmed == again.run_id
        assert len(store.recent()) == len(first.proposals)

        # A changed plan supersedes the open one, linked to its successor.
        env.emulator.state.cas[next(iter(env.emulator.state.cas))][
            "SmtpClientAuthenticationDisabled"
        ] = False
        changed = audit()
        assert org.id not in changed.proposals
        old = store.get(org.id)
        assert old.state is State.SUPERSEDED and old.superseded_by in changed.proposals
        assert store.get(old.superseded_by or "").supersedes == org.id


def test_a_run_recorded_suspect_stores_none_of_the_proposals_it_planned(
    azurite: str, exchange_emulator: Any
) -> None:
    # The proposals are planned while the run is recorded; only a run recorded complete keeps
    # them. A read that loses 40% of the mailboxes looks complete until the plausibility
    # guard marks the run suspect: its plan (which would supersede the living one) is dropped.
    # A read that failed is not planned.
    from tests.support.builders import EMULATOR_TOKEN, emulator_collector

    emu = exchange_emulator
    emu.state.org_disabled = False
    prefix = f"p{uuid.uuid4().hex[:8]}"
    tables = TableServiceClient.from_connection_string(azurite)
    settings = Settings(storage=azurite, table_prefix=prefix, approval_signing_key=SIGNING_KEY)
    nightly = proposer_from_settings(settings, tables=tables)
    assert nightly is not None
    planned_for: list[str] = []
    collector_on_while_saving: list[bool] = []

    def proposer(evaluation: Any, run_id: str, now: datetime) -> PlannedProposals:
        planned_for.append(run_id)
        planned = nightly(evaluation, run_id, now)

        def save() -> list[str]:
            collector_on_while_saving.append(gc.isenabled())
            return planned.save()

        return PlannedProposals(planned.ids, save)

    audit_store = new_store(azurite)
    times = iter([datetime(2026, 11, 27, 2, tzinfo=UTC) + timedelta(days=d) for d in range(3)])
    with httpx.Client(timeout=30) as http:
        collect = emulator_collector(emu, http, EMULATOR_TOKEN)

        def audit() -> Any:
            return run_audit(
                store=audit_store,
                collect=collect,
                tenant=emu.domain,
                clock=lambda: next(times),
                proposer=proposer,
            )

        assert gc.isenabled()
        first = audit()
        assert first.complete and first.proposals
        # Off while the plan's rows were sent (hundreds of thousands of acyclic objects at
        # scale), back on once the run is over.
        assert collector_on_while_saving == [False] and gc.isenabled()
        for guid in sorted(emu.state.cas)[:100]:
            del emu.state.cas[guid], emu.state.mailboxes[guid]
        with pytest.raises(AuditIncomplete) as caught:
            audit()
        emu.faults.add("deny", cmdlet="Get-CASMailbox", times=None)
        with pytest.raises(AuditIncomplete) as partial:
            audit()
    suspect = caught.value.summary
    assert not partial.value.summary.complete and partial.value.summary.proposals == ()
    assert suspect.status == "suspect" and gc.isenabled()
    assert collector_on_while_saving == [False]  # nothing stored for the suspect run
    # Planned, then dropped; a partial read is never planned at all.
    assert planned_for == [first.run_id, suspect.run_id]
    assert suspect.proposals == ()
    store = ProposalStore(tables, prefix=prefix, signing_key=SIGNING_KEY)
    assert sorted(r.id for r in store.recent()) == sorted(first.proposals)
    assert {store.get(p).state for p in first.proposals} == {State.PROPOSED}
