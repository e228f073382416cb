"""`approve` prints who will break first and apart, from a proposal stored in Azurite."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from azure.data.tables import TableServiceClient

from auditor.core.policy import evaluate
from auditor.remediation.plan import plan
from auditor.storage.proposal_store import ProposalStore
from tests.support.approver_tokens import AUDIENCE, TENANT, Issuer, jwks_server
from tests.support.builders import allowlist, cas, mbx, snapshot
from tests.support.usage import NOW, collected, signin

ROOT = Path(__file__).resolve().parents[2]


def test_approve_plan_printout_lists_what_will_break(azurite: str, tmp_path: Path) -> None:
    evaluation = evaluate(
        snapshot(
            org=True,
            cas_records=[cas(1, False), cas(2, False)],
            mailboxes=[mbx(1, "SharedMailbox"), mbx(2)],
        ),
        allowlist(""),
        NOW.date(),
        evaluated_at=NOW,
        usage=collected(signin(2, at=NOW - timedelta(days=1), ip="198.51.100.2", app="Copier")),
    )
    (proposal,) = plan(evaluation, run_id="r1", created_at=NOW, expiry_days=90)
    prefix = f"brk{uuid.uuid4().hex[:8]}"
    store = ProposalStore(TableServiceClient.from_connection_string(azurite), prefix=prefix)
    store.create_tables()
    store.save(proposal, now=NOW)
    document = store.get(proposal.id).to_json()
    assert [b["display"] for b in document["will_break"]] == ["user2@contoso.com"]

    with jwks_server(Issuer()) as issuer:
        token = tmp_path / "token.txt"
        token.write_text(issuer.token(), encoding="utf-8")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("EXO_", "APPROVER_"))},
            "AUDITOR_STORAGE": azurite,
            "AUDITOR_TABLE_PREFIX": prefix,
            "APPROVER_TENANT_ID": TENANT,
            "APPROVER_AUDIENCE": AUDIENCE,
            "APPROVER_JWKS_URL": issuer.url,
        }
        shown = subprocess.run(
            [sys.executable, "-m", "auditor", "approve", proposal.id, "--as", f"@{token}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert shown.returncode == 2, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    start = lines.index("will break (1): used SMTP AUTH in the sign-in window")
    assert lines[start + 1] == (
        "  user2@contoso.com: will break: last used 2026-11-26 03:00 UTC, from 198.51.100.2 "
        "(Copier)"
    )
    # listed before the targets, which still show both mailboxes
    first_target = next(i for i, line in enumerate(lines) if "-> " in line)
    assert start < first_target
    assert sum("user1@contoso.com" in line for line in lines) == 1
    assert "by type: 1 SharedMailbox, 1 UserMailbox" in lines
