"""Benchmark of the evaluation core (issues 2, 17): read a snapshot file and evaluate it.

Generates a snapshot of N mailboxes (default 1,000,000) and a 1,000-entry allowlist in a child
process, then, in a fresh child process, reads the snapshot and evaluates it, printing wall
time, microseconds per mailbox, mailboxes/s and peak memory for each phase, for an
organisation that blocks SMTP AUTH and one that allows it (every inheriting mailbox fails).

Targets: evaluate >= 1,000,000 mailboxes/s in both; peak memory of the measuring process
(reading + evaluating) <= 1 GiB at 1,000,000 mailboxes, <= 250 MB at 100,000 (scaled in
between). Reading has no target: its figure is compared with the decoding floor (~6 us).

    .venv/bin/python benchmarks/bench_evaluate.py [--mailboxes N] [--org both] [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(count: int, folder: Path, org_disabled: bool) -> None:
    from devkit.tenantgen import generate_tenant

    tenant = generate_tenant(count, seed=7, org_disabled=org_disabled)
    cas = list(tenant.cas.values())
    mailboxes = list(tenant.mailboxes.values())
    doc = {
        "schema": "smtp-auth-snapshot/1",
        "tenant": tenant.domain,
        "collected_at": "2026-11-27T02:00:00Z",
        "transport_config": {"SmtpClientAuthenticationDisabled": tenant.org_disabled},
        "cas_mailboxes": cas,
        "mailboxes": mailboxes,
        "errors": [],
    }
    with (folder / "snapshot.json").open("w", encoding="utf-8") as handle:
        json.dump(doc, handle, separators=(",", ":"))
    rng = random.Random(11)
    lines = ["Identity,Owner,Expires"]
    for index, record in enumerate(rng.sample(mailboxes, 950)):
        kind = ("PrimarySmtpAddress", "UserPrincipalName", "Alias")[index % 3]
        identity = record[kind]
        expires = "2027-06-30" if index % 4 else ""
        lines.append(f"{identity},owner{index}@contoso.com,{expires}")
    lines += [f"retired-device-{n}@contoso.com,ops@contoso.com," for n in range(50)]
    (folder / "allowlist.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def memory_target_mib(count: int) -> float:
    """1 GiB at 1,000,000 mailboxes, 250 MB at 100,000, linear between (and beyond)."""
    low, high = 250e6 / 2**20, 1024.0
    return low + (high - low) * (count - 100_000) / 900_000 if count > 100_000 else low


def measure(folder: Path) -> bool:
    from auditor.core.allowlist import read_allowlist
    from auditor.core.policy import evaluate
    from auditor.core.snapshot import read_snapshot

    size = (folder / "snapshot.json").stat().st_size
    start = time.perf_counter()
    snapshot = read_snapshot(folder / "snapshot.json")
    allowlist = read_allowlist(folder / "allowlist.csv")
    read_s = time.perf_counter() - start
    read_peak = peak_mib()
    count = len(snapshot.mailboxes or ())
    start = time.perf_counter()
    evaluation = evaluate(snapshot, allowlist, date(2026, 11, 27), evaluated_at=datetime.now(UTC))
    eval_s = time.perf_counter() - start
    sys.stdout.flush()
    print(
        f"snapshot file:   {size / 2**20:,.0f} MiB, {count:,} mailboxes, "
        f"{len(allowlist.entries):,} allowlist entries"
    )
    print(
        f"read snapshot:   {read_s:6.2f} s  {count / read_s:12,.0f} mailboxes/s  "
        f"peak {read_peak:,.0f} MiB"
    )
    print(
        f"evaluate:        {eval_s:6.2f} s  {count / eval_s:12,.0f} mailboxes/s  "
        f"({len(evaluation.findings):,} findings)"
    )
    target = memory_target_mib(count)
    print(
        f"read per mailbox: {read_s / count * 1e6:.1f} us (decoding floor ~6 us); "
        f"peak memory (whole measuring process): {peak_mib():,.0f} MiB, "
        f"target <= {target:,.0f} MiB"
    )
    c = evaluation.counts
    print(
        f"result: fail {c['fail']:,}, exempt {c['exempt']:,}, warning {c['warning']:,}, "
        f"unknown {c['unknown']:,}"
    )
    checks = {
        "evaluate >= 1,000,000 mailboxes/s": count / eval_s >= 1e6,
        f"peak memory <= {target:,.0f} MiB": peak_mib() <= target,
    }
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")
    return all(checks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1_000_000)
    parser.add_argument(
        "--org",
        choices=("blocks", "allows", "both"),
        default="both",
        help="organisation posture: 'blocks' (recommended: ~2%% of mailboxes fail), "
        "'allows' (worst case: every inheriting mailbox fails), or both (default)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20,000 mailboxes")
    parser.add_argument("--phase", choices=("generate", "measure"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.mailboxes = 20_000
    if args.phase == "generate":
        generate(args.mailboxes, args.folder, org_disabled=args.org == "blocks")
        return 0
    if args.phase == "measure":
        return 0 if measure(args.folder) else 1
    met = True
    for posture in ("blocks", "allows") if args.org == "both" else (args.org,):
        print(f"\n== organisation {posture} SMTP AUTH ==", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--phase",
                    "generate",
                    "--folder",
                    tmp,
                    "--mailboxes",
                    str(args.mailboxes),
                    "--org",
                    posture,
                ],
                check=True,
            )
            print(
                f"generated {args.mailboxes:,} mailboxes in {time.perf_counter() - start:.1f} s",
                flush=True,
            )
            measured = subprocess.run(
                [sys.executable, __file__, "--phase", "measure", "--folder", tmp], check=False
            )
            met = met and measured.returncode == 0
    print("targets met" if met else "TARGETS MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
