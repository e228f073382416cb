"""Shared fixtures: real local services on loopback, started once per test session.

Azurite (the pinned npm package, installed by `make test`) runs in memory on a free port with
telemetry off; tests reach it over real HTTP with the explicit devstoreaccount1 connection string.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-table"
# The well-known development account key published by Microsoft for Azurite.
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connection_string(port: int) -> str:
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={DEV_KEY};TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running Azurite Table service; yields its connection string."""
    if not AZURITE.exists():
        pytest.fail("Azurite is not installed: run the README's test command (make test)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("azurite")
    log = (workdir / "azurite.log").open("wb")
    process = subprocess.Popen(
        [
            str(AZURITE),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(port),
        ],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "AZURITE_ACCEPT_EULA": "true"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/devstoreaccount1/Tables", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Azurite did not start: {(workdir / 'azurite.log').read_text()}")
                time.sleep(0.2)
        yield connection_string(port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def app_functions() -> dict[str, Any]:
    """function_app's functions by name, indexed once: `FunctionApp.get_functions()` refuses to
    run twice in one process ("does not have a unique function name"), so every test shares
    this index."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


EMULATOR_TOKEN = "emulator-test-token"


@pytest.fixture
def exchange_emulator() -> Iterator[Any]:
    """A running Exchange admin endpoint emulator (auditor.emulator) on a free loopback port,
    serving a generated 250-mailbox tenant; accepts the bearer token `EMULATOR_TOKEN`.
    Change `emu.state`, `emu.faults`, `emu.tokens` or `emu.latency` as a test needs."""
    from auditor.emulator import Emulator
    from auditor.tenantgen import generate_tenant

    with Emulator(generate_tenant(250, seed=7), token=EMULATOR_TOKEN) as emu:
        yield emu


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[Any]:
    """Start local recording HTTP receivers (tests/receivers.py); all stopped after the test.
    Each posted body is also written under tmp_path/"posted"."""
    from receivers import ReceiverPool

    pool = ReceiverPool(out_dir=tmp_path / "posted")
    try:
        yield pool
    finally:
        pool.stop_all()
