"""The pure remediation planner: every case, including the pin-first org plan."""

from __future__ import annotations

from typing import Any

import pytest

from auditor.core.proposals import ORG_TARGET, Kind, Proposal, Role, plan_hash
from auditor.remediation.plan import org_blockers, plan, plan_grants
from tests.support.remediation_fixtures import NOW, make_evaluation

evaluation = make_evaluation


def box(name: str, setting: Any, *, present: bool = True) -> dict[str, Any]:
    record: dict[str, Any] = {
        "Guid": f"00000000-0000-0000-0000-{abs(hash(name)) % 10**12:012d}",
        "PrimarySmtpAddress": f"{name}@contoso.com",
        "Name": name,
    }
    if present:
        record["SmtpClientAuthenticationDisabled"] = setting
    return record


def by_scope(proposals: list[Proposal]) -> dict[str, Proposal]:
    return {p.scope: p for p in proposals}


def test_explicit_false_goes_back_to_null_when_the_organisation_blocks() -> None:
    ev = evaluation(True, [box("a", False), box("b", True), box("c", None)])
    [proposal] = plan(ev, run_id="r1", created_at=NOW)
    assert proposal.kind is Kind.REVOCATION
    assert proposal.scope == "mailboxes"
    [target] = proposal.targets
    assert (target.display, target.before, target.after, target.role) == (
        "a@contoso.com",
        False,
        None,
        Role.REVOKE,
    )
    assert proposal.loses == ("a@contoso.com",)


def test_force_true_always_sets_true() -> None:
    ev = evaluation(True, [box("a", False)])
    [proposal] = plan(ev, run_id="r1", created_at=NOW, force_true=True)
    assert proposal.targets[0].after is True


@pytest.mark.parametrize("org", [False, None])
def test_explicit_false_gets_true_when_the_organisation_allows_or_is_unknown(
    org: bool | None,
) -> None:
    ev = evaluation(org, [box("a", False)])
    mailboxes = by_scope(plan(ev, run_id="r1", created_at=NOW))["mailboxes"]
    assert mailboxes.targets[0].after is True


def test_organisation_plan_pins_allowlisted_inheriting_mailboxes_first() -> None:
    ev = evaluation(
        False,
        [box("keep", None), box("lose", None), box("pinned", False), box("off", True)],
        "keep@contoso.com\npinned@contoso.com\n",
    )
    proposals = by_scope(plan(ev, run_id="r1", created_at=NOW))
    assert set(proposals) == {"organisation"}
    org = proposals["organisation"]
    assert org.kind is Kind.REVOCATION
    roles = [(t.role, t.display, t.before, t.after) for t in org.targets]
    # Pins first (step 1), then the organisation (step 2), then who loses (verified after).
    assert roles == [
        (Role.PIN, "keep@contoso.com", None, False),
        (Role.ORG, "organisation (Set-TransportConfig)", False, True),
        (Role.REVOKE, "lose@contoso.com", None, None),
    ]
    assert org.kept == ("keep@contoso.com",)
    assert org.loses == ("lose@contoso.com",)
    assert [t.step for t in org.targets] == sorted(t.step for t in org.targets)
    assert "1 mailbox(es) lose it" in org.title


def test_targets_are_ordered_by_step_then_key_whatever_order_the_mailboxes_came_in() -> None:
    names = [f"user{n}" for n in (7, 3, 9, 1, 8, 2, 6, 4, 5, 0)]
    ev = evaluation(
        False,
        [box(name, None) for name in names],
        "\n".join(f"{name}@contoso.com" for name in names[::3]) + "\n",
    )
    org = by_scope(plan(ev, run_id="r1", created_at=NOW))["organisation"]
    order = [(t.step, t.key) for t in org.targets]
    assert order == sorted(order)
    assert len({step for step, _ in order}) == 3  # pins, the organisation, who loses
    reversed_ev = evaluation(
        False,
        [box(name, None) for name in reversed(names)],
        "\n".join(f"{name}@contoso.com" for name in names[::3]) + "\n",
    )
    again = by_scope(plan(reversed_ev, run_id="r1", created_at=NOW))["organisation"]
    assert again.targets == org.targets and again.plan_hash == org.plan_hash


