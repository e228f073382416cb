"""The Teams card of a demo-sized run, parsed by the official Adaptive Cards renderer (the pinned
`adaptivecards` npm package, through tests/support/adaptive_card_check.js): no parse or
validation event, facts as a FactSet, the root cause first, every proposal a button."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from auditor.alerts.decide import Alert, decide
from auditor.alerts.teams import build_message
from tests.support.report_fixtures import demo_evaluation

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "tests" / "support" / "adaptive_card_check.js"
BASE = "https://auditor.contoso.example/api/remediations"


def parsed(message: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "adaptivecards").is_dir():
        pytest.fail("node or the adaptivecards package is missing: run `make setup`")
    done = subprocess.run(
        [node, str(CHECK)],
        input=json.dumps(message),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def baseline(report_url: str | None) -> Alert:
    alert = decide(
        demo_evaluation(inherited=2652, explicit=4),
        None,
        run_id="20261126T020000Z-abc",
        complete=True,
        errors=(),
        expiring_days=14,
        report_url=report_url,
        remediation_links=[
            ("rev-mai-0a1b", f"{BASE}/rev-mai-0a1b"),
            ("grant-all-77", f"{BASE}/grant-all-77"),
            ("rev-org-9f9f", f"{BASE}/rev-org-9f9f"),
        ],
    )
    assert alert is not None
    return alert


def test_the_renderer_parses_the_card_without_warnings() -> None:
    result = parsed(build_message(baseline("https://reports.contoso.example/runs/1")))
    assert result["version"] == "1.5"
    assert result["events"] == []
    facts = dict(result["facts"])
    assert facts["Tenant"] == "contoso.onmicrosoft.com"
    assert facts["Run"] == "20261126T020000Z-abc"
    # The root cause comes before every list, with the one command that fixes it.
    texts: list[str] = result["texts"]
    root = next(i for i, t in enumerate(texts) if t.startswith("Root cause"))
    assert "1 change fixes 2652 mailboxes" in texts[root]
    assert texts[root + 1].startswith("Set-TransportConfig -SmtpClientAuthenticationDisabled $true")
    assert root < next(i for i, t in enumerate(texts) if t.startswith("Violations"))
    # Buttons: the organisation fix first, every proposal, the report last.
    assert [a["title"] for a in result["actions"]] == [
        "Review the organisation fix",
        "Review the mailbox revocations",
        "Review the allowlist grants",
        "Open the report",
    ]
    assert {a["type"] for a in result["actions"]} == {"Action.OpenUrl"}


def test_expired_exception_and_explicit_enables_are_shown_before_inherited() -> None:
    result = parsed(build_message(baseline(None)))
    texts: list[str] = result["texts"]
    expired = texts.index("Expired exceptions (1)")
    assert texts[expired + 1].startswith("user2@contoso.com")
    violations = next(i for i, t in enumerate(texts) if t.startswith("Violations"))
    # The organisation first, then the explicit enables, then the inherited ones.
    assert texts[violations + 1].startswith("organisation")
    assert (
        "enabled explicit" in texts[violations + 2] and "enabled explicit" in texts[violations + 3]
    )
    assert "enabled inherited" in texts[violations + 4]
    # Labels and values are never glued ("Tenant:contoso"): runs are kept apart.
    assert not any(":contoso" in t for t in texts)
    # Without ALERT_REPORT_BASE_URL, "N more" names the command that lists them.
    more = [t for t in texts if t.startswith("… and ")]
    assert more and all("python -m auditor show 20261126T020000Z-abc" in t for t in more)
    assert "see the full report" not in " ".join(texts)


def test_the_outcome_notice_card_parses_without_warnings() -> None:
    from datetime import UTC, datetime

    from auditor.core.proposals import Kind, Record, State
    from auditor.remediation.notice import teams_message

    now = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    record = Record(
        id="rev-org-1",
        kind=Kind.REVOCATION,
        scope="organisation",
        tenant="contoso.onmicrosoft.com",
        run_id="run-1",
        created_at=now,
        expires_at=now,
        title="Disable SMTP AUTH for the organisation",
        plan_hash="ab" * 32,
        state=State.APPLIED,
        etag="*",
    )
    result = parsed(teams_message(record, f"{BASE}/rev-org-1/status"))
    assert result["events"] == []
    assert "SMTP AUTH remediation: contoso" in result["texts"]
