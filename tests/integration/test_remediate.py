"""Execution against the Exchange emulator + Azurite: re-check, apply, verify, record, once."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from azure.data.tables import TableServiceClient

from auditor.core.approval import ApprovalRecord, sign
from auditor.core.errors import InputError, StoreError
from auditor.core.model import Allowlist
from auditor.core.proposals import (
    Kind,
    Proposal,
    Record,
    Result,
    Role,
    State,
    Target,
    TargetRecord,
    plan_hash,
)
from auditor.remediation.execute import execute, preview, resume_stuck
from auditor.remediation.plan import plan
from auditor.remediation.verify import Check, Verifier
from auditor.storage.proposal_rows import clean, pack, unpack
from auditor.storage.proposal_store import ProposalStore
from tests.support.remediation_env import DOMAIN, Env, guid, remediation_env
from tests.support.remediation_fixtures import APPROVER, NOW, SIGNING_KEY, box, make_evaluation
from tests.support.usage import collected, signin


def approve(env: Env, proposal: Proposal, subset: list[str] | None = None) -> None:
    env.store.approve(
        proposal.id, plan_digest=proposal.plan_hash, principal=APPROVER, now=NOW, subset=subset
    )


def run(env: Env, proposal: Proposal, announced: list[Record] | None = None) -> Record:
    return execute(
        proposal.id,
        store=env.store,
        exchange=env.exchange,
        load_allowlist=env.allowlist,
        now=env.now,
        announce=None if announced is None else announced.append,
    )


def results(record: Record) -> dict[str, tuple[str, str]]:
    return {t.target.display.split("@")[0]: (t.result.value, t.detail) for t in record.targets}


def test_explicit_revocations_apply_verify_and_announce(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": False, "ok": True}, "") as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal)
        announced: list[Record] = []
        record = run(env, proposal, announced)
        assert record.state is State.APPLIED
        assert {k: v[0] for k, v in results(record).items()} == {"a": "applied", "b": "applied"}
        # Organisation blocks: back to organisation control (null), read back and verified.
        assert env.setting("a") is None and env.setting("b") is None
        assert all("verified" in d for _, d in results(record).values())
        assert [r.state for r in announced] == [State.APPLIED]
        events = [e.event for e in env.store.trail(proposal.id)]
        assert events[:3] == ["proposed", "approved", "started"]
        assert events.count("target applied") == 2 and events[-1] == "applied"


def test_recheck_skips_compliant_and_newly_allowlisted(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": False, "c": False}, "") as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal)
        env.emulator.state.cas[next(iter(env.emulator.state.cas))][
            "SmtpClientAuthenticationDisabled"
        ] = True  # "a" fixed by hand meanwhile
        env.allow_text = "b@contoso.com\n"  # "b" allowlisted meanwhile
        record = run(env, proposal)
        got = results(record)
        assert got["a"][0] == "skipped" and "already compliant" in got["a"][1]
        assert got["b"][0] == "skipped" and "now allowlisted" in got["b"][1]
        assert got["c"][0] == "applied"
        assert env.setting("b") is False  # never lowered
        assert record.state is State.APPLIED


def test_partial_failure_is_recorded(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": False}, "") as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal)
        env.emulator.faults.add("deny", cmdlet="Set-CASMailbox", times=1, status=401)
        record = run(env, proposal)
        assert record.state is State.PARTIALLY_APPLIED
        got = results(record)
        assert sorted(v[0] for v in got.values()) == ["applied", "failed"]
        failed = next(d for r, d in got.values() if r == "failed")
        assert "Set-CASMailbox failed" in failed
        assert "1 applied, 1 failed" in record.outcome


def test_queue_retry_is_idempotent(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": False}, "") as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal)
        first = run(env, proposal)
        writes = sum(1 for r in env.emulator.requests if r.cmdlet == "Set-CASMailbox")
        again = run(env, proposal)  # the queue delivers the same message again
        assert (first.state, again.state) == (State.APPLIED, State.APPLIED)
        assert sum(1 for r in env.emulator.requests if r.cmdlet == "Set-CASMailbox") == writes
        assert [e.event for e in env.store.trail(proposal.id)].count("started") == 1


def test_resume_after_a_cut_off_execution_applies_nothing_twice(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": False}, "") as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal)
        # A first executor started, changed "a" and was cut off before recording anything.
        env.store.start(proposal.id, now=NOW)
        first_guid = next(iter(env.emulator.state.cas))
        env.exchange.set_cas_mailbox(first_guid, None)
        writes = sum(1 for r in env.emulator.requests if r.cmdlet == "Set-CASMailbox")
        assert run(env, proposal).state is State.RUNNING  # lease not over: nothing happens
        env.clock[0] = NOW + timedelta(minutes=30)
        record = run(env, proposal)
        assert record.state is State.APPLIED and record.attempts == 2
        got = results(record)
        assert got["a"][0] == "skipped" and got["b"][0] == "applied"
        assert sum(1 for r in env.emulator.requests if r.cmdlet == "Set-CASMailbox") == writes + 1


def test_organisation_plan_pins_first_then_flips_and_verifies(azurite: str) -> None:
    boxes = {"keep": None, "keep2": None, "lose": None, "off": True}
    with remediation_env(azurite, False, boxes, "keep@contoso.com\nkeep2\n") as env:
        proposal = env.proposals()["organisation"]
        approve(env, proposal)
        record = run(env, proposal)
        assert record.state is State.APPLIED, record.outcome
        assert env.emulator.state.org_disabled is True
        assert env.setting("keep") is False and env.setting("keep2") is False
        assert env.setting("lose") is None  # not written: it loses SMTP AUTH via the org
        got = results(record)
        assert got["lose"][0] == "verified"
        writes = [r.cmdlet for r in env.emulator.requests if r.cmdlet.startswith("Set-")]
        assert writes == ["Set-CASMailbox", "Set-CASMailbox", "Set-TransportConfig"]


def test_organisation_not_flipped_when_a_pin_fails(azurite: str) -> None:
    boxes = {"keep": None, "lose": None}
    with remediation_env(azurite, False, boxes, "keep@contoso.com\n") as env:
        proposal = env.proposals()["organisation"]
        approve(env, proposal)
        env.emulator.faults.add("deny", cmdlet="Set-CASMailbox", times=1, status=401)
        record = run(env, proposal)
        assert env.emulator.state.org_disabled is False
        got = results(record)
        assert got["keep"][0] == "failed"
        assert got["organisation (Set-TransportConfig)"][0] == "failed"
        assert "pin of keep@contoso.com failed" in got["organisation (Set-TransportConfig)"][1]
        assert got["lose"][0] == "skipped"
        assert record.state is State.FAILED


def test_organisation_not_flipped_when_someone_was_allowlisted_since_the_plan(
    azurite: str,
) -> None:
    boxes = {"keep": None, "newcomer": None}
    with remediation_env(azurite, False, boxes, "keep@contoso.com\n") as env:
        proposal = env.proposals()["organisation"]
        approve(env, proposal)
        env.allow_text += "newcomer@contoso.com\n"
        record = run(env, proposal)
        assert env.emulator.state.org_disabled is False
        detail = results(record)["organisation (Set-TransportConfig)"][1]
        assert "newcomer@contoso.com still inherits" in detail
        assert record.state is State.PARTIALLY_APPLIED  # the pin of "keep" was applied


def test_subset_only_changes_selected_targets(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": False}, "") as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal, subset=[proposal.targets[0].key])
        record = run(env, proposal)
        assert record.state is State.APPLIED
        got = {t.target.key: t.result for t in record.targets}
        assert got[proposal.targets[0].key] is Result.APPLIED
        assert got[proposal.targets[1].key] is Result.NOT_SELECTED
        assert sorted([env.setting("a"), env.setting("b")], key=str) == [False, None]


def test_unreadable_allowlist_changes_nothing(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False}, "") as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal)

        def broken() -> Allowlist:
            raise InputError("allowlist.txt", "cannot read allowlist: gone")

        record = execute(
            proposal.id, store=env.store, exchange=env.exchange, load_allowlist=broken, now=env.now
        )
        assert record.state is State.FAILED and env.setting("a") is False
        assert "allowlist could not be re-read" in record.outcome


def test_grants_apply_and_skip_removed_entries(azurite: str) -> None:
    boxes = {"unused": True, "inherits": None, "removed": True}
    allow = "unused@contoso.com\ninherits@contoso.com\nremoved@contoso.com\n"
    with remediation_env(azurite, False, boxes, allow) as env:
        proposal = env.proposals(grants=True)["allowlist"]
        assert proposal.kind.value == "grant"
        approve(env, proposal)
        env.allow_text = "unused@contoso.com\ninherits@contoso.com\n"
        record = run(env, proposal)
        got = results(record)
        assert got["unused"][0] == "applied" and got["inherits"][0] == "applied"
        assert got["removed"][0] == "skipped" and "no longer allowlisted" in got["removed"][1]
        assert env.setting("removed") is True


def test_preview_changes_nothing(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": True}, "") as env:
        proposal = env.proposals()["mailboxes"]
        record = env.store.get(proposal.id)
        shown = preview(record, exchange=env.exchange, allowlist=env.allowlist(), today=NOW.date())
        assert [line["action"] for line in shown.lines] == ["apply"]
        assert not [r for r in env.emulator.requests if r.cmdlet.startswith("Set-")]
        assert env.store.get(proposal.id).state is State.PROPOSED


def test_preview_lists_the_selected_targets_that_will_break(azurite: str) -> None:
    """The dry run names, first and apart, the selected targets that used SMTP AUTH lately."""
    with remediation_env(azurite, True, {"a": False, "b": False, "c": False}, "") as env:
        used = collected(
            signin(
                user_id=guid(1002),
                upn="b@contoso.com",
                at=NOW - timedelta(days=2),
                ip="198.51.100.7",
                app="Copier",
            ),
            now=NOW,
        )
        proposal = env.proposals(usage=used)["mailboxes"]
        record = env.store.get(proposal.id)
        allowlist = env.allowlist()
        whole = preview(record, exchange=env.exchange, allowlist=allowlist, today=NOW.date())
        assert [b["display"] for b in whole.breaking] == ["b@contoso.com"]
        assert whole.breaking[0]["detail"].startswith("will break: last used ")
        assert "198.51.100.7 (Copier)" in whole.breaking[0]["detail"]
        assert whole.to_json()["will_break"] == list(whole.breaking)
        keys = {t.target.display: t.target.key for t in record.targets}
        others = {keys["a@contoso.com"], keys["c@contoso.com"]}
        part = preview(
            record, exchange=env.exchange, allowlist=allowlist, today=NOW.date(), subset=others
        )
        assert part.breaking == () and len(part.lines) == 2
        assert not [r for r in env.emulator.requests if r.cmdlet.startswith("Set-")]


def test_grant_skipped_when_its_entry_now_names_several_mailboxes(azurite: str) -> None:
    boxes = {"scanner": True, "other": True}
    with remediation_env(azurite, True, boxes, "scanner\n") as env:
        proposal = env.proposals(grants=True)["allowlist"]
        approve(env, proposal)
        # Since the plan, a second mailbox has come to answer to the name "scanner": the
        # entry is ambiguous, so it enables nobody (as the audit would judge it).
        other = next(r for r in env.emulator.state.cas.values() if r["Name"] == "other")
        other["Name"] = "scanner"
        record = run(env, proposal)
        got = results(record)
        assert got["scanner"][0] == "skipped"
        assert "names several mailboxes" in got["scanner"][1]
        assert env.setting("scanner") is True


def test_verify_waits_for_replication_and_says_how_long(azurite: str) -> None:
    """Reads lag writes by 3 s: each change is read back until it shows (bound 20 s), the
    three targets are verified together, and each detail says how long it took."""
    boxes: dict[str, bool | None] = {"a": False, "b": False, "c": False}
    with remediation_env(azurite, False, boxes, "", replication_delay=3.0) as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal)
        started = time.monotonic()
        record = execute(
            proposal.id,
            store=env.store,
            exchange=env.exchange,
            load_allowlist=env.allowlist,
            now=env.now,
            verify_seconds=20,
        )
        took = time.monotonic() - started
        assert record.state is State.APPLIED
        done = results(record)
        assert {k: v[0] for k, v in done.items()} == {
            "a": "applied",
            "b": "applied",
            "c": "applied",
        }
        for _, detail in done.values():
            assert "verified after" in detail
            seconds = float(detail.split("verified after ")[1].split(" s")[0])
            assert 2.5 <= seconds < 20
        assert took < 12  # concurrently: about one replication delay, not three


def test_verify_fails_only_after_the_bound(azurite: str) -> None:
    with remediation_env(azurite, False, {"a": False}, "", replication_delay=30.0) as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal)
        record = execute(
            proposal.id,
            store=env.store,
            exchange=env.exchange,
            load_allowlist=env.allowlist,
            now=env.now,
            verify_seconds=1.5,
        )
        result, detail = results(record)["a"]
        assert result == "failed" and record.state is State.FAILED
        assert detail.startswith("verify failed: read back false, expected true, still after")
        assert "REMEDIATION_VERIFY_SECONDS 1.5" in detail


def test_verifier_backs_off_and_reads_last_at_the_bound() -> None:
    """The schedule with a fake clock: reads at 0, 0.5, 1.5, 3.5, 7.5 s, then at the 10 s bound."""
    clock = [0.0]
    reads: list[float] = []

    def read() -> bool | None:
        reads.append(clock[0])
        return False  # the old value, for ever

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    verifier = Verifier(bound=10.0, sleep=sleep, clock=lambda: clock[0])
    never = Check(cast(TargetRecord, None), read, True, "false -> true", "false")
    verifier.add(never)
    soon = [False, False, True]
    verifier.add(Check(cast(TargetRecord, None), lambda: soon.pop(0), True, "x", ""))
    done = verifier.settle()
    assert reads == [0.0, 0.5, 1.5, 3.5, 7.5, 10.0]
    assert [c.result for c in done] == [Result.APPLIED, Result.FAILED]
    assert done[0].detail == "x; verified after 1.5 s, 3 reads"
    assert done[1].detail.startswith("verify failed: read back false, expected true, still after")


# -- whoever can write the storage account cannot get an unapproved change executed -----------


def set_row(env: Env, proposal_id: str, **changes: Any) -> None:
    """Write the proposal row directly, as someone with the storage account's key could."""
    row = env.store.proposals.get("proposal", proposal_id)
    assert row is not None
    row = {**clean(row), **changes}
    env.store.proposals.replace({k: v for k, v in row.items() if v is not None})


