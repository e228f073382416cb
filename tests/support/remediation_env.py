"""A small emulated tenant + Exchange client + proposal store, for execution tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from auditor.core.allowlist import parse_allowlist
from auditor.core.model import Allowlist
from auditor.core.policy import evaluate
from auditor.core.proposals import Proposal
from auditor.core.snapshot import build_snapshot
from auditor.core.usage import UsageEvidence
from auditor.exchange.client import ExchangeClient
from auditor.identity.tokens import StaticToken
from auditor.remediation.plan import plan
from auditor.storage.proposal_store import ProposalStore
from devkit.emulator import Emulator
from devkit.tenantgen import Tenant
from tests.support.remediation_fixtures import NOW, new_store

TOKEN = "remediation-test-token"
DOMAIN = "contoso.onmicrosoft.com"


def guid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def tenant(org_disabled: bool, boxes: dict[str, bool | None]) -> Tenant:
    cas: dict[str, dict[str, Any]] = {}
    mailboxes: dict[str, dict[str, Any]] = {}
    for n, (name, setting) in enumerate(boxes.items(), start=1):
        g = guid(n)
        address = f"{name}@contoso.com"
        cas[g] = {
            "Guid": g,
            "ExternalDirectoryObjectId": guid(1000 + n),
            "Identity": name,
            "Name": name,
            "PrimarySmtpAddress": address,
            "SmtpClientAuthenticationDisabled": setting,
        }
        mailboxes[g] = {
            "Guid": g,
            "ExternalDirectoryObjectId": guid(1000 + n),
            "UserPrincipalName": address,
            "Alias": name,
            "Name": name,
            "Identity": name,
            "PrimarySmtpAddress": address,
            "RecipientTypeDetails": "UserMailbox",
            "EmailAddresses": [f"SMTP:{address}"],
        }
    return Tenant(domain=DOMAIN, org_disabled=org_disabled, cas=cas, mailboxes=mailboxes)


@dataclass
class Env:
    emulator: Emulator
    exchange: ExchangeClient
    store: ProposalStore
    allow_text: str
    clock: list[datetime]

    def allowlist(self) -> Allowlist:
        return parse_allowlist(self.allow_text.encode(), source="allowlist.txt")

    def now(self) -> datetime:
        return self.clock[0]

    def setting(self, name: str) -> Any:
        for record in self.emulator.state.cas.values():
            if record["Name"] == name:
                return record["SmtpClientAuthenticationDisabled"]
        raise KeyError(name)

    def proposals(
        self, *, grants: bool = False, usage: UsageEvidence | None = None
    ) -> dict[str, Proposal]:
        """Audit the emulated tenant now (with `usage`, the sign-in evidence, if given) and
        plan; proposals keyed by scope, and stored."""
        state = self.emulator.state
        snapshot = build_snapshot(
            {
                "schema": "smtp-auth-snapshot/1",
                "tenant": DOMAIN,
                "collected_at": "2026-11-27T02:00:00Z",
                "transport_config": {"SmtpClientAuthenticationDisabled": state.org_disabled},
                "cas_mailboxes": copy.deepcopy(list(state.cas.values())),
                "mailboxes": copy.deepcopy(list(state.mailboxes.values())),
                "errors": [],
            }
        )
        ev = evaluate(snapshot, self.allowlist(), NOW.date(), evaluated_at=NOW, usage=usage)
        out = {p.scope: p for p in plan(ev, run_id="run-1", created_at=NOW, include_grants=grants)}
        for proposal in out.values():
            self.store.save(proposal, now=NOW)
        return out


@contextmanager
def remediation_env(
    azurite: str,
    org_disabled: bool,
    boxes: dict[str, bool | None],
    allow: str,
    *,
    replication_delay: float = 0.0,
) -> Iterator[Env]:
    with (
        Emulator(
            tenant(org_disabled, boxes), token=TOKEN, replication_delay=replication_delay
        ) as emulator,
        httpx.Client() as http,
    ):
        exchange = ExchangeClient(
            base_url=emulator.base_url,
            tenant=DOMAIN,
            tokens=StaticToken(TOKEN),
            http=http,
            sleep=lambda _s: None,
        )
        yield Env(emulator, exchange, new_store(azurite), allow, [NOW])
