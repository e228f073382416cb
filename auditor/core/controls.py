"""Control metadata (title, severity, rationale, fix, references), kept as data in controls.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from auditor.core.model import Severity

__all__ = ["Control", "control", "all_controls"]


@dataclass(frozen=True, slots=True)
class Control:
    id: str
    title: str
    severity: Severity
    rationale: str
    fix: str
    references: tuple[str, ...]


@cache
def all_controls() -> dict[str, Control]:
    text = resources.files(__package__).joinpath("controls.json").read_text(encoding="utf-8")
    return {
        key: Control(
            id=key,
            title=value["title"],
            severity=Severity(value["severity"]),
            rationale=value["rationale"],
            fix=value["fix"],
            references=tuple(value["references"]),
        )
        for key, value in json.loads(text).items()
    }


def control(control_id: str) -> Control:
    return all_controls()[control_id]
