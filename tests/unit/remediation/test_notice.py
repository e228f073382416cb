"""The outcome notice names the tenant, uses the alerts' `[SMTP AUTH]` subject prefix and a
styled, self-contained email body; its card parses in the official renderer's terms (checked in
tests/integration/test_teams_card_renderer.py for the alert card)."""

from __future__ import annotations

from datetime import UTC, datetime

from auditor.core.proposals import Kind, Record, State
from auditor.remediation.notice import email_body, teams_message


def record() -> Record:
    now = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    return Record(
        id="rev-org-1",
        kind=Kind.REVOCATION,
        scope="organisation",
        tenant="contoso.onmicrosoft.com",
        run_id="run-1",
        created_at=now,
        expires_at=now,
        title="Disable SMTP AUTH for the organisation <b>",
        plan_hash="ab" * 32,
        state=State.APPLIED,
        etag="*",
        approver_name="Ada Approver",
        approver_oid="oid-1",
    )


def test_email_names_the_tenant_with_the_alert_prefix_and_is_a_whole_page() -> None:
    body = email_body(record(), "https://a.example/status", ("sec@contoso.com",))
    message = body["message"]
    assert message["subject"].startswith("[SMTP AUTH] contoso: remediation applied")
    html = message["body"]["content"]
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    assert "contoso.onmicrosoft.com" in html and 'style="' in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert 'href="https://a.example/status"' in html


def test_card_names_the_tenant() -> None:
    card = teams_message(record(), None)["attachments"][0]["content"]
    texts = [run["text"] for b in card["body"] for run in b["inlines"]]  # TextRuns only
    assert texts[0] == "SMTP AUTH remediation: contoso"
    assert "Tenant: contoso.onmicrosoft.com" in texts
