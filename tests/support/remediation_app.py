"""The remediation HTTP service wired to real local parts: Azurite, the Exchange emulator, and a
local JWKS endpoint whose keys sign the test's approver tokens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import httpx

from auditor.core.proposals import Record
from auditor.functions import remediation as remediation_functions
from auditor.identity.approver import ApproverAuth, JwksCache
from auditor.web import runtime as remediation_runtime
from auditor.web.api import RemediationHttp
from tests.support.approver_tokens import AUDIENCE, ROLE, TENANT, Issuer, jwks_server
from tests.support.remediation_env import Env, remediation_env

FORM_SECRET = "form-secret-for-tests-0123456789abcdef"


@dataclass
class App:
    env: Env
    issuer: Issuer
    service: RemediationHttp
    functions: dict[str, Any]
    announced: list[Record]

    def call(
        self,
        name: str,
        proposal_id: str,
        *,
        method: str = "GET",
        token: str | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        suffix: str = "",
    ) -> tuple[func.HttpResponse, str | None]:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        request = func.HttpRequest(
            method,
            f"http://127.0.0.1:7071/api/remediations/{proposal_id}{suffix}",
            headers=all_headers,
            route_params={"id": proposal_id},
            body=body,
        )
        function = self.functions[name].get_user_function()
        if name == "remediation_approve":
            slot = remediation_functions.queue_slot()
            response = function(request, slot)
            return response, slot.value
        return function(request), None


@contextmanager
def approval_app(
    azurite: str,
    app_functions: dict[str, Any],
    org_disabled: bool,
    boxes: dict[str, bool | None],
    allow: str = "",
    *,
    inline_limit: int = 10,
    easy_auth: bool = False,
) -> Iterator[App]:
    with ExitStack() as stack:
        env = stack.enter_context(remediation_env(azurite, org_disabled, boxes, allow))
        issuer = stack.enter_context(jwks_server(Issuer()))
        http = stack.enter_context(httpx.Client())
        announced: list[Record] = []
        service = RemediationHttp(
            store=env.store,
            auth=ApproverAuth(
                tenant_id=TENANT,
                audiences=(AUDIENCE,),
                role=ROLE,
                jwks=JwksCache(issuer.url, http),
                easy_auth=easy_auth,
            ),
            form_secret=FORM_SECRET,
            exchange=lambda: env.exchange,
            load_allowlist=env.allowlist,
            now=env.now,
            inline_limit=inline_limit,
            announce=announced.append,
        )
        remediation_runtime.install(service)
        try:
            yield App(env, issuer, service, app_functions, announced)
        finally:
            remediation_runtime.reset()
