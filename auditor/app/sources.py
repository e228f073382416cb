"""Where a command's evidence comes from: a snapshot file, the tenant now, or the latest audit.

Commands that look at mailboxes (`mailboxes`, `check`, `apply-allowlist`) share these so that
`--snapshot FILE`, `--live` and the default (the evidence of the latest recorded run) behave
the same everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx

from auditor.app import wiring
from auditor.app.preflight import check_exchange
from auditor.app.settings import Settings
from auditor.core.errors import ConfigError, InputError
from auditor.core.model import Snapshot
from auditor.core.snapshot import build_snapshot, parse_snapshot, read_snapshot
from auditor.exchange.collect import collect_snapshot

__all__ = ["live_snapshot", "latest_snapshot", "load_snapshot"]


def live_snapshot(settings: Settings) -> Snapshot:
    """Read the tenant now. Failed parts stay unknown (with their errors), as in an audit; a
    malformed EXO_TENANT or an unreachable EXO_BASE_URL is a ConfigError first."""
    check_exchange(settings)
    with httpx.Client(timeout=httpx.Timeout(300.0, connect=15.0)) as http:
        client = wiring.exchange_client(settings, http)
        document = collect_snapshot(
            client, tenant=client.tenant, now=datetime.now(UTC), parallel=True
        )
    return build_snapshot(document, source=f"live:{settings.exo_tenant}")


def latest_snapshot(settings: Settings) -> tuple[Snapshot, str]:
    """The evidence of the latest recorded audit, and its run id."""
    if not settings.storage:
        raise ConfigError(
            "AUDITOR_STORAGE", "is required to read the latest audit (or pass --snapshot / --live)"
        )
    store = wiring.store_from_settings(settings)
    run = store.run("latest")
    raw = store.read_blob(run.run_id, "snapshot")
    if raw is None:
        raise InputError("RUN", f"run {run.run_id} has no stored evidence")
    return parse_snapshot(raw, source=f"run {run.run_id}"), run.run_id


def load_snapshot(settings: Settings, *, path: Path | None, live: bool) -> Snapshot:
    if path is not None and live:
        raise InputError("--snapshot", "use either --snapshot FILE or --live, not both")
    if path is not None:
        return read_snapshot(path)
    if live:
        return live_snapshot(settings)
    return latest_snapshot(settings)[0]
