"""The demo's usage evidence and change attribution (issue 15), kept apart from demo.py.

A Graph sign-in stand-in (`devkit.graph_emulator`) is seeded with SMTP AUTH sign-ins: most
allowlisted mailboxes use their exception, one does not (a stale exception), one mailbox nobody
approved signs in from an old scanner (unapproved use) and some inheriting mailboxes use SMTP
AUTH without knowing it (they break at the organisation switch). The nightly audits read it
incrementally; an admin's Set-CASMailbox during the day is attributed from the emulator's
unified audit log.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from auditor.app.attribution import (
    ChangeCollector,
    attributed_timeline,
    incremental_changes,
)
from auditor.app.queries import mailbox_timeline
from auditor.app.usage import UsageCollector, incremental_usage
from auditor.core.attribution import ChangeLog
from auditor.core.model import Evaluation
from auditor.core.proposals import Record, will_break
from auditor.core.usage import UsageEvidence
from auditor.exchange.auditlog import read_changes
from auditor.exchange.client import ExchangeClient
from auditor.graph.signins import SignInReader
from auditor.identity.tokens import StaticToken
from auditor.reports.findings import readiness_line
from auditor.reports.history import render_history
from auditor.storage.audit_store import AuditStore
from devkit.emulator import Emulator
from devkit.graph_emulator import GraphEmulator
from devkit.tenantgen import Tenant

__all__ = ["GRAPH_TOKEN", "seed_signins", "collectors", "admin_change", "print_usage"]

GRAPH_TOKEN = "demo-signin-token"  # noqa: S105 - accepted by the local stand-in only


def _signin(graph: GraphEmulator, tenant: Tenant, guid: str, at: datetime, **kw: Any) -> None:
    box = tenant.mailboxes[guid]
    graph.add_signin(
        upn=str(box["UserPrincipalName"]),
        user_id=str(box["ExternalDirectoryObjectId"]),
        at=at,
        **kw,
    )


def seed_signins(
    graph: GraphEmulator, tenant: Tenant, roles: dict[str, list[str]], now: datetime
) -> list[str]:
    """SMTP AUTH sign-ins of the last weeks; returns a line per story."""
    notes = []
    exempt = roles.get("exempt", [])
    # exempt[1] has expired (write_allowlist); the first exception is never used: stale.
    for index, guid in enumerate([*exempt[2:], *roles.get("inherited", [])]):
        for day in range(1, 20, 3):
            _signin(graph, tenant, guid, now - timedelta(days=day, hours=index), app="MFP-4000")
    if exempt:
        stale = tenant.cas[exempt[0]]["PrimarySmtpAddress"]
        _signin(graph, tenant, exempt[0], now - timedelta(days=2), error_code=50126)
        notes.append(f"stale exception: {stale} (only a failed sign-in in 30 days)")
    listed = {g for guids in roles.values() for g in guids}
    inheriting = [
        g
        for g in sorted(tenant.cas)
        if tenant.cas[g]["SmtpClientAuthenticationDisabled"] is None
        and g not in listed
        and tenant.mailboxes[g]["RecipientTypeDetails"] == "UserMailbox"
    ]
    for guid in inheriting[:1]:
        _signin(
            graph, tenant, guid, now - timedelta(hours=7), ip="198.51.100.23", app="Old Scanner"
        )
        address = tenant.cas[guid]["PrimarySmtpAddress"]
        notes.append(f"unapproved use: {address} from 198.51.100.23 (Old Scanner)")
    for guid in inheriting[1:3]:
        _signin(graph, tenant, guid, now - timedelta(days=4), ip="203.0.113.40", app="CRM")
    notes.append(
        f"{len(inheriting[1:3])} more inheriting mailboxes use SMTP AUTH without an exception"
    )
    return notes


def collectors(
    graph: GraphEmulator, emulator: Emulator, tenant: Tenant, token: str, http: httpx.Client
) -> tuple[UsageCollector, ChangeCollector, ExchangeClient]:
    reader = SignInReader(
        base_url=graph.url,
        tokens=StaticToken(GRAPH_TOKEN),
        http=http,
        sleep=lambda _: None,
        min_interval=0,
    )
    exchange = ExchangeClient(
        base_url=emulator.base_url, tenant=tenant.domain, tokens=StaticToken(token), http=http
    )

    def read(since: datetime, now: datetime, days: int) -> UsageEvidence:
        return reader.read(since, now=now, lookback_days=days)

    def usage(now: datetime, previous: UsageEvidence | None) -> UsageEvidence:
        return incremental_usage(read, now, previous, 30)

    def changes(now: datetime, previous: ChangeLog | None) -> ChangeLog:
        return incremental_changes(
            lambda start, end: read_changes(exchange, start=start, end=end), now, previous
        )

    return usage, changes, exchange


def admin_change(
    emulator: Emulator, exchange: ExchangeClient, tenant: Tenant, protected: set[str]
) -> str:
    """An admin enables SMTP AUTH for one (not allowlisted) mailbox by hand; its address."""
    guid = next(
        g
        for g in sorted(tenant.cas)
        if tenant.cas[g]["SmtpClientAuthenticationDisabled"] is True
        and tenant.mailboxes[g]["RecipientTypeDetails"] == "UserMailbox"
        and g not in protected
    )
    emulator.auditlog.actor, emulator.auditlog.client_ip = "alice@contoso.com", "198.51.100.8"
    exchange.set_cas_mailbox(guid, False)
    return str(tenant.cas[guid]["PrimarySmtpAddress"])


def print_usage(
    evaluation: Evaluation, records: list[Record], store: AuditStore, changed: str
) -> str:
    """Stale, unapproved, break impact and the attributed change; returns the history text."""
    print(f"\n{readiness_line(evaluation)}")
    for control in ("SMTPAUTH-EXCEPTION-STALE", "SMTPAUTH-USAGE-UNAPPROVED"):
        for f in (f for f in evaluation.findings if f.control == control):
            print(f"  {f.status.value.upper():8} {control} {f.subject}: {f.reason}")
    for record in records:
        breaking = will_break(t.target for t in record.targets)
        if breaking:
            print(f"  {record.id}: will break ({len(breaking)}):")
            for target in breaking[:5]:
                print(f"    {target.display}: {target.reason.split('; ')[0]}")
    timeline = attributed_timeline(store, mailbox_timeline(store, changed))
    text = render_history(timeline, "text")
    print(f"\n{text}")
    return text
