"""USAGE_EVIDENCE and USAGE_LOOKBACK_DAYS: off and 30 days unless set; bad values name the
variable."""

from __future__ import annotations

import pytest

from auditor.app.settings import Settings
from auditor.app.wiring import change_collector, usage_collector
from auditor.core.errors import ConfigError


def test_defaults_are_off_and_thirty_days() -> None:
    settings = Settings.from_env({})
    assert settings.usage_evidence is False and settings.usage_lookback_days == 30
    with usage_collector(settings) as usage, change_collector(settings) as changes:
        assert usage is None and changes is None


def test_values_parse_and_are_bounded() -> None:
    settings = Settings.from_env({"USAGE_EVIDENCE": "true", "USAGE_LOOKBACK_DAYS": "14"})
    assert settings.usage_evidence is True and settings.usage_lookback_days == 14
    for value in ("0", "31", "x"):
        with pytest.raises(ConfigError, match="USAGE_LOOKBACK_DAYS"):
            Settings.from_env({"USAGE_LOOKBACK_DAYS": value})
    with pytest.raises(ConfigError, match="USAGE_EVIDENCE"):
        Settings.from_env({"USAGE_EVIDENCE": "maybe"})


def test_on_builds_a_sign_in_collector_with_the_graph_stand_in_token() -> None:
    settings = Settings.from_env(
        {
            "USAGE_EVIDENCE": "true",
            "GRAPH_BASE_URL": "http://127.0.0.1:9",
            "GRAPH_ACCESS_TOKEN": "local",
        }
    )
    with usage_collector(settings) as usage:
        assert usage is not None
