"""Build the remediation service from settings, lazily (never at import time).

`service()` is called by `function_app.py` on the first request and cached for the process, so
the JWKS cache and the HTTP connection pool survive between requests. Missing settings are a
`ConfigError` naming the variable (the HTTP layer answers 500 "misconfigured").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from azure.data.tables import TableServiceClient

from auditor.app.settings import Settings
from auditor.core.allowlist import read_allowlist
from auditor.core.errors import ConfigError
from auditor.core.model import Allowlist, Evaluation
from auditor.identity.approver import ApproverAuth, JwksCache
from auditor.remediation.execute import Exchange
from auditor.remediation.notice import announcer
from auditor.remediation.plan import plan
from auditor.storage.proposal_store import ProposalStore
from auditor.web.api import RemediationHttp

__all__ = [
    "build_service",
    "service",
    "reset",
    "install",
    "proposer_from_settings",
    "table_service",
    "TABLE_PREFIX",
    "load_allowlist",
]

TABLE_PREFIX = "smtpauth"
_lock = threading.Lock()
_cached: RemediationHttp | None = None


def table_service(value: str | None, *, credential: Any = None) -> TableServiceClient:
    """`AUDITOR_STORAGE` as a client: a connection string, or a table endpoint URL (identity)."""
    if not value or not value.strip():
        raise ConfigError("AUDITOR_STORAGE", "is required for remediation proposals")
    text = value.strip()
    if text.lower().startswith(("http://", "https://")):
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        return TableServiceClient(endpoint=text.rstrip("/"), credential=credential)
    try:
        return TableServiceClient.from_connection_string(text)
    except ValueError as exc:
        raise ConfigError("AUDITOR_STORAGE", f"not a valid connection string: {exc}") from exc


def load_allowlist(settings: Settings) -> Allowlist:
    """The allowlist as it is now (re-read for every execution); empty when none is set."""
    if settings.allowlist is None:
        return Allowlist(source="(no AUDITOR_ALLOWLIST)")
    return read_allowlist(settings.allowlist)


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


def exchange_client(settings: Settings, http: httpx.Client) -> Exchange:
    from auditor.exchange.client import client_from_settings

    return client_from_settings(settings, http)


def build_service(
    settings: Settings,
    *,
    http: httpx.Client | None = None,
    tables: TableServiceClient | None = None,
    prefix: str | None = None,
) -> RemediationHttp:
    """The service for these settings; `http` and `tables` may be injected (tests, dev server)."""
    client = http or httpx.Client(timeout=httpx.Timeout(120.0, connect=15.0))
    store = ProposalStore(
        tables or table_service(settings.storage), prefix=prefix or settings.table_prefix
    )
    store.create_tables()
    return RemediationHttp(
        store=store,
        auth=approver_auth(settings, client),
        form_secret=settings.form_secret,
        exchange=lambda: exchange_client(settings, client),
        load_allowlist=lambda: load_allowlist(settings),
        now=lambda: datetime.now(UTC),
        public_url=settings.remediation_public_url,
        inline_limit=settings.remediation_inline_limit,
        announce=announcer(settings, client),
    )


def service() -> RemediationHttp:
    """The process-wide service built from the environment on first use."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = build_service(Settings.from_env())
        return _cached


def install(prebuilt: RemediationHttp) -> None:
    """Use `prebuilt` instead of building from the environment (dev server, tests)."""
    global _cached
    with _lock:
        _cached = prebuilt


def reset() -> None:
    """Forget the cached service (settings changed; tests)."""
    global _cached
    with _lock:
        _cached = None


def proposer_from_settings(
    settings: Settings, *, tables: TableServiceClient | None = None
) -> Callable[[Evaluation, str, datetime], list[str]] | None:
    """Plan and store a run's remediation proposals (the nightly audit's last step).

    None when `AUDITOR_STORAGE` is unset. Grants are planned too (issue 8): they are separate
    proposals, so an approver never enables and disables in one click.
    """
    if not settings.storage and tables is None:
        return None

    def propose(evaluation: Evaluation, run_id: str, now: datetime) -> list[str]:
        store = ProposalStore(
            tables or table_service(settings.storage), prefix=settings.table_prefix
        )
        store.create_tables()
        ids: list[str] = []
        for proposal in plan(
            evaluation,
            run_id=run_id,
            created_at=now,
            force_true=settings.remediation_force_true,
            expiry_days=settings.remediation_expiry_days,
            include_grants=True,
        ):
            store.save(proposal, now=now)
            ids.append(proposal.id)
        return ids

    return propose
