"""The one place that turns `Settings` into objects: clients, stores, credentials, channels.

Adapters below take explicit parameters; everything here reads the settings and builds them,
lazily (never at import time: the Functions host gives an app 30 s to start). Missing settings
are a `ConfigError` naming the variable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from azure.data.tables import TableServiceClient

from auditor.alerts.deliver import GRAPH_SCOPE, Channels
from auditor.app.attribution import ChangeCollector, incremental_changes
from auditor.app.settings import Settings
from auditor.app.usage import incremental_usage
from auditor.core.allowlist import load_allowlist
from auditor.core.attribution import ChangeLog
from auditor.core.errors import ConfigError
from auditor.core.evidence import StreamedEvidence
from auditor.core.model import Allowlist, Evaluation
from auditor.core.ports import TokenProvider
from auditor.core.proposals import PlannedProposals
from auditor.core.usage import UsageEvidence
from auditor.exchange.auditlog import read_changes
from auditor.exchange.client import ExchangeClient, exchange_scope
from auditor.exchange.collect import collect_streamed
from auditor.exchange.transport import CONNECT_TIMEOUT, HTTP_TIMEOUT
from auditor.graph.signins import SignInReader
from auditor.identity.approver import ApproverAuth, JwksCache
from auditor.identity.azure import azure_credential
from auditor.identity.tokens import Credentials, StaticToken, token_provider
from auditor.remediation import notice
from auditor.remediation.plan import plan
from auditor.storage.audit_store import AuditStore
from auditor.storage.connect import connect
from auditor.storage.proposal_store import ProposalStore
from auditor.storage.tables import OpCounter

__all__ = [
    "credentials",
    "exchange_client",
    "exchange_collector",
    "graph_token_provider",
    "graph_tokens",
    "usage_collector",
    "change_collector",
    "alert_channels",
    "table_service",
    "store_from_settings",
    "proposal_store",
    "approver_auth",
    "announcer",
    "proposer_from_settings",
    "allowlist_now",
]


def credentials(settings: Settings, *, exchange_token: bool = True) -> Credentials:
    """The identity settings. `exchange_token=False` sets `EXO_ACCESS_TOKEN` aside: it is an
    Exchange token and useless for Graph, so Graph asks the identity for its own scope."""
    return Credentials(
        access_token=settings.exo_access_token if exchange_token else None,
        tenant=settings.exo_tenant,
        client_id=settings.exo_client_id,
        certificate_path=settings.exo_certificate_path,
        certificate_password=settings.exo_certificate_password,
        client_secret=settings.exo_client_secret,
        authority_host=settings.exo_authority_host,
        managed_identity_client_id=settings.azure_client_id,
    )


def exchange_client(settings: Settings, http: httpx.Client) -> ExchangeClient:
    """The adapter for the tenant in the settings (EXO_TENANT, EXO_BASE_URL, credentials,
    EXO_SHARDS, EXO_MAX_PARALLEL)."""
    if not settings.exo_tenant:
        raise ConfigError("EXO_TENANT", "is required to reach Exchange Online")
    tokens = token_provider(credentials(settings), exchange_scope(settings.exo_base_url), http=http)
    return ExchangeClient(
        base_url=settings.exo_base_url,
        tenant=settings.exo_tenant,
        tokens=tokens,
        http=http,
        shards=settings.exo_shards,  # docs/exchange-protocol.md, "Sharded reads"
        max_parallel=settings.exo_max_parallel,
    )


@contextmanager
def exchange_collector(
    settings: Settings, *, spread: Callable[[], Mapping[str, int]] | None = None
) -> Iterator[Callable[[datetime], StreamedEvidence]]:
    """A `collect(now)` bound to the tenant in the settings; its HTTP client closes on exit.
    It judges while paging (`collect_streamed`, docs/architecture.md "A nightly run").
    `spread()` is asked before each sharded read for the names per first character that
    balance its shards (`AuditStore.last_name_spread`; docs/exchange-protocol.md)."""
    if not settings.exo_tenant:
        raise ConfigError("EXO_TENANT", "is required to audit a tenant")
    tenant = settings.exo_tenant
    with httpx.Client(timeout=httpx.Timeout(HTTP_TIMEOUT, connect=CONNECT_TIMEOUT)) as http:
        client = exchange_client(settings, http)

        def collect(now: datetime) -> StreamedEvidence:
            if spread is not None and client.shards > 1:
                client.spread = spread()
            return collect_streamed(client, tenant=tenant, now=now, parallel=True)

        yield collect


def graph_token_provider(settings: Settings) -> Callable[[], str]:
    """An app-only Graph token from the same identity as Exchange (never `EXO_ACCESS_TOKEN`)."""
    provider = token_provider(credentials(settings, exchange_token=False), GRAPH_SCOPE)
    return lambda: provider.get_token()


def graph_tokens(settings: Settings, http: httpx.Client | None = None) -> TokenProvider:
    """App-only Graph tokens: `GRAPH_ACCESS_TOKEN` (local stand-ins, break-glass) if set, else
    the identity's own for `https://graph.microsoft.com/.default`."""
    if settings.graph_access_token:
        return StaticToken(settings.graph_access_token)
    return token_provider(credentials(settings, exchange_token=False), GRAPH_SCOPE, http=http)


