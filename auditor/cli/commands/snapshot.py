"""`snapshot`: collect a `smtp-auth-snapshot/1` file from the tenant in the settings.

Exit 0 when every source was read, 3 when some could not be (the file is still written, with
`errors`, and `evaluate` reports that evidence as unknown), 2 for configuration errors.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from auditor.app.preflight import check_exchange
from auditor.app.settings import Settings
from auditor.app.wiring import exchange_client
from auditor.cli.options import EXIT_OK, EXIT_UNKNOWN, write_output
from auditor.cli.progress import progress, wanted
from auditor.core.errors import ConfigError
from auditor.exchange.collect import collect_snapshot


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "snapshot",
        help="collect a snapshot file from Exchange Online (EXO_TENANT, EXO_BASE_URL, credentials)",
        description=(
            "Read Get-TransportConfig, Get-CASMailbox and Get-Mailbox from the tenant in the "
            "settings and write a smtp-auth-snapshot/1 file. Exit 0 complete, 3 partial (the "
            "file is still written, with errors), 2 configuration error."
        ),
    )
    parser.add_argument("--out", type=Path, help="write to this file (default: standard output)")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress on standard error (a terminal only)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: dict[str, str] | None = None) -> int:
    settings = Settings.from_env(env)
    if not settings.exo_tenant:
        raise ConfigError("EXO_TENANT", "is required to collect a snapshot")
    check_exchange(settings)
    with httpx.Client(timeout=httpx.Timeout(300.0, connect=15.0)) as http:
        client = exchange_client(settings, http)
        label = f"reading {settings.exo_tenant}"
        with progress(label, enabled=wanted(getattr(args, "quiet", False))):
            document = collect_snapshot(
                client, tenant=settings.exo_tenant, now=datetime.now(UTC), parallel=True
            )
    write_output(json.dumps(document, ensure_ascii=False, indent=1) + "\n", args.out)
    return EXIT_UNKNOWN if document["errors"] else EXIT_OK
