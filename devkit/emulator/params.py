"""Cmdlet parameters and request options as the emulated endpoint reads them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from devkit.emulator.behaviour import ABSENT as _ABSENT
from devkit.emulator.errors import CmdletError, bad_parameter

__all__ = [
    "DEFAULT_RESULT_SIZE",
    "MAX_PAGE_SIZE",
    "check_bool",
    "only",
    "page_size",
    "result_size",
    "select_of",
]

DEFAULT_RESULT_SIZE = 1000
MAX_PAGE_SIZE = 1000
_PREFER = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)


def only(parameters: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    lowered = {a.lower() for a in allowed}
    for key in parameters:
        if key.lower() not in lowered:
            raise bad_parameter(key)


def check_bool(name: str, value: Any, *, nullable: bool) -> None:
    if isinstance(value, bool) or (value is None and nullable):
        return
    raise CmdletError(
        400,
        "BadRequest",
        f"Cannot process argument transformation on parameter '{name}'. Cannot convert value "
        f"'{'$null' if value is None else value}' to type 'System.Boolean'.",
        "System.Management.Automation.ParameterBindingArgumentTransformationException",
    )


def select_of(args: Mapping[str, list[str]]) -> tuple[str, ...] | None:
    values = args.get("$select")
    if not values:
        return None
    names = tuple(n.strip() for v in values for n in v.split(",") if n.strip())
    return names or None


def page_size(headers: Mapping[str, str]) -> int:
    match = _PREFER.search(headers.get("prefer", ""))
    if match is None:
        return MAX_PAGE_SIZE
    return max(1, min(MAX_PAGE_SIZE, int(match.group(1))))


def result_size(value: Any) -> int | None:
    """None for Unlimited; the 1000 default when absent."""
    if value is _ABSENT:
        return DEFAULT_RESULT_SIZE
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1:
        raise CmdletError(
            400,
            "BadRequest",
            f"Cannot process argument transformation on parameter 'ResultSize'. Cannot convert "
            f"value '{value}' to type 'Microsoft.Exchange.Data.Unlimited`1[System.UInt32]'.",
            "System.Management.Automation.ParameterBindingArgumentTransformationException",
        )
    return number
