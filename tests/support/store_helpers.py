"""Helpers for the history-store tests: snapshot documents and one recorded run, no mocks."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import TableServiceClient

from auditor.core.allowlist import parse_allowlist
from auditor.core.model import Allowlist
from auditor.core.policy import evaluate
from auditor.core.records import RecordResult
from auditor.core.snapshot import parse_snapshot
from auditor.storage.audit_store import AuditStore

_PREFIXES = itertools.count(1)
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def new_store(connection: str, **options: Any) -> AuditStore:
    """A store with its own tables in the shared Azurite."""
    service = TableServiceClient.from_connection_string(connection)
    return AuditStore(service, prefix=f"t{next(_PREFIXES)}x{id(service) % 10**6}", **options)


def guid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def doc(
    settings: dict[int, Any],
    *,
    org: bool | None = False,
    cas_collected: bool = True,
    errors: list[dict[str, str]] | None = None,
    when: datetime = T0,
) -> dict[str, Any]:
    """A snapshot document: mailbox number -> SmtpClientAuthenticationDisabled."""
    cas = [
        {
            "Guid": guid(n),
            "PrimarySmtpAddress": f"user{n}@contoso.com",
            "Identity": f"user{n}",
            "SmtpClientAuthenticationDisabled": value,
        }
        for n, value in sorted(settings.items())
    ]
    mailboxes = [
        {
            "Guid": guid(n),
            "UserPrincipalName": f"user{n}@contoso.onmicrosoft.com",
            "Alias": f"user{n}",
            "RecipientTypeDetails": "UserMailbox",
            "EmailAddresses": [f"SMTP:user{n}@contoso.com"],
        }
        for n in sorted(settings)
    ]
    return {
        "schema": "smtp-auth-snapshot/1",
        "tenant": "contoso.onmicrosoft.com",
        "collected_at": when.isoformat(),
        "transport_config": None if org is None else {"SmtpClientAuthenticationDisabled": org},
        "cas_mailboxes": cas if cas_collected else None,
        "mailboxes": mailboxes if cas_collected else None,
        "errors": errors or [],
    }


def record(
    store: AuditStore,
    document: dict[str, Any],
    *,
    now: datetime,
    allowlist: str = "",
) -> RecordResult:
    """One full run through the store: lock, evaluate, record, release."""
    raw = json.dumps(document).encode()
    snapshot = parse_snapshot(raw)
    allow = parse_allowlist(allowlist.encode()) if allowlist else Allowlist()
    evaluation = evaluate(snapshot, allow, now.date(), evaluated_at=now)
    handle = store.begin_run(tenant=snapshot.tenant, now=now)
    try:
        return store.record_run(
            handle,
            snapshot=snapshot,
            evaluation=evaluation,
            evidence=raw,
            allowlist=allowlist.encode(),
            allowlist_source="<test>",
            today=now.date(),
            expiring_days=14,
            durations={"collect": 0.0},
            finished_at=now + timedelta(seconds=1),
        )
    finally:
        store.release(handle)
