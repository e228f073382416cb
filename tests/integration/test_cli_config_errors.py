"""README: configuration errors exit 2 and name the setting — a malformed EXO_TENANT, and an
EXO_BASE_URL that does not resolve or refuses the connection (never 3, "evidence unknown")."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "EXO_ACCESS_TOKEN": "t", **env},
    )


def refused_url() -> str:
    # A port that was free a moment ago: nothing listens, the connection is refused.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("command", [("snapshot",), ("mailboxes", "--live"), ("audit",)])
def test_unreachable_exchange_is_exit_2(command: tuple[str, ...]) -> None:
    env = {"EXO_TENANT": "contoso.onmicrosoft.com", "AUDITOR_STORAGE": "UseDevelopmentStorage=true"}
    refused = run({**env, "EXO_BASE_URL": refused_url()}, *command)
    assert refused.returncode == 2, refused.stderr
    assert "EXO_BASE_URL" in refused.stderr and "cannot connect" in refused.stderr
    dns = run({**env, "EXO_BASE_URL": "https://no-such-host.invalid"}, *command)
    assert dns.returncode == 2, dns.stderr
    assert "EXO_BASE_URL" in dns.stderr and "does not resolve" in dns.stderr


@pytest.mark.parametrize("tenant", ["contoso", "contoso.", "not a tenant", "-x.com"])
def test_malformed_tenant_is_exit_2(tenant: str) -> None:
    done = run({"EXO_TENANT": tenant, "EXO_BASE_URL": refused_url()}, "snapshot")
    assert done.returncode == 2 and "EXO_TENANT" in done.stderr, done.stderr
