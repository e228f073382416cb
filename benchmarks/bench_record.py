"""Benchmark of recording alone (issue 17, item 4): what `AuditStore.record_run` writes.

No Exchange, no paging: a synthetic tenant of N mailboxes (`devkit.tenantgen`, default
100,000) is turned into two snapshot documents, the second with a share of the mailboxes
(default 0.1%) changed. Each is read (`core.snapshot`) and evaluated (`core.policy`) outside
the measurement, then recorded into an in-memory Azurite (`devkit.devservices.azurite`): run 1
is the baseline, run 2 the steady state. For each run it prints the wall time of
`record_run`, the peak resident memory of this process while recording (and what it held
before), and the write requests per table, split into single-entity requests and batch
transactions, with the entities and bytes they carried.

What counts as a table write: a request (`OpCounter.write_requests`). A batch transaction
(up to 100 entities of one partition, up to 4 MiB) is one request, however many entities it
holds; an upsert, insert, replace or delete of one entity is one request. Entities written
(`OpCounter.writes`) are printed next to them.

Target (issue 17): run 2 at 0.1% churn <= 1,000 write requests at 1,000,000 mailboxes (and
few at 100,000). Evidence (the raw snapshot document, compressed, `evidence` table) grows
with the tenant, not the churn, and is printed on its own line.

    .venv/bin/python benchmarks/bench_record.py [--mailboxes N] [--churn 0.001] [--org allows]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor.core.model import Allowlist  # noqa: E402
from auditor.core.policy import evaluate  # noqa: E402
from auditor.core.snapshot import parse_snapshot  # noqa: E402
from auditor.storage.audit_store import AuditStore  # noqa: E402
from auditor.storage.connect import connect  # noqa: E402
from devkit.devservices import azurite  # noqa: E402
from devkit.tenantgen import generate_tenant  # noqa: E402

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
PREFIX = "bench"


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Peak:
    """The highest resident set of this process, sampled every 10 ms while active."""

    def __init__(self) -> None:
        self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss())

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, rss())


def documents(count: int, churn: float, org_disabled: bool, folder: Path) -> tuple[Path, Path, int]:
    """Two snapshot documents on disk: the tenant, and the tenant with every
    round(1/churn)-th mailbox's setting changed. Returns their paths and the changes."""
    tenant = generate_tenant(count, seed=7, org_disabled=org_disabled)

    def write(name: str, when: datetime) -> Path:
        doc = {
            "schema": "smtp-auth-snapshot/1",
            "tenant": tenant.domain,
            "collected_at": when.isoformat(),
            "transport_config": {"SmtpClientAuthenticationDisabled": tenant.org_disabled},
            "cas_mailboxes": list(tenant.cas.values()),
            "mailboxes": list(tenant.mailboxes.values()),
            "errors": [],
        }
        path = folder / name
        path.write_bytes(json.dumps(doc, separators=(",", ":")).encode("utf-8"))
        return path

    first = write("run1.json", T0)
    step = max(1, round(1 / churn))
    changed = 0
    for record in list(tenant.cas.values())[::step]:
        current = record["SmtpClientAuthenticationDisabled"]
        record["SmtpClientAuthenticationDisabled"] = current is not True  # true -> false, else true
        changed += 1
    second = write("run2.json", T0 + timedelta(days=1))
    return first, second, changed


def one_run(label: str, store: AuditStore, path: Path, now: datetime) -> dict[str, Any]:
    raw = path.read_bytes()
    snapshot = parse_snapshot(raw, source=path.name)
    evaluation = evaluate(snapshot, Allowlist(), now.date(), evaluated_at=now)
    gc.collect()
    before_ops = store.counter.snapshot()
    before_detail = store.counter.detail()
    held = rss()
    handle = store.begin_run(tenant=snapshot.tenant, now=now)
    try:
        with Peak() as memory:
            started = time.perf_counter()
            result = store.record_run(
                handle,
                snapshot=snapshot,
                evaluation=evaluation,
                evidence=raw,
                allowlist=b"",
                allowlist_source="<bench>",
                today=now.date(),
                expiring_days=14,
                durations={},
                finished_at=now + timedelta(seconds=1),
            )
            wall = time.perf_counter() - started
    finally:
        store.release(handle)
    after_ops = store.counter.snapshot()
    detail = store.counter.detail()
    tables: dict[str, dict[str, int]] = {}
    for name, tally in detail.items():
        base = before_detail.get(name, {})
        delta = {k: v - base.get(k, 0) for k, v in tally.items()}
        if any(delta.values()):
            tables[name.removeprefix(PREFIX)] = delta
    ops = {k: after_ops[k] - before_ops[k] for k in after_ops}
    state_tables = {k: v for k, v in tables.items() if k != "evidence"}
    figures = {
        "label": label,
        "wall": wall,
        "held": held,
        "peak": memory.peak,
        "ops": ops,
        "tables": tables,
        "requests_without_evidence": sum(t["single"] + t["batch"] for t in state_tables.values()),
        "changes": dict(result.run.changes),
        "mailbox_changes": len(result.mailbox_changes),
        "finding_events": len(result.finding_events),
    }
    print(
        f"{label}: record {wall:6.2f} s | write requests {ops['write_requests']} "
        f"({ops['writes']} entities) | reads {ops['reads']} requests "
        f"({ops['entities_read']} entities) | RSS before {held / 2**20:.0f} MiB, "
        f"peak {memory.peak / 2**20:.0f} MiB"
    )
    print(
        f"  {len(result.mailbox_changes)} mailbox changes, {len(result.finding_events)} "
        f"finding events, {len(result.new_findings)} new findings"
    )
    for name, t in tables.items():
        print(
            f"  {name:9s} requests {t['single'] + t['batch']:6d} (single {t['single']:6d}, "
            f"batch {t['batch']:5d}) | entities {t['entities']:7d} | "
            f"{t['bytes'] / 2**20:8.2f} MiB"
        )
    print(f"  write requests but evidence: {figures['requests_without_evidence']}", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--churn", type=float, default=0.001, help="share changed (0.1%%)")
    parser.add_argument(
        "--org",
        choices=("allows", "blocks"),
        default="allows",
        help="allows: a finding per mailbox, so a changed setting is a finding event too",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    print(
        f"mailboxes {args.mailboxes:,}, churn {args.churn:.3%}, organisation {args.org} SMTP AUTH",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-record-") as folder:
        started = time.perf_counter()
        first, second, changed = documents(
            args.mailboxes, args.churn, args.org == "blocks", Path(folder)
        )
        gc.collect()
        print(f"documents generated in {time.perf_counter() - started:.1f} s; {changed} changed")
        with azurite() as connection:
            store = AuditStore(connect(connection), prefix=PREFIX, lock_ttl=timedelta(minutes=30))
            store.ensure_tables()
            run1 = one_run("run 1 (baseline)", store, first, T0)
            run2 = one_run("run 2 (steady state)", store, second, T0 + timedelta(days=1))
    requests = run2["ops"]["write_requests"]
    target = 1000 if args.mailboxes >= 1_000_000 else max(100, args.mailboxes // 1000)
    checks = {
        f"run 2 saw the {changed} changes": run2["changes"].get("mailboxes_changed") == changed,
        f"run 2 write requests <= {target}": requests <= target,
    }
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")
    if args.json:
        args.json.write_text(json.dumps({"run1": run1, "run2": run2}, indent=1, default=str))
    met = all(checks.values())
    print("targets met" if met else "TARGETS MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
