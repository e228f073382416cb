"""Benchmark of the nightly audit (issue 4): two consecutive audits against Azurite.

Starts the Exchange emulator in a child process (its memory is not counted) with N mailboxes
(default 100,000) and L seconds of latency per page (default 0.05), and an in-memory Azurite.
Runs the audit (`run_audit`: collect, evaluate, record), changes 0.1% of the mailboxes through
the emulator's own Set-CASMailbox endpoint, and runs it again. Prints for each run: wall time,
pages and the fetch floor (pages x latency), table operations written and read, and the peak
memory (RSS) of this process during the run.

The generated tenant's organisation allows SMTP AUTH, so the remediation proposer (passed as
the nightly audit passes it, `proposer_from_settings`) plans an organisation-level proposal with
nearly every mailbox in it. A third run, identical to the second, shows what an unchanged night
costs: the proposal store's writes are printed for each run.

Targets: second (steady-state) run <= 1.3 x its fetch floor and <= 500 table writes; first run
<= 3 x its fetch floor; peak memory < 400 MB; the identical third run writes <= 300 proposal
entities.

    .venv/bin/python benchmarks/bench_audit.py [--mailboxes N] [--latency SECONDS]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor.app.audit import (  # noqa: E402
    Proposer,
    RunSummary,
    run_audit,
)
from auditor.app.settings import Settings  # noqa: E402
from auditor.app.wiring import proposer_from_settings  # noqa: E402
from auditor.exchange.client import ExchangeClient  # noqa: E402
from auditor.exchange.collect import collect_evidence  # noqa: E402
from auditor.identity.tokens import StaticToken  # noqa: E402
from auditor.storage.audit_store import AuditStore  # noqa: E402
from auditor.storage.connect import connect  # noqa: E402
from auditor.storage.tables import OpCounter  # noqa: E402
from devkit.devservices import azurite  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 - the local emulator's token


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return super().handle_request(request)


class PeakRss:
    """Samples this process's resident set every 10 ms while active."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, self.rss())


def start_emulator(mailboxes: int, latency: float) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devkit.emulator",
            "--generate",
            str(mailboxes),
            "--latency",
            str(latency),
            "--token",
            TOKEN,
            "--duration",
            "1800",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
    if "base_url" not in fields:
        process.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return process, fields["base_url"], fields["tenant"]


def change_mailboxes(base_url: str, tenant: str, keys: dict[str, str]) -> None:
    """Change SmtpClientAuthenticationDisabled (key -> current setting) via Set-CASMailbox."""
    url = f"{base_url}/adminapi/beta/{tenant}/InvokeCommand"
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for key, current in keys.items():
            value = current != "true"  # true -> false (opt in); false/null -> true (block)
            body = {
                "CmdletInput": {
                    "CmdletName": "Set-CASMailbox",
                    "Parameters": {"Identity": key, "SmtpClientAuthenticationDisabled": value},
                }
            }
            http.post(url, json=body).raise_for_status()


def timed(proposer: Proposer) -> Proposer:
    """The proposer, printing how long planning and storing the proposals took."""

    def propose(evaluation: Any, run_id: str, now: datetime) -> list[str]:
        started = time.perf_counter()
        try:
            return proposer(evaluation, run_id, now)
        finally:
            print(f"  proposer (plan + store): {time.perf_counter() - started:.2f} s")

    return propose