def test_allowlisted_mailboxes_are_never_lowered() -> None:
    ev = evaluation(False, [box("erp", False), box("scan", None)], "erp@contoso.com\nscan\n")
    for proposal in plan(ev, run_id="r1", created_at=NOW):
        for target in proposal.targets:
            if target.key != ORG_TARGET:
                assert target.after is False, target


def test_expired_exception_is_revoked() -> None:
    ev = evaluation(
        True,
        [box("old", False)],
        "Identity,Expires\nold@contoso.com,2026-01-01\n",
        csv=True,
    )
    [proposal] = plan(ev, run_id="r1", created_at=NOW)
    assert proposal.loses == ("old@contoso.com",)


def test_unknown_evidence_is_never_acted_upon() -> None:
    ev = evaluation(True, [box("x", None, present=False)])
    assert plan(ev, run_id="r1", created_at=NOW) == []


def test_no_organisation_plan_while_an_allowlisted_mailbox_is_unknown() -> None:
    ev = evaluation(False, [box("a", None), box("b", None, present=False)], "b@contoso.com\n")
    assert plan(ev, run_id="r1", created_at=NOW) == []
    assert any("unknown" in reason for reason in org_blockers(ev))


def test_no_organisation_plan_after_a_failed_collection() -> None:
    ev = evaluation(
        False,
        [box("a", None)],
        errors=[{"source": "Get-Mailbox", "message": "paging broke off"}],
    )
    assert plan(ev, run_id="r1", created_at=NOW) == []
    assert org_blockers(ev)


def test_no_organisation_plan_when_the_organisation_already_blocks() -> None:
    ev = evaluation(True, [box("a", None)])
    assert plan(ev, run_id="r1", created_at=NOW) == []


def test_ids_hashes_and_expiry_are_stable() -> None:
    ev = evaluation(False, [box("a", False), box("b", None)], "b@contoso.com\n")
    first = plan(ev, run_id="r1", created_at=NOW)
    again = plan(ev, run_id="r1", created_at=NOW)
    other_run = plan(ev, run_id="r2", created_at=NOW)
    assert [p.id for p in first] == [p.id for p in again]
    assert [p.plan_hash for p in first] == [p.plan_hash for p in other_run]
    # One living proposal per plan: the id comes from the plan, not from the run.
    assert [p.id for p in first] == [p.id for p in other_run]
    changed = plan(
        evaluation(False, [box("a", False), box("c", False), box("b", None)], "b@contoso.com\n"),
        run_id="r2",
        created_at=NOW,
    )
    assert {p.id for p in first if p.scope == "mailboxes"}.isdisjoint(p.id for p in changed)
    for proposal in first:
        assert proposal.plan_hash == plan_hash(proposal.targets)
        assert (proposal.expires_at - proposal.created_at).days == 7
        assert proposal.run_id == "r1"
        assert not set("/\\#?") & set(proposal.id)
    assert plan(ev, run_id="r1", created_at=NOW, expiry_days=2)[0].expires_at.day == 29


def test_grants_only_for_current_unambiguous_entries_and_never_mixed() -> None:
    ev = evaluation(
        False,
        [
            box("unused", True),
            box("inherits", None),
            box("explicit", False),
            box("gone", True),
            {**box("dup1", True), "Alias": "dup"},
            {**box("dup2", True), "Alias": "dup"},
        ],
        "Identity,Expires\nunused@contoso.com,\ninherits@contoso.com,\nexplicit@contoso.com,\n"
        "gone@contoso.com,2026-01-01\ndup,\n",
        csv=True,
    )
    assert any(f.control == "SMTPAUTH-ALLOWLIST-AMBIGUOUS" for f in ev.findings)
    grants = plan_grants(ev, run_id="r1", created_at=NOW)
    [grant] = grants
    assert grant.kind is Kind.GRANT
    assert {(t.display, t.before, t.after) for t in grant.targets} == {
        ("unused@contoso.com", True, False),
        ("inherits@contoso.com", None, False),
    }
    everything = plan(ev, run_id="r1", created_at=NOW, include_grants=True)
    for proposal in everything:
        roles = {t.role for t in proposal.targets}
        if proposal.kind is Kind.GRANT:
            assert roles == {Role.GRANT}
        else:
            assert Role.GRANT not in roles
    assert {p.kind for p in everything} == {Kind.GRANT, Kind.REVOCATION}
