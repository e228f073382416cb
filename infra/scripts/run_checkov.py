"""Run checkov on infra/ and fail closed.

checkov exits 0 when a Bicep file does not parse (it only counts a "parsing error"), and when it
finds nothing to check. This wrapper fails on failed checks, on any parsing error, and when no
resource was checked, and prints one summary line. Run with the .venv-checkov interpreter
(`make checkov`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    checkov = Path(sys.executable).with_name("checkov")
    command = [str(checkov), "--config-file", "infra/.checkov.yaml", "--output", "json"]
    done = subprocess.run(  # noqa: S603 - fixed command, no shell
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        print("checkov: no JSON report (see above)")
        return 2
    reports = report if isinstance(report, list) else [report]
    passed = failed = skipped = parse_errors = resources = 0
    for item in reports:
        summary = item.get("summary", {})
        passed += summary.get("passed", 0)
        failed += summary.get("failed", 0)
        skipped += summary.get("skipped", 0)
        parse_errors += summary.get("parsing_errors", 0)
        resources += summary.get("resource_count", 0)
        for check in item.get("results", {}).get("failed_checks", []):
            lines = check.get("file_line_range", [])
            print(f"FAILED {check['check_id']} {check['resource']} {check['file_path']}:{lines}")
    print(
        f"checkov: {passed} passed, {failed} failed, {skipped} skipped, "
        f"{parse_errors} parsing errors, {resources} resources"
    )
    if parse_errors:
        print("checkov: a Bicep file did not parse, so it was not checked")
    if resources == 0:
        print("checkov: no resource was checked")
    return 1 if failed or parse_errors or resources == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
