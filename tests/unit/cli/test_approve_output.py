"""`approve` without --plan-hash on a large plan: counts and the first 20 targets, `--all` for
every one; never "None" for a target without a display name."""

from __future__ import annotations

from typing import Any

import pytest

from auditor.cli.commands.remediations import SHOWN_TARGETS, _show_plan


def plan_document(n: int) -> dict[str, Any]:
    targets = [
        {
            "key": f"00000000-0000-4000-8000-{i:012d}",
            "role": "pin" if i < 6 else "revoke",
            "before": None,
            "after": True,
            "display": None if i == 0 else f"user{i}@contoso.com",
        }
        for i in range(n)
    ]
    return {
        "title": "Disable SMTP AUTH for the organisation",
        "id": "rev-org-1",
        "kind": "revoke",
        "state": "proposed",
        "expires_at": "2026-12-03",
        "targets": targets,
        "plan_hash": "ab" * 32,
    }


def test_summary_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    _show_plan(plan_document(2658))
    out = capsys.readouterr().out
    assert "2658 target(s): 6 pin, 2652 revoke" in out
    assert "and 2638 more (--all lists every target)" in out
    assert out.count("@contoso.com") == SHOWN_TARGETS - 1  # the first one has no display name
    assert "None" not in out and "00000000-0000-4000-8000-000000000000" in out
    assert len(out.splitlines()) < 30


def test_all_lists_every_target(capsys: pytest.CaptureFixture[str]) -> None:
    _show_plan(plan_document(100), show_all=True)
    out = capsys.readouterr().out
    assert out.count("@contoso.com") == 99 and "more" not in out
