"""Small builders of snapshot documents and allowlists for tests, through the real parsers."""

from __future__ import annotations

import json
from typing import Any

from auditor.allowlist import parse_allowlist
from auditor.model import Allowlist, Snapshot
from auditor.snapshot import parse_snapshot

MISSING: Any = object()


def cas(n: int, setting: Any = None, **extra: Any) -> dict[str, Any]:
    """A Get-CASMailbox record for mailbox number n; setting=MISSING omits the property."""
    record: dict[str, Any] = {
        "Guid": f"00000000-0000-4000-8000-{n:012d}",
        "ExternalDirectoryObjectId": f"11111111-0000-4000-8000-{n:012d}",
        "Identity": f"user{n}",
        "Name": f"user{n}",
        "PrimarySmtpAddress": f"user{n}@contoso.com",
    }
    if setting is not MISSING:
        record["SmtpClientAuthenticationDisabled"] = setting
    record.update(extra)
    return record


def mbx(n: int, kind: str = "UserMailbox", **extra: Any) -> dict[str, Any]:
    """A Get-Mailbox record for mailbox number n."""
    record: dict[str, Any] = {
        "Guid": f"00000000-0000-4000-8000-{n:012d}",
        "ExternalDirectoryObjectId": f"11111111-0000-4000-8000-{n:012d}",
        "UserPrincipalName": f"u{n}@contoso.onmicrosoft.com",
        "RecipientTypeDetails": kind,
        "Alias": f"user{n}",
        "EmailAddresses": [
            f"SMTP:user{n}@contoso.com",
            f"smtp:alias{n}@contoso.net",
            f"X500:/o=x/cn=u{n}",
        ],
    }
    record.update(extra)
    return record


def document(
    org: Any = True,
    cas_records: list[dict[str, Any]] | None = None,
    mailboxes: list[dict[str, Any]] | None = None,
    errors: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A snapshot document; org=MISSING gives a transport config without the property,
    org=None in the sense of 'not collected' is expressed with org=NOT_COLLECTED."""
    if org is NOT_COLLECTED:
        transport: Any = None
    elif org is MISSING:
        transport = {"Identity": "Transport Settings"}
    else:
        transport = {"SmtpClientAuthenticationDisabled": org}
    return {
        "schema": "smtp-auth-snapshot/1",
        "tenant": "contoso.onmicrosoft.com",
        "collected_at": "2026-11-26T02:00:00Z",
        "transport_config": transport,
        "cas_mailboxes": cas_records,
        "mailboxes": mailboxes,
        "errors": errors or [],
    }


NOT_COLLECTED: Any = object()


def snapshot(**kwargs: Any) -> Snapshot:
    return parse_snapshot(json.dumps(document(**kwargs)).encode(), source="test.json")


def allowlist(text: str, *, csv_format: bool = False) -> Allowlist:
    return parse_allowlist(
        text.encode(), source="allow.csv" if csv_format else "allow.txt", csv_format=csv_format
    )
