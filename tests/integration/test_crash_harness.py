"""The crash harness (issue 13): `python -m auditor audit` as a subprocess, against Azurite
through a fault proxy (devkit.faultproxy) and the Exchange emulator (1,500 mailboxes),
SIGKILLed at the N-th table write for 7 values of N across the phases of a run (run row
with the lease held, evidence, history, state versions, commit, alert ledger, alert
baseline; before the write is sent or after it landed); then a clean audit. After each pair:

- no run is left `running` (the dead one is `abandoned`, or finished from its commit);
- exactly one history row per real change, and no false `added`;
- every new violation alerted exactly once (a local receiver stands in for Teams) — or, when
  the kill fell after the webhook post and before the delivery was recorded, at most twice:
  delivery is at-least-once there, by design (docs/architecture.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.data.tables import TableServiceClient

from auditor.storage.audit_store import AuditStore
from devkit.emulator import Emulator
from devkit.faultproxy import FaultProxy, Plan
from devkit.receiver import Receiver, Reply
from devkit.tenantgen import generate_tenant
from tests.support.builders import EMULATOR_TOKEN

ROOT = Path(__file__).resolve().parents[2]
MAILBOXES = 1500
LEASE = 5


def table_endpoint(connection: str) -> str:
    for part in connection.split(";"):
        if part.startswith("TableEndpoint="):
            url = urlsplit(part.partition("=")[2])
            return f"{url.scheme}://{url.netloc}"
    raise AssertionError("no TableEndpoint in the Azurite connection string")


@pytest.fixture
def rig(azurite: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with (
        Emulator(generate_tenant(MAILBOXES, seed=13), token=EMULATOR_TOKEN) as emu,
        Receiver("teams", default=Reply(202)) as teams,
        FaultProxy(table_endpoint(azurite)) as proxy,
    ):
        prefix = f"crash{datetime.now(UTC):%H%M%S%f}"
        env = {
            "PATH": "/usr/bin:/bin",
            "EXO_TENANT": emu.domain,
            "EXO_BASE_URL": emu.base_url,
            "EXO_ACCESS_TOKEN": EMULATOR_TOKEN,
            "AUDITOR_STORAGE": proxy.connection_string(azurite),
            "AUDITOR_TABLE_PREFIX": prefix,
            "AUDIT_LEASE_SECONDS": str(LEASE),
            "ALERT_TEAMS_WEBHOOK_URL": f"{teams.url}/workflows/w1/invoke?sig=c2VjcmV0c2ln",
        }
        store = AuditStore(TableServiceClient.from_connection_string(azurite), prefix=prefix)
        yield {
            "emu": emu,
            "teams": teams,
            "proxy": proxy,
            "env": env,
            "store": store,
            "out": tmp_path / "findings.json",
        }


def audit(rig: dict[str, Any], plan: Plan | None = None) -> tuple[int, bool]:
    """One `audit` subprocess; (exit code or -9, whether the proxy killed it)."""
    proxy: FaultProxy = rig["proxy"]
    proxy.reset(plan)
    command = [sys.executable, "-m", "auditor", "audit", "--format", "json"]
    command += ["--out", str(rig["out"])]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=rig["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    proxy.plan.target_pid = process.pid
    _, err = process.communicate(timeout=90)
    if process.returncode not in (0, 1, -9):
        raise AssertionError(f"audit exited {process.returncode}: {err[-2000:]}")
    return process.returncode, proxy.killed


def wait_for_stale_lease(store: AuditStore) -> None:
    """A killed run's lease goes stale after AUDIT_LEASE_SECONDS: wait for it (bounded)."""
    deadline = time.monotonic() + LEASE * 3
    while time.monotonic() < deadline:
        lock = store.state.get("lock", "audit")
        if lock is None or lock["expires_at"].timestamp() < time.time() - 0.5:
            return
        time.sleep(0.25)
    raise AssertionError("the killed run's lease never went stale")


def enable(emu: Emulator, count: int, used: set[str]) -> list[str]:
    """Explicitly enable `count` mailboxes that were disabled and never touched: new fails."""
    picked = []
    for guid, record in sorted(emu.state.cas.items()):
        if guid in used or record.get("SmtpClientAuthenticationDisabled") is not True:
            continue
        record["SmtpClientAuthenticationDisabled"] = False
        used.add(guid)
        picked.append(str(record["PrimarySmtpAddress"]))
        if len(picked) == count:
            return picked
    raise AssertionError("the generated tenant has too few disabled mailboxes")


def alerts_naming(teams: Receiver, address: str, since: int) -> int:
    return sum(1 for r in teams.requests[since:] if address.lower() in r.body.decode().lower())


def test_killed_runs_leave_nothing_a_clean_run_cannot_repair(rig: dict[str, Any]) -> None:
    emu, teams, proxy, store = rig["emu"], rig["teams"], rig["proxy"], rig["store"]
    used: set[str] = set()
    assert audit(rig)[0] in (0, 1)  # the baseline
    enable(emu, 2, used)
    assert audit(rig)[0] == 1  # a probe: how many writes a run with changes makes
    log = proxy.log
    assert len(log) >= 20, log

    def first(fragment: str, method: str, after: int = 0) -> int:
        for number, verb, path, _ in log[after:]:
            if fragment in path and verb == method:
                return number
        raise AssertionError(f"no {method} {fragment} in {log}")

    manifest = first("RowKey='manifest.", "PUT")
    commit = first("PartitionKey='commit'", "PUT")
    # One kill in every phase: (write number, killed before it is sent or after it landed).
    points = [
        (first("runs", "POST"), "kill_before"),  # the run row, lease just taken
        (first("RowKey='snapshot.", "PUT"), "kill_after"),  # evidence
        (first("$batch", "POST", manifest), "kill_after"),  # history rows
        (commit - 2, "kill_before"),  # state bucket versions (lease renewal, then commit)
        (commit, "kill_after"),  # committed, run row not written: finished from the commit
        (first("RowKey='teams'", "PUT"), "kill_after"),  # the alert went out, not recorded
        (first("PartitionKey='delivered'", "PUT"), "kill_before"),  # the alert baseline
    ]
    for point, mode in points:
        addresses = enable(emu, 2, used)
        before = len(teams.requests)
        _, killed = audit(rig, Plan(**{mode: point}))
        delivered_by_dead = killed and all(alerts_naming(teams, a, before) for a in addresses)
        assert killed, (point, mode)
        wait_for_stale_lease(store)
        assert audit(rig)[0] == 1, f"clean run after a kill at write {point} ({mode})"

        runs = store.runs(limit=200)
        assert not [r.run_id for r in runs if r.status == "running"], (point, mode)
        by_address = {s.address: key for key, s in store.mailbox_states().items()}
        for address in addresses:
            changes = store.mailbox_changes(by_address[address])
            assert [c.kind for c in changes] == ["changed"], (point, mode, address, changes)
            told = alerts_naming(teams, address, before)
            if delivered_by_dead:
                assert 1 <= told <= 2, (point, mode, address, told)
            else:
                assert told == 1, (point, mode, address, told)
        assert all(r.changes.get("mailboxes_added", 0) == 0 for r in runs), (point, mode)
    statuses = {r.status for r in store.runs(limit=200)}
    assert "abandoned" in statuses and "running" not in statuses
    assert json.loads(rig["out"].read_text())  # the last clean run printed its findings
