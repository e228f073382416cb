"""The command line in a terminal: lines fit COLUMNS, a closed pipe exits quietly, `--as`
never sends a file name as a token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.builders import cas, document, mbx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run(*args: str, columns: int = 80, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": str(columns)},
    )


def big_snapshot(tmp_path: Path, n: int = 3000) -> str:
    doc = document(
        org=False,
        cas_records=[cas(i, None) for i in range(n)],
        mailboxes=[mbx(i, "SharedMailbox" if i % 3 else "UserMailbox") for i in range(n)],
    )
    path = tmp_path / "big.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


def test_text_output_fits_80_columns(tmp_path: Path) -> None:
    snapshot = str(EXAMPLES / "snapshot.json")
    allow = str(EXAMPLES / "allowlist.csv")
    for args in (
        ("evaluate", "--snapshot", snapshot, "--allowlist", allow, "--today", "2026-11-26"),
        ("mailboxes", "--snapshot", snapshot, "--allowlist", allow),
        ("evaluate", "--snapshot", big_snapshot(tmp_path)),
    ):
        done = run(*args)
        assert done.returncode in (0, 1, 3), done.stderr
        lines = done.stdout.splitlines()
        assert lines and max(len(line) for line in lines) <= 80, args
        assert "None" not in done.stdout


def test_the_root_cause_leads_the_text_report(tmp_path: Path) -> None:
    done = run("evaluate", "--snapshot", big_snapshot(tmp_path))
    text = done.stdout
    assert "1 change fixes 3000 mailboxes" in text
    assert text.index("ROOT CAUSE") < text.index("FAIL ")
    assert "Set-TransportConfig -SmtpClientAuthenticationDisabled $true" in text


def test_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    snapshot = big_snapshot(tmp_path)
    # Like `... | head -2`: read two lines, then close the reading end.
    process = subprocess.Popen(
        [sys.executable, "-m", "auditor", "evaluate", "--snapshot", snapshot, "--format", "csv"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    process.stdout.readline()
    process.stdout.close()
    err = process.stderr.read().decode()
    code = process.wait(timeout=120)
    assert code == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err and err == ""


def test_as_with_a_missing_file_is_exit_2_naming_it(tmp_path: Path) -> None:
    for value in (str(tmp_path / "missing-file"), "token.jwt", "@nothere"):
        done = run("approve", "rev-mai-0123", "--as", value)
        assert done.returncode == 2, (value, done.stdout, done.stderr)
        assert value.lstrip("@") in done.stderr and "no such token file" in done.stderr


def test_as_reads_an_existing_file(tmp_path: Path) -> None:
    # The token is read from the file; the command then fails later, on the missing storage
    # setting, not on the token.
    token = tmp_path / "missing-file"
    token.write_text("not-a-real-token\n", encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    done = subprocess.run(
        [sys.executable, "-m", "auditor", "approve", "rev-mai-0123", "--as", str(token)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert "no such token file" not in done.stderr
