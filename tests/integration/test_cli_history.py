"""`audit`, `runs`, `history`, `show`, `replay` through `auditor.cli.main`, against the Exchange
emulator and Azurite, configured by environment settings as in production."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auditor.cli.main import main
from auditor.reports.findings import FORMATS
from tests.support.builders import EMULATOR_TOKEN


@pytest.fixture
def env(azurite: str, exchange_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    prefix = f"cli{datetime.now(UTC):%H%M%S%f}"
    settings = {
        "EXO_TENANT": exchange_emulator.domain,
        "EXO_BASE_URL": exchange_emulator.base_url,
        "EXO_ACCESS_TOKEN": EMULATOR_TOKEN,
        "AUDITOR_STORAGE": azurite,
        "AUDITOR_TABLE_PREFIX": prefix,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AUDITOR_ALLOWLIST", raising=False)
    return exchange_emulator


def out(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_audit_runs_history_show_replay(
    env: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = env
    guids = sorted(emu.state.cas)
    target = guids[5]
    record = emu.state.mailboxes[target]
    address, upn, alias = record["PrimarySmtpAddress"], record["UserPrincipalName"], record["Alias"]
    allowlist = tmp_path / "allow.txt"
    allowlist.write_text(f"{address}\n")
    monkeypatch.setenv("AUDITOR_ALLOWLIST", str(allowlist))
    emu.state.cas[target]["SmtpClientAuthenticationDisabled"] = False

    code, first_out, err = out(capsys, "audit", "--format", "json")
    assert code == 1  # the generated tenant has violations
    assert "baseline" in err
    first = json.loads(first_out)
    mine = [f for f in first["findings"] if f["subject"] == address]
    assert [f["status"] for f in mine] == ["exempt"]

    emu.state.cas[target]["SmtpClientAuthenticationDisabled"] = True
    code, _, err = out(capsys, "audit")
    assert code == 1 and "1 changed" in err

    code, text, _ = out(capsys, "runs", "--format", "json")
    runs = json.loads(text)["runs"]
    assert code == 0 and [r["status"] for r in runs] == ["complete", "complete"]
    newest, oldest = runs[0]["run_id"], runs[1]["run_id"]
    assert runs[0]["changes"]["mailboxes_changed"] == 1

    # Any identity the allowlist accepts names the mailbox.
    for identity in (address, upn, alias.upper(), target, "{" + target + "}"):
        code, text, _ = out(capsys, "history", identity, "--format", "json")
        assert code == 0, identity
        history = json.loads(text)
        assert history["mailbox"]["key"] == target
        assert [(e["run_id"], e["setting"], e["effective"]) for e in history["entries"]] == [
            (newest, "true", "disabled"),
            (oldest, "false", "enabled"),
        ]
    code, text, _ = out(capsys, "history", address, "--as-of", oldest, "--format", "json")
    assert json.loads(text)["as_of"]["entry"]["setting"] == "false"

    code, _, err = out(capsys, "history", "nobody@nowhere.example")
    assert code == 2 and "no recorded mailbox matches" in err

    # show: the findings the first run had, from its stored evidence and allowlist.
    code, text, _ = out(capsys, "show", oldest, "--format", "json")
    shown = json.loads(text)
    assert code == 1
    assert [(f["id"], f["status"]) for f in shown["findings"]] == [
        (f["id"], f["status"]) for f in first["findings"]
    ]
    # The HTML run report charts the runs up to the one shown: both for the newest, none
    # (one run is no trend) for the oldest.
    page = out(capsys, "show", "latest", "--format", "html")[1]
    assert "Trend over 2 runs" in page and page.count("<polyline") == 4
    assert 'id="trend"' not in out(capsys, "show", oldest, "--format", "html")[1]
    code, _, err = out(capsys, "show", "20200101T000000000Z-abc")
    assert code == 2 and "no run" in err

    # replay: the same evidence against an empty allowlist: the exemption becomes a fail.
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody\n")
    code, text, _ = out(capsys, "replay", oldest, "--allowlist", str(empty), "--format", "json")
    replayed = [f for f in json.loads(text)["findings"] if f["subject"] == address]
    assert [f["status"] for f in replayed] == ["fail"]
    assert len(json.loads(out(capsys, "runs", "--format", "json")[1])["runs"]) == 2  # no new run

    # Every command prints every format; `show` exits as the run's findings say (1: a fail).
    latest = json.loads(out(capsys, "show", "latest", "--format", "json")[1])
    statuses = {f["status"] for f in latest["findings"]}
    show_code = 1 if "fail" in statuses else 3 if "unknown" in statuses else 0
    assert show_code == 1  # the seeded tenant has unallowlisted explicit enables
    expected_codes = {"runs": 0, "history": 0, "show": show_code}
    for fmt in FORMATS:
        for argv in (["runs"], ["history", address], ["show", "latest"]):
            code, text, _ = out(capsys, *argv, "--format", fmt)
            assert code == expected_codes[argv[0]] and text.strip(), (argv, fmt, code)
            if fmt == "csv":
                assert len(list(csv.reader(io.StringIO(text)))) >= 2
            if fmt == "html":
                assert text.startswith("<!DOCTYPE html>")


def test_audit_exit_codes_for_partial_and_bad_configuration(
    env: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for guid in env.state.cas:  # make the tenant compliant: organisation blocks, nobody opts in
        env.state.cas[guid]["SmtpClientAuthenticationDisabled"] = None
    env.state.org_disabled = True
    code, _, _ = out(capsys, "audit")
    assert code == 0
    env.faults.add("deny", cmdlet="Get-CASMailbox", times=None)
    code, _, err = out(capsys, "audit")
    assert code == 3 and "could not read Get-CASMailbox" in err
    code, text, _ = out(capsys, "runs")
    assert "incomplete" in text and "Get-CASMailbox" in text
    monkeypatch.setenv("AUDITOR_TABLE_PREFIX", "bad-prefix")
    code, _, err = out(capsys, "runs")
    assert code == 2 and "AUDITOR_TABLE_PREFIX" in err
