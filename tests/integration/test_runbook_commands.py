"""`mailboxes` and `check`: the runbook's procedures, over a snapshot file (subprocess)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.support.builders import cas, cli, document, mbx

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = str(ROOT / "examples" / "snapshot.json")
ALLOWLIST = str(ROOT / "examples" / "allowlist.csv")


def listing(*args: str) -> dict[str, object]:
    result = cli(
        "mailboxes",
        "--snapshot",
        SNAPSHOT,
        "--allowlist",
        ALLOWLIST,
        "--today",
        "2026-11-27",
        "--format",
        "json",
        *args,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def addresses(doc: dict[str, object]) -> set[str]:
    return {str(m["mailbox"]) for m in doc["mailboxes"]}  # type: ignore[attr-defined,index]


def test_runbook_counts_beside_effective_counts() -> None:
    doc = listing()
    assert doc["counts"] == {
        "mailboxes": 9,
        "setting_disabled": 2,
        "setting_enabled": 4,
        "setting_inherit": 2,
        "setting_missing": 1,
        "effective_enabled": 6,
        "effective_disabled": 2,
        "effective_unknown": 1,
        "inherit_enabled": 2,
    }


def test_filters() -> None:
    assert addresses(listing("--setting", "inherit")) == {
        "erp@contoso.com",
        "alex.smith@contoso.com",
    }
    assert addresses(listing("--setting", "disabled")) == {
        "boardroom@contoso.com",
        "pat.jones@contoso.com",
    }
    assert addresses(listing("--effective", "unknown")) == {"eva.silva@contoso.com"}
    assert addresses(listing("--type", "sharedmailbox", "--effective", "enabled")) == {
        "finance@contoso.com"
    }
    rows = listing("--setting", "enabled")["mailboxes"]
    status = {r["mailbox"]: r["allowlist"] for r in rows}  # type: ignore[attr-defined]
    assert status["scanner.floor2@contoso.com"] == "allowlisted"
    assert status["crm@contoso.com"] == "expired"
    assert status["kim.khan@contoso.com"] is None


@pytest.mark.parametrize("fmt", ["text", "csv", "md", "html"])
def test_every_format(fmt: str) -> None:
    result = cli("mailboxes", "--snapshot", SNAPSHOT, "--setting", "inherit", "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert "alex.smith@contoso.com" in result.stdout
    assert "pat.jones@contoso.com" not in result.stdout
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert [r["effective"] for r in rows] == ["enabled", "enabled"]
    if fmt == "text":
        assert "inheriting (null) 2" in result.stdout
        assert "inheriting and enabled by the organisation: 2" in result.stdout


@pytest.mark.parametrize(
    "identity",
    [
        "alex.smith@contoso.com",  # primary address = UPN
        "ASMITH@contoso.com",  # secondary proxy address
        "6f1c1b0e-3c5a-4a57-9d35-0b6b1d3a1003",  # Guid
        "alex.smith",  # alias
    ],
)
def test_check_by_any_identity(identity: str) -> None:
    result = cli(
        "check", identity, "--snapshot", SNAPSHOT, "--allowlist", ALLOWLIST, "--format", "json"
    )
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["mailbox"]["guid"] == "6f1c1b0e-3c5a-4a57-9d35-0b6b1d3a1003"
    assert (doc["raw_value"], doc["org_value"], doc["effective"]) == (None, False, "enabled")
    assert doc["enabled_via"] == "inherited"
    assert doc["verdict"] == "fail" and "inheritance" in doc["reason"]


def test_check_upn_and_allowlist_entry_with_owner() -> None:
    result = cli(
        "check",
        "scanner.floor2@contoso.onmicrosoft.com",
        "--snapshot",
        SNAPSHOT,
        "--allowlist",
        ALLOWLIST,
        "--today",
        "2026-11-27",
    )
    assert result.returncode == 0, result.stderr
    assert "allowlisted at" in result.stdout
    assert "owner facilities@contoso.com, expires 2027-06-30" in result.stdout
    assert "EXEMPT" in result.stdout


def test_check_unknown_identity_lists_candidates() -> None:
    result = cli("check", "alex", "--snapshot", SNAPSHOT)
    assert result.returncode == 2
    assert "matches no mailbox" in result.stderr and "alex.smith@contoso.com" in result.stderr


def test_check_ambiguous_identity_lists_the_mailboxes(tmp_path: Path) -> None:
    doc = document(
        org=True,
        cas_records=[cas(1, True, Name="printer"), cas(2, False, Name="printer")],
        mailboxes=[mbx(1), mbx(2)],
    )
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    result = cli("check", "Printer", "--snapshot", str(path))
    assert result.returncode == 2
    assert "matches 2 mailboxes" in result.stderr
    assert "user1@contoso.com" in result.stderr and "user2@contoso.com" in result.stderr


def test_sources_are_exclusive_and_latest_needs_storage() -> None:
    result = cli("mailboxes")
    assert result.returncode == 2 and "AUDITOR_STORAGE" in result.stderr
    result = cli("mailboxes", "--snapshot", SNAPSHOT, "--live")
    assert result.returncode == 2
