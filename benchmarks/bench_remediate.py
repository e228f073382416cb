"""Benchmark of remediation under replication delay (issue 12): N targets, reads lag writes.

Starts Azurite and the emulator (in this process, realistic mode, `--delay` seconds of
replication lag), audits and plans N explicit enables to revoke, approves the plan and executes
it with the real client and store. Prints the wall time, results, and how long verification
took per target (min / median / max). Target: every target verified, wall well under
N x delay (verification is concurrent).

    .venv/bin/python benchmarks/bench_remediate.py [--targets N] [--delay SECONDS]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azure.data.tables import TableServiceClient  # noqa: E402

from auditor.core.allowlist import parse_allowlist  # noqa: E402
from auditor.core.policy import evaluate  # noqa: E402
from auditor.core.proposals import Principal  # noqa: E402
from auditor.core.snapshot import build_snapshot  # noqa: E402
from auditor.exchange.client import ExchangeClient  # noqa: E402
from auditor.exchange.collect import collect_snapshot  # noqa: E402
from auditor.identity.tokens import StaticToken  # noqa: E402
from auditor.remediation.execute import execute  # noqa: E402
from auditor.remediation.plan import plan  # noqa: E402
from auditor.storage.proposal_store import ProposalStore  # noqa: E402
from devkit.devservices import azurite  # noqa: E402
from devkit.emulator import Emulator  # noqa: E402
from devkit.tenantgen import Tenant  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 - the local emulator's token
DOMAIN = "contoso.onmicrosoft.com"
APPROVER = Principal("aaaaaaaa-0000-0000-0000-000000000001", "Bench", "t", ("r",), "bearer")


def tenant(n: int) -> Tenant:
    cas: dict[str, dict[str, Any]] = {}
    mailboxes: dict[str, dict[str, Any]] = {}
    for i in range(n):
        guid = f"00000000-0000-4000-8000-{i:012d}"
        address = f"user{i}@contoso.com"
        cas[guid] = {
            "Guid": guid,
            "Identity": f"user{i}",
            "Name": f"user{i}",
            "PrimarySmtpAddress": address,
            "SmtpClientAuthenticationDisabled": False,  # explicitly enabled: to revoke
        }
        mailboxes[guid] = {
            "Guid": guid,
            "UserPrincipalName": address,
            "Alias": f"user{i}",
            "PrimarySmtpAddress": address,
            "RecipientTypeDetails": "UserMailbox",
            "EmailAddresses": [f"SMTP:{address}"],
        }
    return Tenant(domain=DOMAIN, org_disabled=False, cas=cas, mailboxes=mailboxes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--delay", type=float, default=3.0)
    parser.add_argument("--verify-seconds", type=float, default=120.0)
    args = parser.parse_args()
    now = datetime.now(UTC)
    with (
        azurite() as connection,
        Emulator(tenant(args.targets), token=TOKEN, replication_delay=args.delay) as emu,
        httpx.Client(timeout=60) as http,
    ):
        store = ProposalStore(
            TableServiceClient.from_connection_string(connection),
            prefix=f"b{uuid.uuid4().hex[:10]}",
        )
        store.create_tables()
        exchange = ExchangeClient(
            base_url=emu.base_url, tenant=DOMAIN, tokens=StaticToken(TOKEN), http=http
        )
        allow = parse_allowlist(b"", source="allowlist.txt")
        snapshot = build_snapshot(collect_snapshot(exchange, tenant=DOMAIN, now=now))
        evaluation = evaluate(snapshot, allow, now.date(), evaluated_at=now)
        proposal = next(
            p for p in plan(evaluation, run_id="bench", created_at=now) if p.scope == "mailboxes"
        )
        store.save(proposal, now=now)
        store.approve(proposal.id, plan_digest=proposal.plan_hash, principal=APPROVER, now=now)
        started = time.perf_counter()
        record = execute(
            proposal.id,
            store=store,
            exchange=exchange,
            load_allowlist=lambda: allow,
            now=lambda: datetime.now(UTC),
            verify_seconds=args.verify_seconds,
        )
        wall = time.perf_counter() - started
        reads = sum(1 for r in emu.requests if r.cmdlet == "Get-CASMailbox")
    counts: dict[str, int] = {}
    took: list[float] = []
    for target in record.targets:
        counts[target.result.value] = counts.get(target.result.value, 0) + 1
        if "verified after " in target.detail:
            took.append(float(target.detail.split("verified after ")[1].split(" s")[0]))
    print(f"targets              {len(record.targets)} (replication delay {args.delay:g} s)")
    print(f"state                {record.state.value}; {counts}")
    serial = len(took) * args.delay
    print(f"wall (execute)       {wall:.2f} s   (one by one: at least {serial:.0f} s)")
    if took:
        print(
            f"verify took          min {min(took):.1f} s, median {statistics.median(took):.1f} s, "
            f"max {max(took):.1f} s"
        )
    print(f"Get-CASMailbox calls {reads} (re-checks + read-backs, listing pages included)")
    ok = counts.get("applied", 0) == len(record.targets)
    print("TARGETS MET" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
