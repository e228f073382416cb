"""function_app indexes like the Functions host would: every binding matches a parameter."""

from __future__ import annotations

import inspect
import json
from typing import Any

import azure.functions as func


def test_functions_index_and_bindings_match_parameters(app_functions: dict[str, Any]) -> None:
    assert app_functions, "no functions indexed"
    for name, function in app_functions.items():
        parameters = set(inspect.signature(function.get_user_function()).parameters)
        bound = {b.name for b in function.get_bindings() if b.name != "$return"}
        assert bound == parameters, name
        assert function.get_trigger() is not None, name


def test_health_reports_ok_without_secrets(app_functions: dict[str, Any]) -> None:
    request = func.HttpRequest(method="GET", url="/api/health", body=b"")
    response = app_functions["health"].get_user_function()(request)
    body = json.loads(response.get_body())
    assert set(body) <= {"status", "version", "setting"}
    assert response.status_code == (200 if body["status"] == "ok" else 500)
