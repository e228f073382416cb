"""The confirmation page lists who will break before the changes (issue 15)."""

from __future__ import annotations

from auditor.core.proposals import Record, Role, Target
from auditor.web.pages import confirmation_page, dry_run_page
from tests.support.proposal_records import NOW, proposed

BREAKS = "will break: last used 2026-11-30 14:02 UTC, from 203.0.113.7 (Scanner)"


def target(key: str, display: str, reason: str) -> Target:
    return Target(key, Role.REVOKE, display, False, True, 1, reason, guid=key)


def record() -> Record:
    return proposed(
        (
            target("a", "quiet@contoso.com", "explicitly enabled, not allowlisted"),
            target("b", "scanner@contoso.com", BREAKS),
        ),
        title="Disable SMTP AUTH on 2 mailboxes",
    )


def test_the_confirmation_page_lists_who_will_break_before_the_changes() -> None:
    page = confirmation_page(
        record(),
        approve_url="/a",
        reject_url="/r",
        status_url="/s",
        form_token="t",
        approver="Ada",
        now=NOW,
    )
    assert 'id="will-break"' in page
    section = page.split('id="will-break"')[1].split("</ul>")[0]
    assert "scanner@contoso.com" in section and "203.0.113.7" in section
    assert "quiet@contoso.com" not in section
    assert page.index('id="will-break"') < page.index('id="approve-form"')


def test_no_break_section_without_usage() -> None:
    plain = record()
    quiet = Record(
        **{
            **{f: getattr(plain, f) for f in plain.__dataclass_fields__},
            "targets": plain.targets[:1],
        }
    )
    page = confirmation_page(
        quiet, approve_url="/a", reject_url="/r", status_url="/s", form_token="t", approver="Ada"
    )
    assert 'id="will-break"' not in page


def test_the_dry_run_lists_who_will_break_above_its_table() -> None:
    lines = [
        {"key": "a", "display": "quiet@contoso.com", "action": "apply", "detail": "x"},
        {"key": "b", "display": "scanner@contoso.com", "action": "apply", "detail": "y"},
    ]
    breaking = [{"key": "b", "display": "scanner@contoso.com", "detail": BREAKS}]
    page = dry_run_page(record(), lines, back="/p", breaking=breaking)
    section = page.split('id="will-break"')[1].split("</ul>")[0]
    assert "scanner@contoso.com" in section and "203.0.113.7" in section
    assert "quiet@contoso.com" not in section
    assert page.index('id="will-break"') < page.index('id="result"')
    assert 'id="will-break"' not in dry_run_page(record(), lines, back="/p")
