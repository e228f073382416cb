"""The demo (`make demo`) runs end to end in CI, and stops its services on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> set[int]:
    """Direct children of a process, from /proc (Linux)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def test_demo_runs_two_audits_and_writes_reports(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "devkit.demo", "--out", str(out), "--mailboxes", "400"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    assert "First audit" in text and "Second audit" in text
    assert "What changed between the two audits" in text
    assert "added     new.printer@contoso.com" in text
    assert "removed   room-" in text
    assert "finding new      SMTPAUTH-MAILBOX new.printer@contoso.com: fail" in text
    # Usage evidence and attribution (issue 15): a stale exception, an unapproved user, who
    # breaks at the organisation switch, and who changed a mailbox by hand.
    assert "WARNING  SMTPAUTH-EXCEPTION-STALE" in text
    assert "FAIL     SMTPAUTH-USAGE-UNAPPROVED" in text and "(Old Scanner)" in text
    assert "will break: last used" in text
    assert "changed by alice@contoso.com at " in (out / "usage-history.txt").read_text()
    assert json.loads((out / "findings.json").read_text())["readiness"]["state"] == "collected"
    # A proposal approved from the CLI, executed, and verified by the second audit.
    assert "$ python -m auditor approve rev-mai-" in text
    assert "executed: applied" in text
    verified = next(line for line in text.splitlines() if "verified by the audit" in line)
    done, total = verified.split(": ", 1)[1].split(" mailboxes")[0].split(" of the ")
    assert done == total and int(total) > 0
    # The alerts the two runs (and the remediation outcome) sent, as the receivers recorded them.
    alerts = out / "alerts"
    teams = sorted(alerts.glob("teams-*.json"))
    assert len(teams) == 3
    card = json.loads(teams[0].read_text())["attachments"][0]["content"]
    assert card["version"] == "1.5"
    assert any("/api/remediations/rev-" in a["url"] for a in card["actions"])
    assert len(sorted(alerts.glob("email-*.html"))) == 3
    findings = json.loads((out / "findings.json").read_text())
    assert findings["schema"] == "smtp-auth-findings/1"
    assert findings["summary"]["mailboxes"] == 400
    assert (out / "findings.html").read_text().startswith("<!DOCTYPE html>")
    assert (out / "findings.csv").read_text().startswith("id,control,status")
    assert (
        len(
            [
                line
                for line in (out / "runs.txt").read_text().splitlines()
                if line[:1].isdigit() and "complete" in line  # run rows, not the summary line
            ]
        )
        == 2
    )

    again = subprocess.run(  # re-runnable: fresh services, the folder is replaced
        [sys.executable, "-m", "devkit.demo", "--out", str(out), "--mailboxes", "100"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "findings.json").read_text())["summary"]["mailboxes"] == 100


def test_demo_stops_its_services_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devkit.demo",
            "--out",
            str(tmp_path / "d"),
            "--mailboxes",
            "20000",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        for line in process.stdout:
            if "are running" in line or time.monotonic() > deadline:
                break
        children = _children(process.pid)
        assert children, "Azurite should be running as a child of the demo"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130, err[-2000:]
        assert "interrupted: services stopped" in err
        time.sleep(0.5)
        assert not [
            pid
            for pid in children
            if Path(f"/proc/{pid}").exists()
            and "azurite" in Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")
        ]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
