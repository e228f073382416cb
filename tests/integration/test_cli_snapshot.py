"""`python -m auditor snapshot` end to end against the emulator, then `evaluate` on the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devkit.emulator import Emulator
from tests.conftest import EMULATOR_TOKEN

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EXO_", "AZURE_"))}
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def settings(emu: Emulator) -> dict[str, str]:
    return {
        "EXO_TENANT": emu.domain,
        "EXO_BASE_URL": emu.base_url,
        "EXO_ACCESS_TOKEN": EMULATOR_TOKEN,
    }


def test_complete_snapshot_then_evaluate(exchange_emulator: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "snapshot.json"
    result = run(["snapshot", "--out", str(out)], settings(exchange_emulator))
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["schema"] == "smtp-auth-snapshot/1"
    assert document["errors"] == []
    assert len(document["cas_mailboxes"]) == 250
    assert EMULATOR_TOKEN not in out.read_text(encoding="utf-8") + result.stderr
    evaluated = run(["evaluate", "--snapshot", str(out), "--format", "json"], {})
    assert evaluated.returncode == 1  # the generated tenant allows SMTP AUTH: fails
    findings = json.loads(evaluated.stdout)
    assert findings["org"]["status"] == "fail"


def test_partial_snapshot_is_written_and_exits_3(
    exchange_emulator: Emulator, tmp_path: Path
) -> None:
    exchange_emulator.faults.add("deny", cmdlet="Get-Mailbox", times=None)
    out = tmp_path / "partial.json"
    result = run(["snapshot", "--out", str(out)], settings(exchange_emulator))
    assert result.returncode == 3, result.stderr
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["mailboxes"] is None
    assert len(document["cas_mailboxes"]) == 250
    assert document["errors"][0]["source"] == "Get-Mailbox"
    assert "View-Only Recipients" in document["errors"][0]["message"]
    assert "Get-Mailbox" in result.stderr


def test_configuration_errors_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "none.json"
    missing = run(["snapshot", "--out", str(out)], {"EXO_ACCESS_TOKEN": "x"})
    assert missing.returncode == 2
    assert "EXO_TENANT" in missing.stderr
    bad_url = run(
        ["snapshot", "--out", str(out)],
        {
            "EXO_TENANT": "contoso.onmicrosoft.com",
            "EXO_BASE_URL": "outlook",
            "EXO_ACCESS_TOKEN": "x",
        },
    )
    assert bad_url.returncode == 2
    assert "EXO_BASE_URL" in bad_url.stderr
    custom_domain = run(
        ["snapshot", "--out", str(out)], {"EXO_TENANT": "contoso.com", "EXO_ACCESS_TOKEN": "x"}
    )
    assert custom_domain.returncode == 2
    assert "EXO_TENANT" in custom_domain.stderr
    no_secret = run(
        ["snapshot", "--out", str(out)],
        {"EXO_TENANT": "contoso.onmicrosoft.com", "EXO_CLIENT_ID": "app"},
    )
    assert no_secret.returncode == 2
    assert "EXO_CERTIFICATE_PATH" in no_secret.stderr
    assert not out.exists()