@contextmanager
def usage_collector(
    settings: Settings,
) -> Iterator[Callable[[datetime, UsageEvidence | None], UsageEvidence] | None]:
    """The nightly sign-in read (USAGE_EVIDENCE), incremental from the last run's evidence;
    None when usage evidence is off. Its HTTP client closes on exit."""
    if not settings.usage_evidence:
        yield None
        return
    with httpx.Client(timeout=httpx.Timeout(60.0, connect=15.0)) as http:
        reader = SignInReader(
            base_url=settings.graph_base_url, tokens=graph_tokens(settings, http), http=http
        )

        def read(since: datetime, now: datetime, lookback_days: int) -> UsageEvidence:
            return reader.read(since, now=now, lookback_days=lookback_days)

        def collect(now: datetime, previous: UsageEvidence | None) -> UsageEvidence:
            return incremental_usage(read, now, previous, settings.usage_lookback_days)

        yield collect


@contextmanager
def change_collector(settings: Settings) -> Iterator[ChangeCollector | None]:
    """The nightly audit-log read of who changed SMTP AUTH (`Search-UnifiedAuditLog`, with
    USAGE_EVIDENCE), incremental from the last run's log; None when off."""
    if not settings.usage_evidence or not settings.exo_tenant:
        yield None
        return
    with httpx.Client(timeout=httpx.Timeout(300.0, connect=15.0)) as http:
        client = exchange_client(settings, http)

        def read(start: datetime, end: datetime) -> ChangeLog:
            return read_changes(client, start=start, end=end)

        def collect(now: datetime, previous: ChangeLog | None) -> ChangeLog:
            return incremental_changes(read, now, previous)

        yield collect


def alert_channels(settings: Settings) -> Channels:
    return Channels(
        teams_webhook_url=settings.teams_webhook_url,
        email_from=settings.email_from,
        email_to=settings.email_to,
        graph_base_url=settings.graph_base_url,
        graph_access_token=settings.graph_access_token,
    )


def table_service(settings: Settings) -> TableServiceClient:
    """`AUDITOR_STORAGE` as a client; a URL is used with the app's managed identity."""
    client_id = settings.azure_client_id
    return connect(settings.storage, credential=lambda: azure_credential(client_id))


def store_from_settings(settings: Settings) -> AuditStore:
    if not settings.storage:
        raise ConfigError("AUDITOR_STORAGE", "is required to record audits (Table Storage)")
    return AuditStore(
        table_service(settings),
        prefix=settings.table_prefix,
        lock_ttl=timedelta(seconds=settings.lease_seconds),
        max_removed_percent=settings.max_removed_percent,
    )


def proposal_store(
    settings: Settings,
    *,
    tables: TableServiceClient | None = None,
    counter: OpCounter | None = None,
) -> ProposalStore:
    if tables is None and not settings.storage:
        raise ConfigError("AUDITOR_STORAGE", "is required for remediation proposals")
    store = ProposalStore(
        tables or table_service(settings),
        prefix=settings.table_prefix,
        signing_key=settings.approval_signing_key,
        counter=counter,
    )
    store.create_tables()
    return store


def allowlist_now(settings: Settings, path: Path | None = None) -> Allowlist:
    """The allowlist as it is now: `path` (a command-line override), else AUDITOR_ALLOWLIST,
    else an empty one. Re-read on every call (an execution re-checks against today's file)."""
    return load_allowlist(path or settings.allowlist).allowlist


def approver_auth(settings: Settings, http: httpx.Client) -> ApproverAuth:
    if not settings.approver_tenant_id:
        raise ConfigError("APPROVER_TENANT_ID", "is required to accept approvals")
    if not settings.approver_audiences:
        raise ConfigError("APPROVER_AUDIENCE", "is required to accept approvals")
    if not settings.approver_role:
        raise ConfigError("APPROVER_ROLE", "must not be empty")
    assert settings.approver_jwks_url is not None  # derived from the tenant when unset
    return ApproverAuth(
        tenant_id=settings.approver_tenant_id,
        audiences=settings.approver_audiences,
        role=settings.approver_role,
        jwks=JwksCache(settings.approver_jwks_url, http),
        easy_auth=settings.easy_auth_enabled,
    )


def announcer(
    settings: Settings, http: httpx.Client, *, graph_token: Callable[[], str] | None = None
) -> notice.Announce | None:
    """Announces a finished remediation on the alert channels; None when none is set."""
    return notice.announcer(
        alert_channels(settings),
        public_url=settings.remediation_public_url,
        http=http,
        graph_token=graph_token or graph_token_provider(settings),
    )


def proposer_from_settings(
    settings: Settings,
    *,
    tables: TableServiceClient | None = None,
    counter: OpCounter | None = None,
) -> Callable[[Evaluation, str, datetime], PlannedProposals] | None:
    """Plan a run's remediation proposals, to be stored after its alert (the nightly audit's
    last step). None when `AUDITOR_STORAGE` is unset. Grants are planned too: they are
    separate proposals, so an approver never enables and disables in one click.
    """
    if not settings.storage and tables is None:
        return None

    def propose(evaluation: Evaluation, run_id: str, now: datetime) -> PlannedProposals:
        proposals = plan(
            evaluation,
            run_id=run_id,
            created_at=now,
            force_true=settings.remediation_force_true,
            expiry_days=settings.remediation_expiry_days,
            include_grants=True,
        )

        def save() -> list[str]:
            # One living proposal per plan: identical → confirmed, changed → superseded.
            store = proposal_store(settings, tables=tables, counter=counter)
            return store.sync(proposals, run_id=run_id, now=now)

        return PlannedProposals(tuple(p.id for p in proposals), save)

    return propose
