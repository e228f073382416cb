"""Counts by mailbox type on the confirmation page, in the status JSON and in `approve`'s plan;
the type describes a target and is kept out of the plan hash (issue 16)."""

from __future__ import annotations

import msgspec

from auditor.core.proposals import ORG_TARGET, Record, Role, Target, plan_hash, type_counts
from auditor.web.pages import confirmation_page
from tests.support.proposal_records import NOW, proposed


def loses(n: int, kind: str | None) -> Target:
    reason = "inherits (null) and is not allowlisted"
    return Target(
        f"g{n}",
        Role.REVOKE,
        f"m{n}@contoso.com",
        None,
        None,
        3,
        reason,
        guid=f"g{n}",
        mailbox_type=kind,
    )


ORG = Target(ORG_TARGET, Role.ORG, "organisation (Set-TransportConfig)", False, True, 2, "org")
TARGETS = (
    loses(1, "UserMailbox"),
    loses(2, "SharedMailbox"),
    loses(3, "UserMailbox"),
    loses(4, None),  # planned before the type was kept
    ORG,
)


def record() -> Record:
    return proposed(
        TARGETS,
        proposal_id="rev-org-1",
        scope="organisation",
        title="Disable SMTP AUTH for the organisation",
    )


def test_type_counts_are_mailboxes_only_most_first() -> None:
    assert type_counts(TARGETS) == [("UserMailbox", 2), ("SharedMailbox", 1), ("unknown type", 1)]


def test_the_type_is_stored_but_not_hashed() -> None:
    typed = loses(1, "RoomMailbox")
    assert Target.from_dict(typed.to_dict()) == typed
    assert typed.to_dict()["type"] == "RoomMailbox"
    old_row = typed.to_dict()
    del old_row["type"]  # a row stored before the type was kept
    assert Target.from_dict(old_row).mailbox_type is None
    assert plan_hash([typed]) == plan_hash([msgspec.structs.replace(typed, mailbox_type=None)])
    assert plan_hash([typed]) != plan_hash([msgspec.structs.replace(typed, reason="other")])


def test_the_confirmation_page_and_the_status_json_count_by_type() -> None:
    page = confirmation_page(
        record(),
        approve_url="/a",
        reject_url="/r",
        status_url="/s",
        form_token="t",
        approver="Ada",
        now=NOW,
    )
    line = page.split('id="by-type"')[1].split("</p>")[0]
    assert "2 UserMailbox, 1 SharedMailbox, 1 unknown type" in line
    assert page.index('id="by-type"') < page.index('id="approve"')
    assert record().to_json()["by_type"] == {
        "UserMailbox": 2,
        "SharedMailbox": 1,
        "unknown type": 1,
    }
