"""Shared builders for the remediation tests: evaluations, proposals and stores on Azurite."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from azure.data.tables import TableServiceClient

from auditor.core.allowlist import parse_allowlist
from auditor.core.model import Evaluation
from auditor.core.policy import evaluate
from auditor.core.proposals import Principal
from auditor.core.snapshot import build_snapshot
from auditor.storage.proposal_store import ProposalStore

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
TODAY = date(2026, 11, 27)
APPROVER = Principal("aaaaaaaa-0000-0000-0000-000000000001", "Ada Approver", "t", ("r",), "bearer")
OTHER = Principal("bbbbbbbb-0000-0000-0000-000000000002", "Bob Approver", "t", ("r",), "bearer")


def box(name: str, setting: Any, *, guid: str | None = None) -> dict[str, Any]:
    number = sum(ord(c) * (i + 1) for i, c in enumerate(name)) % 10**12
    return {
        "Guid": guid or f"00000000-0000-0000-0000-{number:012d}",
        "PrimarySmtpAddress": f"{name}@contoso.com",
        "Name": name,
        "SmtpClientAuthenticationDisabled": setting,
    }


def make_evaluation(
    org: bool | None,
    boxes: list[dict[str, Any]],
    allow: str = "",
    *,
    errors: list[dict[str, str]] | None = None,
    csv: bool = False,
) -> Evaluation:
    """Judge CAS records `boxes` (each with a Get-Mailbox partner carrying its UPN)."""
    snapshot = build_snapshot(
        {
            "schema": "smtp-auth-snapshot/1",
            "tenant": "contoso.onmicrosoft.com",
            "collected_at": "2026-11-27T02:00:00Z",
            "transport_config": None if org is None else {"SmtpClientAuthenticationDisabled": org},
            "cas_mailboxes": boxes,
            "mailboxes": [
                {
                    "Guid": b["Guid"],
                    "UserPrincipalName": b["PrimarySmtpAddress"],
                    "RecipientTypeDetails": "UserMailbox",
                }
                for b in boxes
            ],
            "errors": errors or [],
        }
    )
    allowlist = parse_allowlist(allow.encode(), source="allow", csv_format=csv)
    return evaluate(snapshot, allowlist, TODAY, evaluated_at=NOW)


SIGNING_KEY = b"approval-signing-key-for-tests-0123456789"


def new_store(connection: str, *, signing_key: bytes | None = SIGNING_KEY) -> ProposalStore:
    service = TableServiceClient.from_connection_string(connection)
    store = ProposalStore(service, prefix=f"t{uuid.uuid4().hex[:10]}", signing_key=signing_key)
    store.create_tables()
    return store