def one_run(
    label: str,
    store: Any,
    base_url: str,
    tenant: str,
    latency: float,
    proposer: Proposer | None = None,
    proposal_ops: OpCounter | None = None,
) -> tuple[RunSummary, float, float, int]:
    transport = CountingTransport()
    with httpx.Client(transport=transport, timeout=300) as http:
        client = ExchangeClient(
            base_url=base_url, tenant=tenant, tokens=StaticToken(TOKEN), http=http
        )

        def collect(now: datetime) -> bytes:  # what the nightly audit runs (exchange_collector)
            return collect_evidence(client, tenant=tenant, now=now, parallel=True)

        print(f"{label}: RSS at start {PeakRss.rss() / 2**20:.0f} MiB")
        with PeakRss() as memory:
            started = time.perf_counter()
            before = proposal_ops.snapshot() if proposal_ops else {}
            summary = run_audit(store=store, collect=collect, tenant=tenant, proposer=proposer)
            wall = time.perf_counter() - started
            after = proposal_ops.snapshot() if proposal_ops else {}
    floor = transport.requests * latency
    ops = summary.table_ops
    print(
        f"{label}: wall {wall:6.2f} s | pages {transport.requests} | fetch floor {floor:.2f} s | "
        f"wall/floor {wall / floor:.2f} | table writes {ops['writes']} "
        f"({ops['write_requests']} requests) | reads {ops['reads']} requests "
        f"({ops['entities_read']} entities) | peak RSS {memory.peak / 2**20:.0f} MiB"
    )
    d = summary.durations
    print(
        f"  collect {d['collect']:.2f} s, evaluate {d['evaluate']:.2f} s, "
        f"record {d['record']:.2f} s; changes {summary.changes}"
    )
    if proposal_ops is not None:
        written = after["writes"] - before["writes"]
        summary.durations["proposal_writes"] = float(written)
        print(
            f"  proposals {list(summary.proposals)}: proposal store writes {written} "
            f"({after['write_requests'] - before['write_requests']} requests), reads "
            f"{after['reads'] - before['reads']} requests"
        )
    return summary, wall, floor, memory.peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--changed", type=float, default=0.001, help="share changed (0.1%%)")
    args = parser.parse_args()
    process, base_url, tenant = start_emulator(args.mailboxes, args.latency)
    try:
        with azurite() as connection:
            tables = connect(connection)
            store = AuditStore(tables, prefix="bench")
            ops = OpCounter()
            nightly = proposer_from_settings(
                Settings(storage=connection, table_prefix="bench"), tables=tables, counter=ops
            )
            assert nightly is not None
            proposer = timed(nightly)
            print(f"mailboxes {args.mailboxes:,}, latency {args.latency * 1000:.0f} ms per page")
            first, wall1, floor1, peak1 = one_run(
                "run 1", store, base_url, tenant, args.latency, proposer, ops
            )
            # The timer runs one audit per invocation: nothing of run 1 (its summary carries
            # the whole evaluation) may stay alive into run 2's memory figure.
            del first
            states = store.mailbox_states()
            step = round(1 / args.changed)
            keys = {k: states[k].setting for k in sorted(states)[::step]}
            del states
            change_mailboxes(base_url, tenant, keys)
            print(f"changed {len(keys)} mailboxes through Set-CASMailbox")
            second, wall2, floor2, peak2 = one_run(
                "run 2", store, base_url, tenant, args.latency, proposer, ops
            )
            # As after run 1: run 2's summary (and its evaluation) must not stay alive.
            changed = second.changes.get("mailboxes_changed", 0)
            second_writes, second_proposals = second.table_ops["writes"], second.proposals
            del second
            third, _wall3, _floor3, peak3 = one_run(
                "run 3 (identical)", store, base_url, tenant, args.latency, proposer, ops
            )
    finally:
        process.terminate()
        process.wait(timeout=10)
    checks = {
        "run 2 wall <= 1.3 x floor": wall2 <= 1.3 * floor2,
        "run 2 table writes <= 500": second_writes <= 500,
        "run 1 wall <= 3 x floor": wall1 <= 3 * floor1,
        "peak memory < 400 MB": max(peak1, peak2, peak3) < 400e6,
        f"run 2 saw the {len(keys)} changes": changed == len(keys),
        "run 3 (identical) proposal writes <= 300": third.durations["proposal_writes"] <= 300,
        "run 3 kept the same proposals": third.proposals == second_proposals,
    }
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")
    met = all(checks.values())
    print("targets met" if met else "TARGETS MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
