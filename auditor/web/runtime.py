"""The process-wide remediation service, built from settings on first use (never at import).

`service()` is called by the Functions blueprints on the first request and cached for the
process, so the JWKS cache and the HTTP connection pool survive between requests.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import httpx
from azure.data.tables import TableServiceClient

from auditor.app import wiring
from auditor.app.settings import Settings
from auditor.core.errors import ConfigError
from auditor.web.api import RemediationHttp

__all__ = ["build_service", "service", "install", "reset"]

_lock = threading.Lock()
_cached: RemediationHttp | None = None


def build_service(
    settings: Settings,
    *,
    http: httpx.Client | None = None,
    tables: TableServiceClient | None = None,
) -> RemediationHttp:
    """The service for these settings; `http` and `tables` may be injected (tests, dev server)."""
    if settings.approval_signing_key is None:
        raise ConfigError(
            "APPROVAL_SIGNING_KEY", "is required for remediation (it signs approval records)"
        )
    client = http or httpx.Client(timeout=httpx.Timeout(120.0, connect=15.0))
    return RemediationHttp(
        store=wiring.proposal_store(settings, tables=tables),
        auth=wiring.approver_auth(settings, client),
        form_secret=settings.form_secret,
        exchange=lambda: wiring.exchange_client(settings, client),
        load_allowlist=lambda: wiring.allowlist_now(settings),
        now=lambda: datetime.now(UTC),
        public_url=settings.remediation_public_url,
        inline_limit=settings.remediation_inline_limit,
        verify_seconds=settings.remediation_verify_seconds,
        announce=wiring.announcer(settings, client),
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