def edit_plan(env: Env, proposal_id: str, edit: Callable[[list[dict[str, Any]]], None]) -> str:
    """Edit the stored targets and recompute the plain plan hash over them; the new hash."""
    row = env.store.targets.get(proposal_id, "plan.0000")
    assert row is not None
    targets = unpack(row)
    edit(targets)
    env.store.targets.replace({**clean(row), **pack(targets)})
    digest = plan_hash([Target.from_dict(t) for t in targets])
    set_row(env, proposal_id, PlanHash=digest)
    return digest


def refused(env: Env, proposal: Proposal, word: str) -> Record:
    """Deliver the queue message; the executor refuses, records why, changes nothing."""
    before = {g: dict(r) for g, r in env.emulator.state.cas.items()}
    record = run(env, proposal)
    assert record.state is State.FAILED, record.outcome
    assert record.outcome.startswith("refused, nothing changed") and word in record.outcome
    assert "refused" in [e.event for e in env.store.trail(proposal.id)]
    assert not [r for r in env.emulator.requests if r.cmdlet.startswith("Set-")]
    assert env.emulator.state.cas == before
    return record


def test_forged_state_without_an_approval_is_refused(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": False}, "") as env:
        proposal = env.proposals()["mailboxes"]
        set_row(env, proposal.id, State="approved")  # + a queue message {"id": ...}
        refused(env, proposal, "approval record missing")


def test_forged_approval_fields_without_the_key_are_refused(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False}, "") as env:
        proposal = env.proposals()["mailboxes"]
        forged = ApprovalRecord(proposal.id, proposal.plan_hash, None, "x", "Mallory", "2026-11-27")
        other_key = b"not-the-app-key-but-long-enough-0123456789"
        set_row(
            env,
            proposal.id,
            State="approved",
            Approval=json.dumps(forged.to_dict()),
            ApprovalMac=sign(other_key, forged),
        )
        refused(env, proposal, "signature does not verify")


