"""`python -m auditor remediations | approve | status` end to end: a real subprocess against
Azurite, the Exchange emulator and a local JWKS endpoint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.approver_tokens import AUDIENCE, TENANT, Issuer, jwks_server
from tests.support.remediation_env import DOMAIN, TOKEN, remediation_env

ROOT = Path(__file__).resolve().parents[2]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plan_approve_and_status_from_the_command_line(azurite: str, tmp_path: Path) -> None:
    boxes = {"erp": False, "printer": False, "keep": None}
    with remediation_env(azurite, True, boxes, "") as emu_env, jwks_server(Issuer()) as issuer:
        allow = tmp_path / "allow.txt"
        allow.write_text("printer@contoso.com\n", encoding="utf-8")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("EXO_", "APPROVER_"))},
            "AUDITOR_STORAGE": azurite,
            "AUDITOR_ALLOWLIST": str(allow),
            "EXO_TENANT": DOMAIN,
            "EXO_BASE_URL": emu_env.emulator.base_url,
            "EXO_ACCESS_TOKEN": TOKEN,
            "APPROVER_TENANT_ID": TENANT,
            "APPROVER_AUDIENCE": AUDIENCE,
            "APPROVER_JWKS_URL": issuer.url,
            "APPROVAL_SIGNING_KEY": "cli-test-approval-signing-key-0123456789",
        }
        snapshot = tmp_path / "snapshot.json"
        done = run(env, "snapshot", "--out", str(snapshot))
        assert done.returncode == 0, done.stderr
        done = run(env, "remediations", "--plan-from", str(snapshot), "--allowlist", str(allow))
        assert done.returncode == 0, done.stderr
        [proposal_id] = re.findall(r"stored\s+(rev-mai-[0-9a-f]+)", done.stdout)
        assert proposal_id in run(env, "remediations").stdout

        token_file = tmp_path / "token.txt"
        token_file.write_text(issuer.token(), encoding="utf-8")
        shown = run(env, "approve", proposal_id, "--as", f"@{token_file}")
        assert shown.returncode == 2
        plan_hash = re.search(r"plan hash ([0-9a-f]{64})", shown.stdout)
        assert plan_hash is not None and "erp@contoso.com" in shown.stdout
        assert "printer@contoso.com" not in shown.stdout  # allowlisted: never lowered

        wrong = run(
            env,
            "approve",
            proposal_id,
            "--as",
            issuer.token(roles=[]),
            "--plan-hash",
            plan_hash.group(1),
        )
        assert wrong.returncode == 2, wrong.stdout + wrong.stderr
        assert "approver role" in wrong.stdout
        assert emu_env.setting("erp") is False

        done = run(
            env, "approve", proposal_id, "--as", str(token_file), "--plan-hash", plan_hash.group(1)
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "applied" in done.stdout and "Ada Approver" in done.stdout
        assert emu_env.setting("erp") is None  # organisation blocks: back to null

        status = run(env, "status", proposal_id)
        assert status.returncode == 0
        assert "approved" in status.stdout and "target applied" in status.stdout

        again = run(
            env, "approve", proposal_id, "--as", str(token_file), "--plan-hash", plan_hash.group(1)
        )
        assert again.returncode == 2 and "already_used" in again.stdout
