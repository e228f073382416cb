"""Reasons name the allowlist file, never its absolute local path (README)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from auditor.core.allowlist import parse_allowlist
from auditor.core.policy import evaluate
from tests.support.builders import cas, mbx, snapshot


def test_reasons_show_the_file_name_only() -> None:
    allow = parse_allowlist(
        b"Identity,Expires\nuser1@contoso.com,2026-01-01\nuser1@contoso.com,2026-01-02\n",
        source="/home/alice/secret-project/allowlists/smtp-allow.csv",
        csv_format=True,
    )
    evaluation = evaluate(
        snapshot(org=True, cas_records=[cas(1, False)], mailboxes=[mbx(1)]),
        allow,
        date(2026, 11, 26),
        evaluated_at=datetime(2026, 11, 26, tzinfo=UTC),
    )
    texts = [f.reason for f in evaluation.findings] + list(evaluation.warnings)
    assert any("smtp-allow.csv:" in t for t in texts)
    assert not any("/home/alice" in t for t in texts)
    windows = parse_allowlist(b"user1@contoso.com\n", source=r"C:\ops\allow.txt")
    assert windows.entries[0].where == "allow.txt:1"
