"""Builders of sign-in evidence for the usage tests (Graph `signIn` records, parsed for real)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from auditor.core.usage import SignIn, UsageEvidence, UsageState, parse_signin
from devkit.graph_emulator import signin_record

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def oid(n: int) -> str:
    """The ExternalDirectoryObjectId of builders.cas(n)/mbx(n)."""
    return f"11111111-0000-4000-8000-{n:012d}"


def upn(n: int) -> str:
    """The UserPrincipalName of builders.mbx(n)."""
    return f"u{n}@contoso.onmicrosoft.com"


def signin(n: int | None = None, at: datetime = NOW, **kwargs: Any) -> SignIn:
    """A sign-in of mailbox n (by object id and UPN unless overridden)."""
    fields: dict[str, Any] = {"upn": upn(n or 0), "user_id": oid(n or 0), "at": at}
    fields.update(kwargs)
    parsed = parse_signin(signin_record(**fields))
    assert parsed is not None
    return parsed


def collected(*signins: SignIn, lookback_days: int = 30, now: datetime = NOW) -> UsageEvidence:
    return UsageEvidence(
        UsageState.COLLECTED,
        collected_at=now,
        since=now,
        lookback_days=lookback_days,
        signins=tuple(signins),
    )
