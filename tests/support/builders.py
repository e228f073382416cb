"""Small builders of snapshot documents and allowlists for tests, through the real parsers."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from auditor.app.audit import Collector
from auditor.core.allowlist import parse_allowlist
from auditor.core.evidence import StreamedEvidence
from auditor.core.model import Allowlist, Snapshot
from auditor.core.snapshot import parse_snapshot
from auditor.exchange.client import ExchangeClient
from auditor.exchange.collect import collect_streamed
from auditor.identity.tokens import StaticToken
from devkit.emulator import Emulator

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


ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m auditor ARGS` in a subprocess with a clean environment (no settings leak in)."""
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


def emulator_collector(emu: Emulator, http: httpx.Client, token: str) -> Collector:
    """A `collect(now)` that reads the emulated tenant over real HTTP, as the audit does."""
    client = ExchangeClient(
        base_url=emu.base_url,
        tenant=emu.domain,
        tokens=StaticToken(token),
        http=http,
        sleep=lambda _: None,
    )

    def collect(now: datetime) -> StreamedEvidence:  # as wiring.exchange_collector
        return collect_streamed(client, tenant=emu.domain, now=now, parallel=True)

    return collect


# The bearer token every test emulator accepts.
EMULATOR_TOKEN = "emulator-test-token"
