"""Run every benchmark in this folder (`make bench`), one after the other, and print figures.

Each benchmark is a standalone script `bench_*.py`, one per concern (evaluation core,
collection, nightly audit); this runs its cases one at a time (never two at once: the figures
are wall times). The audit runs for an organisation that allows SMTP AUTH (where tenants start:
most mailboxes fail, proposals are large) and one that blocks it, at 50 ms and 300 ms pages.

    python benchmarks/run_all.py            # the targets' sizes (100,000 mailboxes)
    python benchmarks/run_all.py --quick    # smoke runs (CI-sized; targets not meaningful)
    python benchmarks/run_all.py --big      # also 1,000,000 mailboxes (long: tens of minutes)
    python benchmarks/run_all.py --matrix   # only the audit matrix, one markdown table at the end

`--matrix` is `bench_audit.py --matrix`: 100,000 and 1,000,000 mailboxes x 50 and 300 ms per
page x organisation allows and blocks, three runs each (first, 0.1% churn, identical), each
case in a process of its own; further arguments (`--sizes 100000`, `--latencies 0.05`,
`--orgs allows`) narrow it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (script, arguments) per case, at the targets' sizes.
CASES: list[tuple[str, list[str]]] = [
    ("bench_evaluate.py", ["--mailboxes", "100000"]),
    ("bench_collect.py", []),
    ("bench_audit.py", ["--org", "allows", "--latency", "0.05"]),
    ("bench_audit.py", ["--org", "blocks", "--latency", "0.05"]),
    ("bench_audit.py", ["--org", "allows", "--latency", "0.3"]),
    ("bench_audit.py", ["--org", "blocks", "--latency", "0.3"]),
    ("bench_record.py", ["--mailboxes", "100000"]),
]
QUICK: list[tuple[str, list[str]]] = [
    ("bench_evaluate.py", ["--quick"]),
    ("bench_collect.py", ["--mailboxes", "10000"]),
    ("bench_audit.py", ["--quick", "--org", "allows"]),
    ("bench_audit.py", ["--quick", "--org", "blocks"]),
    ("bench_record.py", ["--mailboxes", "10000"]),
]
BIG: list[tuple[str, list[str]]] = [
    ("bench_evaluate.py", ["--mailboxes", "1000000"]),
    ("bench_audit.py", ["--mailboxes", "1000000", "--org", "blocks"]),
    ("bench_record.py", ["--mailboxes", "1000000"]),
]


def main() -> int:
    argv = sys.argv[1:]
    if "--matrix" in argv:
        audit = [sys.executable, str(HERE / "bench_audit.py"), *argv]
        return subprocess.run(audit, check=False).returncode
    cases = QUICK if "--quick" in argv else CASES + (BIG if "--big" in argv else [])
    failed = []
    for script, args in cases:
        label = " ".join([script, *args])
        print(f"\n######## {label}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *args], check=False).returncode:
            failed.append(label)
    if failed:
        print("\nmissed or failed:\n  " + "\n  ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
