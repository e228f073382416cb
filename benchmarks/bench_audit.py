"""Benchmark of the nightly audit (issues 4, 17): two consecutive audits against Azurite.

Starts the Exchange emulator in a child process (its memory is not counted) with N mailboxes
(default 100,000) and L seconds of latency per page (default 0.05), and an in-memory Azurite.
Runs the audit (`run_audit`: collect, evaluate, record, and propose, with the proposer the
nightly audit gets from `proposer_from_settings`), changes 0.1% of the mailboxes through the
emulator's own Set-CASMailbox endpoint, and runs it again. Prints for each run: wall time,
pages per read, the fetch floor, the phases, table operations written and read, proposals and
their table requests, and the peak memory (RSS) of this process during the run.

The fetch floor is one paging chain: the three reads run in parallel, so no audit can be faster
than its longest read (Get-CASMailbox or Get-Mailbox pages x page latency). The sum of all
pages x latency (what this benchmark called the floor before issue 17) is printed beside it.

`--org allows` is where tenants start (every inheriting mailbox fails, so the evaluation and
the proposals are large); `--org blocks` is where they should end.

Targets: second (steady-state) run <= 1.3 x its fetch floor and <= 500 table writes; first run
<= 3 x its fetch floor; peak memory < 400 MB (at 100,000 mailboxes).

    .venv/bin/python benchmarks/bench_audit.py [--mailboxes N] [--latency SECONDS]
        [--org allows|blocks] [--no-proposals] [--quick]
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

from azure.core.pipeline.transport import RequestsTransport  # noqa: E402
from azure.data.tables import TableServiceClient  # noqa: E402

from auditor.app.audit import RunSummary, run_audit  # noqa: E402
from auditor.app.settings import Settings  # noqa: E402
from auditor.app.wiring import proposer_from_settings  # noqa: E402
from auditor.exchange.client import ExchangeClient, collect_evidence  # noqa: E402
from auditor.identity.tokens import StaticToken  # noqa: E402
from auditor.storage.audit_store import AuditStore  # noqa: E402
from auditor.storage.connect import connect  # noqa: E402
from devkit.devservices import azurite  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 - the local emulator's token


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.by_cmdlet: dict[str, int] = {}  # pages per read

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        cmdlet = request.headers.get("X-CmdletName", "?")
        self.by_cmdlet[cmdlet] = self.by_cmdlet.get(cmdlet, 0) + 1
        return super().handle_request(request)


class CountingTables(RequestsTransport):
    """Counts the HTTP requests of a TableServiceClient (the proposal store's)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return super().send(request, **kwargs)


class TimedProposer:
    """The nightly audit's proposer, timed: run_audit does not time its propose step."""

    def __init__(self, connection: str, prefix: str) -> None:
        self.policy = CountingTables()
        tables = TableServiceClient.from_connection_string(connection, transport=self.policy)
        settings = Settings(storage=connection, table_prefix=prefix)
        proposer = proposer_from_settings(settings, tables=tables)
        assert proposer is not None
        self.inner = proposer
        self.seconds = 0.0

    def __call__(self, evaluation: Any, run_id: str, now: datetime) -> list[str]:
        started = time.perf_counter()
        try:
            return self.inner(evaluation, run_id, now)
        finally:
            self.seconds = time.perf_counter() - started


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


def start_emulator(
    mailboxes: int, latency: float, org_blocks: bool = False
) -> tuple[subprocess.Popen[str], str, str]:
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
            "7200",
            *(["--org-disabled"] if org_blocks else []),
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


def one_run(
    label: str,
    store: Any,
    base_url: str,
    tenant: str,
    latency: float,
    proposer: TimedProposer | None = None,
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
            proposal_requests = proposer.policy.requests if proposer else 0
            summary = run_audit(store=store, collect=collect, tenant=tenant, proposer=proposer)
            wall = time.perf_counter() - started
    # The reads run in parallel: the floor is the longest paging chain, not all pages.
    floor = max(transport.by_cmdlet.values()) * latency
    all_pages = transport.requests * latency
    ops = summary.table_ops
    pages = ", ".join(f"{k} {v}" for k, v in sorted(transport.by_cmdlet.items()))
    print(
        f"{label}: wall {wall:6.2f} s | fetch floor {floor:.2f} s (longest chain) | "
        f"wall/floor {wall / floor:.2f} | all pages x latency {all_pages:.2f} s | "
        f"peak RSS {memory.peak / 2**20:.0f} MiB"
    )
    print(
        f"  pages: {pages} | table writes {ops['writes']} ({ops['write_requests']} requests) "
        f"| reads {ops['reads']} requests ({ops['entities_read']} entities)"
    )
    d = summary.durations
    propose = (
        f", propose {proposer.seconds:.2f} s ({len(summary.proposals)} proposals, "
        f"{proposer.policy.requests - proposal_requests} table requests)"
        if proposer
        else ""
    )
    print(
        f"  collect {d['collect']:.2f} s, evaluate {d['evaluate']:.2f} s, "
        f"record {d['record']:.2f} s{propose}; counts fail {summary.counts.get('fail', 0)}, "
        f"changes {summary.changes}"
    )
    return summary, wall, floor, memory.peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--changed", type=float, default=0.001, help="share changed (0.1%%)")
    parser.add_argument(
        "--org",
        choices=("allows", "blocks"),
        default="allows",
        help="organisation setting: 'allows' (default; most mailboxes fail) or 'blocks'",
    )
    parser.add_argument(
        "--no-proposals", action="store_true", help="audit without the proposer (as before)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 5,000 mailboxes, 10 ms pages"
    )
    args = parser.parse_args()
    if args.quick:
        args.mailboxes, args.latency = 5000, 0.01
    process, base_url, tenant = start_emulator(
        args.mailboxes, args.latency, org_blocks=args.org == "blocks"
    )
    try:
        with azurite() as connection:
            store = AuditStore(connect(connection), prefix="bench")
            proposer = None if args.no_proposals else TimedProposer(connection, "bench")
            print(
                f"mailboxes {args.mailboxes:,}, latency {args.latency * 1000:.0f} ms per page, "
                f"organisation {args.org} SMTP AUTH, "
                f"proposals {'off' if args.no_proposals else 'on'}"
            )
            first, wall1, floor1, peak1 = one_run(
                "run 1", store, base_url, tenant, args.latency, proposer
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
                "run 2", store, base_url, tenant, args.latency, proposer
            )
    finally:
        process.terminate()
        process.wait(timeout=10)
    changed = second.changes.get("mailboxes_changed", 0)
    checks = {
        "run 2 wall <= 1.3 x floor": wall2 <= 1.3 * floor2,
        "run 2 table writes <= 500": second.table_ops["writes"] <= 500,
        "run 1 wall <= 3 x floor": wall1 <= 3 * floor1,
        "peak memory < 400 MB": max(peak1, peak2) < 400e6,
        f"run 2 saw the {len(keys)} changes": changed == len(keys),
    }
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")
    met = all(checks.values())
    print("targets met" if met else "TARGETS MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
