"""`python -m auditor evaluate` through a real subprocess: exit codes, formats, errors."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.support.builders import MISSING, cas, cli, document, mbx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def write(tmp_path: Path, doc: Any) -> str:
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_exit_codes(tmp_path: Path) -> None:
    compliant = write(tmp_path, document(org=True, cas_records=[cas(1, True)], mailboxes=[mbx(1)]))
    assert cli("evaluate", "--snapshot", compliant).returncode == 0
    failing = write(tmp_path, document(org=False, cas_records=[cas(1, None)], mailboxes=[mbx(1)]))
    assert cli("evaluate", "--snapshot", failing).returncode == 1
    unknown = write(tmp_path, document(org=True, cas_records=[cas(1, MISSING)], mailboxes=[mbx(1)]))
    assert cli("evaluate", "--snapshot", unknown).returncode == 3


def test_bad_input_is_exit_2_naming_file_and_line(tmp_path: Path) -> None:
    snap = write(tmp_path, document(org=True, cas_records=[cas(1, True)]))
    allow = tmp_path / "allow.txt"
    allow.write_text("ok@contoso.com\n*@contoso.com\n")
    result = cli("evaluate", "--snapshot", snap, "--allowlist", str(allow))
    assert result.returncode == 2
    assert f"{allow}:2" in result.stderr
    assert result.stdout == ""
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = cli("evaluate", "--snapshot", str(broken))
    assert result.returncode == 2 and str(broken) in result.stderr
    result = cli("evaluate", "--snapshot", snap, "--today", "27/11/2026")
    assert result.returncode == 2 and "--today" in result.stderr


def run_example(fmt: str) -> str:
    result = cli(
        "evaluate",
        "--snapshot",
        str(EXAMPLES / "snapshot.json"),
        "--allowlist",
        str(EXAMPLES / "allowlist.csv"),
        "--today",
        "2026-11-27",
        "--format",
        fmt,
    )
    assert result.returncode == 1, result.stderr
    return result.stdout


def test_json_is_the_findings_document() -> None:
    doc = json.loads(run_example("json"))
    assert doc["schema"] == "smtp-auth-findings/1"
    assert doc["tenant"] == "contoso.onmicrosoft.com"
    assert doc["org"] == {"setting": False, "smtp_auth": "enabled", "status": "fail"}
    assert doc["summary"]["mailboxes"] == 9
    statuses = [f["status"] for f in doc["findings"]]
    assert statuses == sorted(statuses, key=["fail", "unknown", "warning", "exempt", "pass"].index)
    shared = next(f for f in doc["findings"] if f["subject"] == "finance@contoso.com")
    assert shared["mailbox"]["recipient_type_details"] == "SharedMailbox"
    assert shared["mailbox"]["setting"] is False and shared["mailbox"]["effective"] == "enabled"
    assert shared["enabled_via"] == "explicit"
    assert "CIS Microsoft 365 Foundations 6.5.4" in shared["references"]
    org = next(f for f in doc["findings"] if f["control"] == "SMTPAUTH-ORG")
    assert "CISA SCuBA MS.EXO.5.1v1" in org["references"]
    exempt = next(f for f in doc["findings"] if f["status"] == "exempt")
    assert exempt["allowlist_entry"]["owner"]


def test_csv_reads_back() -> None:
    rows = list(csv.DictReader(io.StringIO(run_example("csv"))))
    assert len(rows) == 13
    assert {r["status"] for r in rows} == {"fail", "unknown", "warning", "exempt"}
    crm = next(r for r in rows if r["subject"] == "crm@contoso.com")
    assert crm["setting"] == "false" and "expired on 2026-11-15" in crm["reason"]


class Checker(HTMLParser):
    VOID = frozenset({"meta", "br", "link", "img", "input", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and "//" in value:
                self.external.append(value)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> in {self.stack}"
        self.stack.pop()


def test_html_is_well_formed_and_self_contained() -> None:
    page = run_example("html")
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == [] and checker.external == []
    assert "<script src" not in page  # the small sort/search script is inline
    assert '<meta name="viewport"' in page and "prefers-color-scheme:dark" in page
    assert "finance@contoso.com" in page


def test_markdown_and_text() -> None:
    md = run_example("md")
    assert md.startswith("# SMTP AUTH audit")
    assert "| fail | SMTPAUTH-MAILBOX | kim.khan@contoso.com |" in md
    text = run_example("text")
    assert "Organisation SMTP AUTH: enabled" in text
    # The organisation root cause and the allowlist's problems come before mailbox rows.
    assert text.index("ROOT CAUSE") < text.index("Allowlist problems") < text.index("FAIL ")
    assert text.index("Explicitly enabled") < text.index("Exempt by the allowlist")
    assert "Result: NOT COMPLIANT" in text


@pytest.mark.parametrize("fmt", ["text", "json", "csv", "md", "html"])
def test_out_file(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "reports" / f"report.{fmt}"
    result = cli(
        "evaluate",
        "--snapshot",
        str(EXAMPLES / "snapshot.json"),
        "--format",
        fmt,
        "--out",
        str(out),
    )
    assert result.returncode == 1 and result.stdout == ""
    assert out.read_text(encoding="utf-8").strip()
