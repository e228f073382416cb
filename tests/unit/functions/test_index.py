"""function_app indexes like the Functions host would: every binding matches a parameter."""

from __future__ import annotations

import inspect
import json
from typing import Any

import azure.functions as func
import pytest

from auditor.app.settings import SETTINGS


def test_functions_index_and_bindings_match_parameters(app_functions: dict[str, Any]) -> None:
    assert app_functions, "no functions indexed"
    for name, function in app_functions.items():
        parameters = set(inspect.signature(function.get_user_function()).parameters)
        bound = {b.name for b in function.get_bindings() if b.name != "$return"}
        assert bound == parameters, name
        assert function.get_trigger() is not None, name


def _health(app_functions: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = func.HttpRequest(method="GET", url="/api/health", body=b"")
    response = app_functions["health"].get_user_function()(request)
    return response.status_code, json.loads(response.get_body())


def test_health_ok_when_settings_parse(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for setting in SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    monkeypatch.setenv("EXO_TENANT", "contoso.onmicrosoft.com")
    monkeypatch.setenv("AUDITOR_STORAGE", "UseDevelopmentStorage=true")
    status, body = _health(app_functions)
    assert (status, body["status"]) == (200, "ok")
    assert set(body) == {"status", "version"}


def test_health_with_no_settings_names_every_missing_required_one(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for setting in SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    status, body = _health(app_functions)
    assert (status, body["status"]) == (500, "misconfigured")
    assert body["missing"] == ["EXO_TENANT", "AUDITOR_STORAGE"]
    monkeypatch.setenv("EXO_TENANT", "contoso.onmicrosoft.com")
    status, body = _health(app_functions)
    assert (status, body["missing"]) == (500, ["AUDITOR_STORAGE"])


def test_health_names_a_bad_setting_without_its_value(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDITOR_EXPIRING_DAYS", "soon-ish-secret-looking-value")
    status, body = _health(app_functions)
    assert (status, body["status"], body["setting"]) == (
        500,
        "misconfigured",
        "AUDITOR_EXPIRING_DAYS",
    )
    assert "soon-ish" not in json.dumps(body)
