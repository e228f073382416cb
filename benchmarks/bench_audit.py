"""Benchmark of the nightly audit (issues 4, 14, 17): three consecutive audits against Azurite.

Starts the Exchange emulator in a child process (its memory is not counted) with N mailboxes
(default 100,000) and L seconds of latency per page (default 0.05), whose organisation allows
(`--org allows`, the default: where tenants start, every inheriting mailbox fails and the
organisation proposal names nearly every mailbox) or blocks SMTP AUTH (`--org blocks`: where
they should end), and an in-memory Azurite. Then, as the nightly timer does (`run_audit` with
the collector of `wiring.exchange_collector`, which judges while paging, the proposer of
`wiring.proposer_from_settings`, and the alerter of `alerting.run_alerter` posting to a local
Teams receiver):

1. run 1, the first audit (baseline);
2. 0.1% of the mailboxes changed through the emulator's own Set-CASMailbox, then run 2, the
   steady state;
3. run 3, identical to run 2: what an unchanged night costs (issue 14: proposals confirmed,
   not written again).

Prints per run: wall time, the fetch floor, wall/floor, the phases (collect, evaluate, record,
proposals, alerts if any), table writes and reads of the audit store, proposal store writes,
and the peak RSS of this process during the run (the emulator is another process).

**The fetch floor is one paging chain**: the three reads run in parallel and each pages
sequentially, so no audit can be faster than its longest read, max(pages of Get-CASMailbox,
pages of Get-Mailbox) x latency (docs/architecture.md, "Performance"). The sum of all pages x
latency is printed beside it for comparison. With `--shards K` (sharded enumeration,
docs/exchange-protocol.md "Sharded reads") the floor stays that ONE unsharded chain,
ceil(mailboxes / page size) x latency, so K shards can show a ratio below 1; the longest shard
chain is printed beside it.

Targets (README, "Performance"): run 2 <= 1.3 x its floor and <= 500 table writes; run 1
<= 3 x its floor; run 3 writes <= 300 proposal entities; peak RSS <= 250 MB at 100,000
mailboxes and <= 1 GiB at 1,000,000. Sharded (issue 17 item 6), organisation allows, 300 ms
pages, 3 shards: run 2 <= 0.45 x the one-chain floor.

    .venv/bin/python benchmarks/bench_audit.py [--mailboxes N] [--latency SECONDS]
        [--org allows|blocks] [--no-proposals] [--quick] [--shards K] [--json FILE]
    .venv/bin/python benchmarks/bench_audit.py --matrix [--sizes 100000,1000000]
        [--latencies 0.05,0.3] [--orgs allows,blocks] [--shards-list 1,3]
        # every case, one markdown table

`--matrix` runs each case in a process of its own, one after the other (never two at once:
the figures are wall times and peak memory), and prints one table at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor.app.alerting import RunAlerter, run_alerter  # noqa: E402
from auditor.app.audit import RunSummary, run_audit  # noqa: E402
from auditor.app.settings import Settings  # noqa: E402
from auditor.app.wiring import proposer_from_settings  # noqa: E402
from auditor.core.evidence import StreamedEvidence  # noqa: E402
from auditor.core.model import Evaluation  # noqa: E402
from auditor.core.proposals import PlannedProposals  # noqa: E402
from auditor.core.snapshot import PageJoiner  # noqa: E402
from auditor.exchange.client import ExchangeClient  # noqa: E402
from auditor.exchange.collect import collect_evidence, collect_streamed  # noqa: E402
from auditor.identity.tokens import StaticToken  # noqa: E402
from auditor.storage.audit_store import AuditStore  # noqa: E402
from auditor.storage.connect import connect  # noqa: E402
from auditor.storage.tables import OpCounter  # noqa: E402
from devkit.devservices import azurite  # noqa: E402
from devkit.receiver import Receiver  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 - the local emulator's token
MIB = 2**20


@dataclass(frozen=True)
class Case:
    """One benchmark case. `shards`: the listings are read as that many `-Filter` chains
    (`ExchangeClient(shards=...)`, at most 3 at a time), 1 as the nightly audit by default."""

    mailboxes: int = 100_000
    latency: float = 0.05
    org: str = "allows"
    proposals: bool = True
    changed: float = 0.001
    shards: int = 1
    collector: str = "streamed"  # or "bytes": evidence bytes judged after paging (before 17)
    runs: int = 3  # 1: the first run only (a quick look at a big case)

    @property
    def label(self) -> str:
        return (
            f"{self.mailboxes:,} mailboxes, {self.latency * 1000:.0f} ms/page, org {self.org}, "
            f"collector {self.collector}" + (f", {self.shards} shards" if self.shards != 1 else "")
        )


@dataclass
class RunFigures:
    label: str
    wall: float
    floor: float
    all_pages: float
    pages: dict[str, int]
    phases: dict[str, float]
    table_writes: int
    table_write_requests: int
    table_reads: int
    entities_read: int
    proposal_writes: int
    proposal_requests: int
    proposals: list[str]
    peak_rss: int
    fail: int
    rss_at_start: int = 0
    peak_by_phase: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, str] = field(default_factory=dict)
    joined: bool = True
    longest_chain: int = 0  # pages of the longest paging chain (a shard's, when sharded)
    # CPU seconds by this process, the emulator's and Azurite's, while collecting and after
    # (the tail): all three share this machine's cores, where Exchange and Table Storage
    # would not, so a phase whose sum nears cores x its seconds is CPU-bound here.
    collect_cpu: dict[str, float] = field(default_factory=dict)
    tail_cpu: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.wall / self.floor if self.floor else float("nan")


class CountingTransport(httpx.HTTPTransport):
    """Counts the pages of each read (the client names the cmdlet in `X-CmdletName`) and of
    each paging chain (one `client-request-id` per cmdlet call: a shard is a call)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.by_cmdlet: dict[str, int] = {}
        self.by_chain: dict[str, int] = {}
        self._lock = threading.Lock()  # the reads (and their shards) page in threads

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        cmdlet = request.headers.get("X-CmdletName", "?")
        chain = f"{cmdlet} {request.headers.get('client-request-id', '?')}"
        with self._lock:
            self.requests += 1
            self.by_cmdlet[cmdlet] = self.by_cmdlet.get(cmdlet, 0) + 1
            if cmdlet != "Get-TransportConfig":
                self.by_chain[chain] = self.by_chain.get(chain, 0) + 1
        return super().handle_request(request)


