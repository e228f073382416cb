"""Break impact: revocations list first and apart the targets that used SMTP AUTH lately."""

from __future__ import annotations

from datetime import timedelta

from auditor.core.model import Allowlist
from auditor.core.policy import evaluate
from auditor.core.proposals import Role, plan_hash
from auditor.remediation.plan import plan
from tests.support.builders import allowlist, cas, mbx, snapshot
from tests.support.usage import NOW, collected, signin


def test_revocations_say_what_will_break() -> None:
    evaluation = evaluate(
        snapshot(
            org=False,
            cas_records=[cas(1, False), cas(2, False), cas(3), cas(4), cas(5)],
            mailboxes=[mbx(1), mbx(2), mbx(3), mbx(4), mbx(5)],
        ),
        allowlist("user5@contoso.com\n"),
        NOW.date(),
        evaluated_at=NOW,
        usage=collected(
            signin(1, at=NOW - timedelta(days=2), ip="198.51.100.1", app="ERP"),
            signin(3, at=NOW - timedelta(hours=3), ip="198.51.100.3"),
            signin(4, at=NOW - timedelta(hours=3), error_code=50126),  # a failure breaks nothing
            signin(5, at=NOW - timedelta(hours=1)),  # allowlisted: pinned, keeps working
        ),
    )
    proposals = {p.scope: p for p in plan(evaluation, run_id="r1", created_at=NOW)}
    mailboxes = proposals["mailboxes"]
    assert [t.display for t in mailboxes.will_break] == ["user1@contoso.com"]
    (first,) = mailboxes.will_break
    assert first.reason.startswith(
        "will break: last used 2026-11-25 03:00 UTC, from 198.51.100.1 (ERP); "
    )
    assert first.reason.endswith("explicitly enabled and not allowlisted: set to true (blocked)")
    assert mailboxes.plan_hash == plan_hash(mailboxes.targets)  # the hash covers the note
    organisation = proposals["organisation"]
    assert [t.display for t in organisation.will_break] == ["user3@contoso.com"]
    assert all(t.role is Role.REVOKE for t in organisation.will_break)
    pinned = [t for t in organisation.targets if t.role is Role.PIN]
    assert [t.display for t in pinned] == ["user5@contoso.com"]
    assert not pinned[0].reason.startswith("will break")


def test_without_usage_nothing_is_annotated_and_hashes_do_not_move() -> None:
    snap = snapshot(org=True, cas_records=[cas(1, False)], mailboxes=[mbx(1)])
    plain = evaluate(snap, Allowlist(), NOW.date(), evaluated_at=NOW)
    (before,) = plan(plain, run_id="r1", created_at=NOW)
    assert before.will_break == ()
    used = evaluate(snap, Allowlist(), NOW.date(), evaluated_at=NOW, usage=collected())
    (after,) = plan(used, run_id="r1", created_at=NOW)
    assert after.plan_hash == before.plan_hash