def test_edited_target_with_recomputed_hash_is_refused(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": False, "c": True}, "") as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal)

        def retarget(targets: list[dict[str, Any]]) -> None:
            targets[0]["after"] = False  # keep it enabled ...
            targets[1]["guid"] = targets[1]["key"] = guid(3)  # ... and hit another mailbox

        edit_plan(env, proposal.id, retarget)
        refused(env, proposal, "do not hash to the plan hash that was approved")


def test_reselected_subset_is_refused(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": False}, "") as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal, subset=[proposal.targets[0].key])
        [row] = [
            r for r in env.store.targets.partition(proposal.id) if r["RowKey"].startswith("subset.")
        ]
        every = sorted(t.key for t in proposal.targets)
        env.store.targets.replace({**clean(row), **pack(every)})  # tick the unticked one
        refused(env, proposal, "does not hash to the subset that was approved")


def test_widened_approval_record_is_refused(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": False}, "") as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal, subset=[proposal.targets[0].key])
        row = env.store.proposals.get("proposal", proposal.id)
        assert row is not None
        approval = json.loads(row["Approval"])
        approval["subset_sha256"] = None  # "every target"
        set_row(env, proposal.id, Approval=json.dumps(approval), Subset=False)
        refused(env, proposal, "signature does not verify")


def test_removed_approval_record_is_refused(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False}, "") as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal)
        set_row(env, proposal.id, Approval=None, ApprovalMac=None)
        refused(env, proposal, "approval record missing")


def test_approval_of_another_proposal_is_refused(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False}, "") as env:
        mailboxes = env.proposals()["mailboxes"]
        approve(env, mailboxes)
        row = env.store.proposals.get("proposal", mailboxes.id)
        assert row is not None
        # A second, never approved proposal gets a copy of the first one's valid approval.
        other = plan(make_evaluation(True, [box("zed", False)]), run_id="run-9", created_at=NOW)[0]
        env.store.save(other, now=NOW)
        set_row(
            env,
            other.id,
            State="approved",
            Approval=row["Approval"],
            ApprovalMac=row["ApprovalMac"],
        )
        refused(env, other, "approval record is for proposal")