_PAGE = os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples this process's resident set every 10 ms while active (`samples`: seconds since
    start, bytes), so the peak can be told per phase."""

    def __init__(self) -> None:
        self.peak = 0
        self.start = 0.0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    _statm: int | None = None  # an open /proc/self/statm, read again at offset 0 each time

    @classmethod
    def rss(cls) -> int:
        """VmRSS (the second field of /proc/self/statm, in pages). One pread of a file kept
        open, about 50 times cheaper than reading /proc/self/status by path: the sampler
        shares the interpreter with the audit it measures, so it must take little of it."""
        if cls._statm is None:
            cls._statm = os.open("/proc/self/statm", os.O_RDONLY)
        return int(os.pread(cls._statm, 128, 0).split()[1]) * _PAGE

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.rss()
            self.peak = max(self.peak, rss)
            self.samples.append((time.perf_counter() - self.start, rss))
            self._stop.wait(0.01)

    def by_phase(self, phases: dict[str, float]) -> dict[str, int]:
        """The peak within each phase, the phases taken back to back from the start (the
        audit's own phases, in order; what follows the last is called `after`)."""
        out: dict[str, int] = {}
        begin = 0.0
        for name, seconds in [*phases.items(), ("after", float("inf"))]:
            end = begin + seconds
            out[name] = max((rss for t, rss in self.samples if begin <= t < end), default=0)
            begin = end
        return out

    def __enter__(self) -> PeakRss:
        self.start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, self.rss())


