"""A stored proposal (`Record`) built from targets, for page and output tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from auditor.core.proposals import Kind, Record, Result, State, Target, TargetRecord, plan_hash

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def proposed(
    targets: Sequence[Target],
    *,
    proposal_id: str = "rev-mai-1",
    scope: str = "mailboxes",
    title: str = "Disable SMTP AUTH on some mailboxes",
) -> Record:
    """A revocation waiting for approval, every target selected and pending."""
    return Record(
        id=proposal_id,
        kind=Kind.REVOCATION,
        scope=scope,
        tenant="contoso.onmicrosoft.com",
        run_id="run-1",
        created_at=NOW,
        expires_at=NOW.replace(day=9),
        title=title,
        plan_hash=plan_hash(list(targets)),
        state=State.PROPOSED,
        etag="*",
        targets=tuple(
            TargetRecord(row=f"{i:06d}", target=t, selected=True, result=Result.PENDING)
            for i, t in enumerate(targets)
        ),
    )
