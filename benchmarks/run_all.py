"""Run every benchmark in this folder (`make bench`), one after the other, and print figures.

Each benchmark is a standalone script `bench_*.py`; pass `--quick` to run them at a tenth of
their full size (useful to check they work; the targets apply to the full size).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = {
    "bench_evaluate.py": ["--mailboxes", "100000"],
    "bench_collect.py": ["--mailboxes", "10000"],
    "bench_audit.py": ["--mailboxes", "10000"],
}


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n######## {script.name}", flush=True)
        args = QUICK.get(script.name, []) if quick else []
        if subprocess.run([sys.executable, str(script), *args], check=False).returncode:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
