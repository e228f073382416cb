"""Shared fixtures: real local services on loopback, started once per test session.

Azurite (the pinned npm package, installed by `make test`; started by devkit.devservices, as the
demo does) runs in memory on a free port with
telemetry off; tests reach it over real HTTP with the explicit devstoreaccount1 connection string.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.devservices import AZURITE
from devkit.devservices import azurite as start_azurite
from tests.support.builders import EMULATOR_TOKEN

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """A running Azurite Table service (the project's own starter); yields its connection
    string."""
    if not AZURITE.exists():
        pytest.fail("Azurite is not installed: run the README's test command (make test)")
    with start_azurite() as connection:
        yield connection


@pytest.fixture(scope="session")
def app_functions() -> dict[str, Any]:
    """function_app's functions by name, indexed once: `FunctionApp.get_functions()` refuses to
    run twice in one process ("does not have a unique function name"), so every test shares
    this index."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


@pytest.fixture
def exchange_emulator() -> Iterator[Any]:
    """A running Exchange admin endpoint emulator (devkit.emulator) on a free loopback port,
    serving a generated 250-mailbox tenant; accepts the bearer token `EMULATOR_TOKEN`.
    Change `emu.state`, `emu.faults`, `emu.tokens` or `emu.latency` as a test needs."""
    from devkit.emulator import Emulator
    from devkit.tenantgen import generate_tenant

    with Emulator(generate_tenant(250, seed=7), token=EMULATOR_TOKEN) as emu:
        yield emu


@pytest.fixture
def client(exchange_emulator: Any) -> Iterator[Any]:
    """An `ExchangeClient` on `exchange_emulator` with 20-record pages (the 250 mailboxes take
    13 pages per read), no back-off sleeps and no jitter."""
    import httpx

    from auditor.exchange.client import ExchangeClient
    from auditor.identity.tokens import StaticToken

    with httpx.Client(timeout=30) as http:
        yield ExchangeClient(
            base_url=exchange_emulator.base_url,
            tenant=exchange_emulator.domain,
            tokens=StaticToken(EMULATOR_TOKEN),
            http=http,
            sleep=lambda _: None,
            jitter=lambda: 0.0,
            page_size=20,
        )


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[Any]:
    """Start local recording HTTP receivers (tests/receivers.py); all stopped after the test.
    Each posted body is also written under tmp_path/"posted"."""
    from tests.support.receivers import ReceiverPool

    pool = ReceiverPool(out_dir=tmp_path / "posted")
    try:
        yield pool
    finally:
        pool.stop_all()