class TimedProposer:
    """The nightly proposer (`proposer_from_settings`), its planning and its storing timed:
    run_audit plans before the alert and stores after it, and times neither."""

    def __init__(self, inner: Callable[[Evaluation, str, datetime], PlannedProposals]) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __call__(self, evaluation: Evaluation, run_id: str, now: datetime) -> PlannedProposals:
        started = time.perf_counter()
        planned = self.inner(evaluation, run_id, now)
        self.seconds += time.perf_counter() - started

        def save() -> list[str]:
            begun = time.perf_counter()
            try:
                return planned.save()
            finally:
                self.seconds += time.perf_counter() - begun

        return PlannedProposals(planned.ids, save)


def start_emulator(case: Case) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devkit.emulator",
            "--generate",
            str(case.mailboxes),
            "--latency",
            str(case.latency),
            "--token",
            TOKEN,
            "--duration",
            "14400",
            *(["--org-disabled"] if case.org == "blocks" else []),
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


def exchange_client(base_url: str, tenant: str, http: httpx.Client, case: Case) -> ExchangeClient:
    """The client the audit reads with: `case.shards` chains per listing, 3 at a time (the
    EXO_MAX_PARALLEL default)."""
    return ExchangeClient(
        base_url=base_url,
        tenant=tenant,
        tokens=StaticToken(TOKEN),
        http=http,
        shards=case.shards,
        max_parallel=3,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pid(fragment: bytes) -> int | None:
    """The pid of this process's child whose command line holds `fragment` (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if parent == os.getpid() and fragment in command:
            return int(entry.name)
    return None


def cpu_mark(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def one_run(
    label: str,
    case: Case,
    store: AuditStore,
    base_url: str,
    tenant: str,
    proposer: TimedProposer | None,
    proposal_ops: OpCounter,
    emulator_pid: int,
    alerter: RunAlerter,
) -> tuple[RunSummary, RunFigures]:
    transport = CountingTransport()
    joins: list[PageJoiner | None] = []
    pids = {"auditor": os.getpid(), "emulator": emulator_pid}
    azurite_pid = child_pid(b"azurite")
    if azurite_pid is not None:
        pids["azurite"] = azurite_pid
    marks: dict[str, dict[str, float]] = {}
    with httpx.Client(transport=transport, timeout=300) as http:
        client = exchange_client(base_url, tenant, http, case)

        def collect(now: datetime) -> StreamedEvidence | bytes:  # wiring.exchange_collector
            if case.shards > 1:  # balanced by the last complete run's names, as nightly
                client.spread = store.last_name_spread()
            marks["start"] = cpu_mark(pids)
            try:
                return _collect(now)
            finally:
                marks["collected"] = cpu_mark(pids)

        def _collect(now: datetime) -> StreamedEvidence | bytes:
            if case.collector == "bytes":
                joins.append(None)
                return collect_evidence(client, tenant=tenant, now=now, parallel=True)
            streamed = collect_streamed(client, tenant=tenant, now=now, parallel=True)
            joins.append(streamed.joiner)  # holds no records once judged
            return streamed

        if proposer is not None:
            proposer.seconds = 0.0
        before = proposal_ops.snapshot()
        at_start = PeakRss.rss()
        with PeakRss() as memory:
            started = time.perf_counter()
            summary = run_audit(
                store=store, collect=collect, tenant=tenant, proposer=proposer, alerter=alerter
            )
            wall = time.perf_counter() - started
        marks["end"] = cpu_mark(pids)
        after = proposal_ops.snapshot()
    chains = [n for cmdlet, n in transport.by_cmdlet.items() if cmdlet != "Get-TransportConfig"]
    longest = max(transport.by_chain.values(), default=0)
    if case.shards == 1:
        floor = max(chains, default=0) * case.latency
    else:  # the ONE unsharded chain the shards are measured against
        floor = math.ceil(case.mailboxes / client.page_size) * case.latency
    ops = summary.table_ops
    d = summary.durations
    phases: dict[str, float] = {k: d[k] for k in ("collect", "evaluate", "record") if k in d}
    if proposer is not None:
        phases["proposals"] = proposer.seconds
    figures = RunFigures(
        label=label,
        wall=wall,
        floor=floor,
        all_pages=transport.requests * case.latency,
        longest_chain=longest,
        collect_cpu={k: marks["collected"][k] - marks["start"][k] for k in pids},
        tail_cpu={k: marks["end"][k] - marks["collected"][k] for k in pids},
        pages=dict(sorted(transport.by_cmdlet.items())),
        phases=phases,
        table_writes=ops["writes"],
        table_write_requests=ops["write_requests"],
        table_reads=ops["reads"],
        entities_read=ops["entities_read"],
        proposal_writes=after["writes"] - before["writes"],
        proposal_requests=(after["write_requests"] - before["write_requests"])
        + (after["reads"] - before["reads"]),
        proposals=list(summary.proposals),
        peak_rss=memory.peak,
        rss_at_start=at_start,
        peak_by_phase=memory.by_phase(
            {k: d[k] for k in ("collect", "evaluate", "record") if k in d}
        ),
        fail=summary.counts.get("fail", 0),
        changes={k: v for k, v in summary.changes.items() if v},
        alerts=dict(summary.alerts),
        joined=all(j is None or j.spoilt is None for j in joins),
    )
    print_run(figures)
    return summary, figures


def print_run(f: RunFigures) -> None:
    pages = ", ".join(f"{k} {v}" for k, v in f.pages.items())
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in f.phases.items())
    print(
        f"{f.label}: wall {f.wall:6.2f} s | floor {f.floor:.2f} s (one unsharded chain; "
        f"longest chain {f.longest_chain} pages) | "
        f"wall/floor {f.ratio:.2f} | peak RSS {f.peak_rss / MIB:.0f} MiB",
        flush=True,
    )
    by_phase = ", ".join(f"{k} {v / MIB:.0f}" for k, v in f.peak_by_phase.items())
    print(
        f"  RSS at start {f.rss_at_start / MIB:.0f} MiB; peak by phase (MiB): {by_phase} "
        "(after: proposals, alerts)"
    )
    print(f"  phases: {phases}{'' if f.joined else ' (join spoilt: evidence re-read)'}")
    print(f"  pages: {pages} | all pages x latency {f.all_pages:.2f} s")
    collect = f.phases.get("collect", 0.0)
    for label, cpu, seconds in (
        ("while collecting", f.collect_cpu, collect),
        ("after (the tail)", f.tail_cpu, f.wall - collect),
    ):
        used = ", ".join(f"{name} {value:.1f}" for name, value in cpu.items())
        print(f"  CPU s {label}: {used}, of {os.cpu_count()} cores x {seconds:.1f} s")
    print(
        f"  table writes {f.table_writes} ({f.table_write_requests} requests), reads "
        f"{f.table_reads} requests ({f.entities_read} entities) | proposal writes "
        f"{f.proposal_writes} ({f.proposal_requests} requests), proposals {len(f.proposals)}"
    )
    print(f"  fail {f.fail}, changes {f.changes}" + (f", alerts {f.alerts}" if f.alerts else ""))


def run_case(case: Case) -> dict[str, Any]:
    """The three runs of one case; the figures and the targets met (or missed)."""
    process, base_url, tenant = start_emulator(case)
    runs: list[RunFigures] = []
    try:
        with (
            azurite() as connection,
            Receiver("teams") as teams,
            httpx.Client(timeout=30) as alert_http,
        ):
            tables = connect(connection)
            store = AuditStore(tables, prefix="bench")
            # The alert path as the timer builds it (audit_from_settings): a Teams workflow
            # webhook, here a local receiver; decided against the last alerted run.
            webhook = f"{teams.url}/workflows/bench/invoke?sig=c2ln"
            alerter = run_alerter(
                Settings(teams_webhook_url=webhook), http=alert_http, ledger=store, store=store
            )
            ops = OpCounter()
            proposer = None
            if case.proposals:
                nightly = proposer_from_settings(
                    Settings(storage=connection, table_prefix="bench"), tables=tables, counter=ops
                )
                assert nightly is not None
                proposer = TimedProposer(nightly)
            print(f"{case.label}, proposals {'on' if case.proposals else 'off'}", flush=True)
            args = (case, store, base_url, tenant, proposer, ops, process.pid, alerter)
            first, figures = one_run("run 1", *args)
            runs.append(figures)
            # The timer runs one audit per invocation: nothing of a run (its summary carries
            # the whole evaluation) may stay alive into the next run's memory figure.
            del first
            if case.runs < 2:
                return _result(case, runs, {})
            states = store.mailbox_states()
            step = round(1 / case.changed)
            keys = {k: states[k].setting for k in sorted(states)[::step]}
            del states
            change_mailboxes(base_url, tenant, keys)
            print(f"changed {len(keys)} mailboxes through Set-CASMailbox", flush=True)
            second, figures = one_run("run 2", *args)
            runs.append(figures)
            changed = second.changes.get("mailboxes_changed", 0)
            del second
            third, figures = one_run("run 3 (identical)", *args)
            runs.append(figures)
            del third
    finally:
        process.terminate()
        process.wait(timeout=30)
    return _result(case, runs, {f"run 2 saw the {len(keys)} changes": changed == len(keys)})


def _result(case: Case, runs: list[RunFigures], checks: dict[str, bool]) -> dict[str, Any]:
    """The targets met (or missed) by the runs made, printed, and the figures."""
    rss_target = 250e6 if case.mailboxes <= 100_000 else 2**30
    checks = {
        "run 1 wall <= 3 x floor": runs[0].wall <= 3 * runs[0].floor,
        f"peak RSS <= {rss_target / MIB:.0f} MiB": max(r.peak_rss for r in runs) <= rss_target,
        **checks,
    }
    if len(runs) == 3:
        _, second_f, third_f = runs
        checks |= {
            "run 2 wall <= 1.3 x floor": second_f.wall <= 1.3 * second_f.floor,
            "run 2 table writes <= 500": second_f.table_writes <= 500,
        }
        if case.shards == 3 and case.org == "allows" and case.latency >= 0.3:
            checks["run 2 wall <= 0.45 x one-chain floor (3 shards)"] = (
                second_f.wall <= 0.45 * second_f.floor
            )
        if case.proposals:
            checks["run 3 (identical) proposal writes <= 300"] = third_f.proposal_writes <= 300
            checks["run 3 kept the same proposals"] = third_f.proposals == second_f.proposals
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")
    met = all(checks.values())
    print("targets met" if met else "TARGETS MISSED", flush=True)
    return {
        "case": asdict(case),
        "runs": [{**asdict(r), "ratio": r.ratio} for r in runs],
        "checks": checks,
        "met": met,
    }


# -- the matrix: every case side by side -------------------------------------------------------


def matrix(args: argparse.Namespace) -> int:
    """Each case in a process of its own (its own peak RSS), one at a time; one table."""
    cases = [
        (size, latency, org, shards)
        for size in _ints(args.sizes)
        for latency in _floats(args.latencies)
        for org in args.orgs.split(",")
        for shards in _ints(args.shards_list)
    ]
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (size, latency, org, shards) in enumerate(cases):
            out = Path(tmp) / f"case{n}.json"
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--mailboxes",
                str(size),
                "--latency",
                str(latency),
                "--org",
                org,
                "--shards",
                str(shards),
                "--json",
                str(out),
                *(["--no-proposals"] if args.no_proposals else []),
            ]
            name = f"{size:,} mailboxes, {latency * 1000:.0f} ms, org {org}, {shards} shards"
            print(f"\n######## {name}", flush=True)
            code = subprocess.run(command, check=False).returncode
            if out.exists():
                results.append(json.loads(out.read_text()))
            if code:
                failed.append(f"{size:,} / {latency * 1000:.0f} ms / {org} / {shards} shards")
    print("\n" + markdown_table(results))
    if failed:
        print("\nmissed or failed: " + "; ".join(failed))
    return 1 if failed else 0


def markdown_table(results: list[dict[str, Any]]) -> str:
    header = (
        "| mailboxes | latency | org | shards | run | wall s | floor s | wall/floor | collect s | "
        "evaluate s | record s | proposals s | table writes | table reads | proposal writes | "
        "peak RSS MiB |"
    )
    lines = [header, _rule(header)]
    for result in results:
        case = result["case"]
        for index, run in enumerate(result["runs"], start=1):
            phases = run["phases"]
            lines.append(
                "| "
                + " | ".join(
                    [
                        f"{case['mailboxes']:,}",
                        f"{case['latency'] * 1000:.0f} ms",
                        case["org"],
                        str(case.get("shards", 1)),
                        ("1 first", "2 churn 0.1%", "3 identical")[index - 1],
                        f"{run['wall']:.1f}",
                        f"{run['floor']:.2f}",
                        f"{run['ratio']:.2f}",
                        f"{phases.get('collect', 0):.1f}",
                        f"{phases.get('evaluate', 0):.1f}",
                        f"{phases.get('record', 0):.1f}",
                        f"{phases.get('proposals', 0):.1f}",
                        str(run["table_writes"]),
                        str(run["table_reads"]),
                        str(run["proposal_writes"]),
                        f"{run['peak_rss'] / MIB:.0f}",
                    ]
                )
                + " |"
            )
    return "\n".join(lines)


def _rule(header: str) -> str:
    return "|" + "---|" * (header.count("|") - 1)


def _ints(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part]


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per page")
    parser.add_argument("--changed", type=float, default=0.001, help="share changed (0.1%%)")
    parser.add_argument("--org", choices=("allows", "blocks"), default="allows")
    parser.add_argument("--no-proposals", action="store_true", help="audit without the proposer")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5,000, 10 ms pages")
    parser.add_argument(
        "--collector",
        choices=("streamed", "bytes"),
        default="streamed",
        help="streamed: judge while paging (the nightly audit); bytes: the evidence bytes "
        "judged after paging (the path before issue 17, for comparison)",
    )
    parser.add_argument(
        "--runs", type=int, choices=(1, 3), default=3, help="3 (default), or the first only"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--matrix", action="store_true", help="every case, one table at the end")
    parser.add_argument("--sizes", default="100000,1000000", help="--matrix: mailbox counts")
    parser.add_argument("--latencies", default="0.05,0.3", help="--matrix: seconds per page")
    parser.add_argument("--orgs", default="allows,blocks", help="--matrix: organisation cases")
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        help="read each listing as K -Filter chains, 3 at a time (1-16; the floor stays one "
        "unsharded chain)",
    )
    parser.add_argument("--shards-list", default="1", help="--matrix: shard counts, e.g. 1,3")
    args = parser.parse_args()
    if not 1 <= args.shards <= 16:
        parser.error("--shards must be between 1 and 16")
    if args.matrix:
        return matrix(args)
    if args.quick:
        args.mailboxes, args.latency = 5000, 0.01
    case = Case(
        mailboxes=args.mailboxes,
        latency=args.latency,
        org=args.org,
        proposals=not args.no_proposals,
        changed=args.changed,
        collector=args.collector,
        runs=args.runs,
        shards=args.shards,
    )
    result = run_case(case)
    if args.json:
        Path(args.json).write_text(json.dumps(result))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
