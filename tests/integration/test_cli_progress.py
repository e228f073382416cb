"""Progress on standard error for long reads: on a terminal only, never with --quiet or into a
pipe, and never on standard output."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from devkit.emulator import Emulator
from devkit.tenantgen import generate_tenant
from tests.support.builders import EMULATOR_TOKEN

ROOT = Path(__file__).resolve().parents[2]


def snapshot(emu: Emulator, out: Path, *extra: str, tty: bool) -> tuple[int, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "EXO_TENANT": emu.domain,
        "EXO_BASE_URL": emu.base_url,
        "EXO_ACCESS_TOKEN": EMULATOR_TOKEN,
    }
    command = [sys.executable, "-m", "auditor", "snapshot", "--out", str(out), *extra]
    if not tty:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        return done.returncode, done.stderr
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=follower
        )
        os.close(follower)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=120)
    finally:
        os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_only(tmp_path: Path) -> None:
    tenant = generate_tenant(600, seed=7, org_disabled=False)
    with Emulator(tenant, token=EMULATOR_TOKEN, latency=0.5) as emu:
        code, err = snapshot(emu, tmp_path / "a.json", tty=True)
        assert code == 0
        assert f"reading {emu.domain}: " in err and " s; " in err
        code, err = snapshot(emu, tmp_path / "b.json", "--quiet", tty=True)
        assert code == 0 and "reading" not in err
        code, err = snapshot(emu, tmp_path / "c.json", tty=False)
        assert code == 0 and "reading" not in err
