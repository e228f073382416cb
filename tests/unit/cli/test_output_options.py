"""README: which commands take which `--format` and `--out` — every data command takes every
format of the findings/history/inventory reports; the remediation commands and apply-allowlist
take text and json; snapshot writes JSON. Checked against the real parser."""

from __future__ import annotations

import pytest

from auditor.cli.main import build_parser

ALL = ("text", "json", "csv", "md", "html")
DATA = {
    "evaluate": ["--snapshot", "s.json"],
    "audit": [],
    "runs": [],
    "history": ["someone@contoso.com"],
    "show": ["latest"],
    "replay": ["latest", "--allowlist", "a.csv"],
    "mailboxes": [],
    "check": ["someone@contoso.com"],
}
TEXT_JSON = {
    "apply-allowlist": ["allow.csv"],
    "remediations": [],
    "status": ["rev-mai-1"],
}


@pytest.mark.parametrize("command", sorted(DATA))
@pytest.mark.parametrize("fmt", ALL)
def test_data_commands_take_every_format_and_out(command: str, fmt: str) -> None:
    args = build_parser().parse_args([command, *DATA[command], "--format", fmt, "--out", "x"])
    assert args.format == fmt and str(args.out) == "x"


@pytest.mark.parametrize("command", sorted(TEXT_JSON))
def test_the_others_take_text_and_json(command: str) -> None:
    parser = build_parser()
    for fmt in ("text", "json"):
        assert parser.parse_args([command, *TEXT_JSON[command], "--format", fmt]).format == fmt
    with pytest.raises(SystemExit):
        parser.parse_args([command, *TEXT_JSON[command], "--format", "html"])


def test_snapshot_writes_json_with_out() -> None:
    assert str(build_parser().parse_args(["snapshot", "--out", "s.json"]).out) == "s.json"
