"""README: the demo keeps its storage under its output folder and prints the exact commands and
environment that read it again; SIGTERM stops every service it started (Azurite included)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.test_demo import _children

ROOT = Path(__file__).resolve().parents[2]


def test_the_printed_environment_reads_the_recorded_runs_again(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "devkit.demo", "--out", str(out), "--mailboxes", "120"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    start = next(line for line in lines if "azurite-table" in line).strip().removesuffix(" &")
    export = next(line for line in lines if line.strip().startswith("export ")).strip()
    assert (out / "storage").is_dir() and any((out / "storage").iterdir())
    # The second run's alert says why the approved revocation's mailboxes are resolved.
    second = sorted((out / "alerts").glob("teams-*.json"))[-1].read_text(encoding="utf-8")
    assert "Fixed by an approved remediation (rev-" in second
    env_words = shlex.split(export.removeprefix("export "))
    env = dict(word.split("=", 1) for word in env_words)
    assert set(env) >= {"AUDITOR_STORAGE", "EXO_TENANT", "AUDITOR_TABLE_PREFIX"}
    words = shlex.split(start)
    assert words[0] == "AZURITE_ACCEPT_EULA=true"
    azurite = subprocess.Popen(
        words[1:],
        cwd=tmp_path,
        env={**os.environ, "AZURITE_ACCEPT_EULA": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = words[words.index("--tablePort") + 1]
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/devstoreaccount1/Tables", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "Azurite did not start"
                time.sleep(0.2)
        shown = subprocess.run(
            [sys.executable, "-m", "auditor", "show", "latest"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={"PATH": "/usr/bin:/bin", **env},
        )
        assert shown.returncode == 1, shown.stderr
        assert "ROOT CAUSE" in shown.stdout and "Mailboxes: 120" in shown.stdout
        runs = subprocess.run(
            [sys.executable, "-m", "auditor", "runs"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={"PATH": "/usr/bin:/bin", **env},
        )
        assert runs.returncode == 0 and runs.stdout.count("complete") >= 2, runs.stdout
    finally:
        azurite.terminate()
        azurite.wait(timeout=30)


def test_sigterm_stops_the_services(tmp_path: Path) -> None:
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
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 143, err[-2000:]
        assert "terminated: services stopped" in err
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