def handmade(kind: Kind, scope: str, targets: list[Target]) -> Proposal:
    ordered = tuple(targets)
    return Proposal(
        id=f"hand-{scope}",
        kind=kind,
        scope=scope,
        tenant=DOMAIN,
        run_id="run-1",
        created_at=NOW,
        expires_at=NOW + timedelta(days=7),
        title="handmade",
        targets=ordered,
        plan_hash=plan_hash(ordered),
    )


def mailbox_target(n: int, role: Role, before: bool | None, after: bool | None) -> Target:
    return Target(
        key=guid(n),
        role=role,
        display=f"mailbox {n}",
        before=before,
        after=after,
        step=1,
        reason="handmade",
        guid=guid(n),
    )


def test_invariant_violations_are_refused_even_when_validly_approved(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": True, "b": None}, "") as env:
        cases = [
            # A "revocation" that enables: true -> false.
            handmade(Kind.REVOCATION, "raise", [mailbox_target(1, Role.REVOKE, True, False)]),
            # A revocation carrying a grant.
            handmade(Kind.REVOCATION, "mixed", [mailbox_target(1, Role.GRANT, True, False)]),
            # A "grant" that writes true.
            handmade(Kind.GRANT, "grant", [mailbox_target(2, Role.GRANT, None, True)]),
        ]
        for proposal in cases:
            env.store.save(proposal, now=NOW)
            approve(env, proposal)
            refused(env, proposal, "invariant")
        assert env.setting("a") is True and env.setting("b") is None


def test_grant_only_to_mailboxes_the_allowlist_names_now(azurite: str) -> None:
    with remediation_env(azurite, True, {"listed": True, "victim": True}, "listed\n") as env:
        # A validly approved grant whose stored UPN and address name the allowlisted mailbox
        # but whose Guid is another one: judged by the live read, the victim is not named.
        target = Target(
            key=guid(2),
            role=Role.GRANT,
            display="listed@contoso.com",
            before=True,
            after=False,
            step=1,
            reason="handmade",
            guid=guid(2),
            upn="listed@contoso.com",
            address="listed@contoso.com",
        )
        proposal = handmade(Kind.GRANT, "allowlist", [target])
        env.store.save(proposal, now=NOW)
        approve(env, proposal)
        record = run(env, proposal)
        [result] = record.targets
        assert result.result is Result.SKIPPED and "no longer allowlisted" in result.detail
        assert env.setting("victim") is True


# -- nothing stuck: a storage failure mid-run is resumed to the end ----------------------------


class FlakyStore(ProposalStore):
    """The real store on Azurite whose next `failures` result writes fail like a dropped
    connection would (the storage error the adapter raises)."""

    failures = 0

    def record_results(self, proposal_id: str, results: Any, *, now: datetime) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("write remediationtargets: Table Storage unreachable: injected")
        super().record_results(proposal_id, results, now=now)


def test_storage_failure_mid_run_is_resumed_by_the_next_delivery(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": False, "c": False}, "") as env:
        flaky = FlakyStore(
            TableServiceClient.from_connection_string(azurite),
            prefix=f"f{uuid.uuid4().hex[:8]}",
            signing_key=SIGNING_KEY,
        )
        flaky.create_tables()
        env.store = flaky
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal)
        flaky.failures = 1
        with pytest.raises(StoreError):
            run(env, proposal)  # the changes were made, their results could not be recorded
        stuck = flaky.get(proposal.id)
        assert stuck.state is State.RUNNING
        assert flaky.lease_expired(stuck, env.now())  # the lease was given up at once
        writes = sum(1 for r in env.emulator.requests if r.cmdlet == "Set-CASMailbox")
        record = run(env, proposal)  # the queue delivers the message again
        assert record.state is State.APPLIED and record.attempts == 2, record.outcome
        assert all(t.result is not Result.PENDING for t in record.targets)
        assert {t.result for t in record.targets} == {Result.SKIPPED}  # re-checked: done
        assert sum(1 for r in env.emulator.requests if r.cmdlet == "Set-CASMailbox") == writes
        events = [e.event for e in flaky.trail(proposal.id)]
        assert "interrupted" in events and "resumed" in events and events[-1] == "applied"


def test_nightly_sweep_resumes_a_running_proposal_whose_lease_passed(azurite: str) -> None:
    with remediation_env(azurite, True, {"a": False, "b": False}, "") as env:
        proposal = env.proposals()["mailboxes"]
        approve(env, proposal)
        env.store.start(proposal.id, now=NOW)  # an executor started and died: no release
        assert (
            resume_stuck(
                store=env.store,
                exchange=lambda: env.exchange,
                load_allowlist=env.allowlist,
                now=env.now,
            )
            == []
        )  # its lease is still running
        env.clock[0] = NOW + timedelta(minutes=10)
        [record] = resume_stuck(
            store=env.store,
            exchange=lambda: env.exchange,
            load_allowlist=env.allowlist,
            now=env.now,
        )
        assert record.state is State.APPLIED
        assert {t.result for t in record.targets} == {Result.APPLIED}
        assert env.setting("a") is None and env.setting("b") is None
