"""Local development services for the demo and the benchmarks: Azurite's Table service.

Starts the project's pinned Azurite (`node_modules/.bin/azurite-table`, installed by `make`)
in memory (or in a folder, for the demo), on a free loopback port, telemetry off, and always
stops it again.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["ROOT", "azurite", "azurite_command", "azurite_connection_string", "free_port"]

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-table"
# The well-known development account key Microsoft publishes for Azurite (not a secret).
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def azurite_connection_string(port: int) -> str:
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={DEV_KEY};TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )


def azurite_command(port: int, location: Path | None = None) -> list[str]:
    """The command line of the pinned Azurite Table service: in memory, or kept in `location`."""
    storage = ["--location", str(location)] if location is not None else ["--inMemoryPersistence"]
    return [
        str(AZURITE),
        *storage,
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--tableHost",
        "127.0.0.1",
        "--tablePort",
        str(port),
    ]


@contextmanager
def azurite(
    *, startup_timeout: float = 30.0, location: Path | None = None, port: int | None = None
) -> Iterator[str]:
    """A running Azurite Table service; yields its connection string. In memory by default;
    with `location`, its tables are kept in that folder (and survive the process)."""
    if not AZURITE.exists():
        raise RuntimeError(f"Azurite is not installed ({AZURITE}): run `make setup`")
    port = port or free_port()
    if location is not None:
        location.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="azurite-") as workdir:
        log_path = Path(workdir) / "azurite.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own pinned binary, fixed arguments
                azurite_command(port, location),
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "AZURITE_ACCEPT_EULA": "true"},
            )
            try:
                deadline = time.monotonic() + startup_timeout
                while True:
                    try:
                        httpx.get(f"http://127.0.0.1:{port}/devstoreaccount1/Tables", timeout=1)
                        break
                    except httpx.TransportError:
                        if process.poll() is not None or time.monotonic() > deadline:
                            raise RuntimeError(
                                f"Azurite did not start: {log_path.read_text()[-2000:]}"
                            ) from None
                        time.sleep(0.2)
                yield azurite_connection_string(port)
            finally:
                if location is not None:
                    # Azurite's store autosaves every 5 s and is not reliably written out on
                    # SIGTERM (observed: a demo's tables lost): let one autosave pass first.
                    time.sleep(6)
                process.terminate()
                try:
                    # A kept store is written out on exit: give it time (a kill would lose it).
                    process.wait(timeout=10 if location is None else 120)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
