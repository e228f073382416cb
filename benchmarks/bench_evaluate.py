"""Benchmark of the evaluation core (issue 2): read a snapshot file and evaluate it.

Generates a snapshot of N mailboxes (default 1,000,000) and a 1,000-entry allowlist in a child
process, then, in a fresh child process, reads the snapshot and evaluates it, printing wall
time, mailboxes/s and peak memory for each phase. Targets: evaluate >= 1,000,000 mailboxes/s;
peak memory of the measuring process < 1.5 GB.

    .venv/bin/python benchmarks/bench_evaluate.py [--mailboxes N]
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


def measure(folder: Path) -> None:
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
    print(f"peak memory (whole measuring process): {peak_mib():,.0f} MiB")
    c = evaluation.counts
    print(
        f"result: fail {c['fail']:,}, exempt {c['exempt']:,}, warning {c['warning']:,}, "
        f"unknown {c['unknown']:,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1_000_000)
    parser.add_argument(
        "--org",
        choices=("blocks", "allows", "both"),
        default="both",
        help="organisation posture: 'blocks' (recommended: ~2%% of mailboxes fail), "
        "'allows' (worst case: every inheriting mailbox fails), or both (default)",
    )
    parser.add_argument("--phase", choices=("generate", "measure"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "generate":
        generate(args.mailboxes, args.folder, org_disabled=args.org == "blocks")
        return
    if args.phase == "measure":
        measure(args.folder)
        return
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
            subprocess.run(
                [sys.executable, __file__, "--phase", "measure", "--folder", tmp], check=True
            )


if __name__ == "__main__":
    main()
