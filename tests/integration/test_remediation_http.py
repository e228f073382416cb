"""The remediation HTTP functions through `get_user_function()` with real `func.HttpRequest`s."""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlencode

import pytest

from auditor.core.proposals import State
from auditor.functions import remediation as remediation_functions
from tests.support.approver_tokens import OTHER_TENANT, new_key
from tests.support.remediation_app import App, approval_app


def body(response: Any) -> Any:
    return json.loads(response.get_body())


def approve_json(plan_hash: str, **extra: Any) -> bytes:
    return json.dumps({"plan_hash": plan_hash, **extra}).encode()


JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_every_remediation_function_is_indexed(app_functions: dict[str, Any]) -> None:
    for name in (
        "remediation_page",
        "remediation_status",
        "remediation_approve",
        "remediation_reject",
        "remediation_execute",
    ):
        assert name in app_functions
    bindings = {b.type for b in app_functions["remediation_approve"].get_bindings()}
    assert "queue" in bindings


def test_get_page_shows_the_plan_and_changes_nothing(
    azurite: str, app_functions: dict[str, Any]
) -> None:
    with approval_app(azurite, app_functions, True, {"a": False, "b": True}) as app:
        proposal = app.env.proposals()["mailboxes"]
        for _ in range(3):  # link scanners and previews open it repeatedly
            response, queued = app.call("remediation_page", proposal.id, token=app.issuer.token())
            assert response.status_code == 200
            assert queued is None
        page = response.get_body().decode()
        assert proposal.plan_hash in page and "a@contoso.com" in page
        assert "<script" not in page and "http://" not in page.split("action=")[0]
        assert "Content-Security-Policy" in response.headers
        assert app.env.store.get(proposal.id).state is State.PROPOSED
        assert not [r for r in app.env.emulator.requests if r.cmdlet.startswith("Set-")]
        assert [e.event for e in app.env.store.trail(proposal.id)] == ["proposed"]


@pytest.mark.parametrize(
    "make_token",
    [
        lambda app: None,
        lambda app: app.issuer.token(roles=["Auditor.Read"]),
        lambda app: app.issuer.token(tid=OTHER_TENANT),
        lambda app: app.issuer.token(lifetime=-3600),
        lambda app: app.issuer.token(key=new_key()),
        lambda app: app.issuer.token(aud="api://another-app"),
    ],
    ids=["unauthenticated", "wrong-role", "wrong-tenant", "expired", "forged", "wrong-audience"],
)
def test_bad_tokens_are_refused_everywhere(
    azurite: str, app_functions: dict[str, Any], make_token: Any
) -> None:
    with approval_app(azurite, app_functions, True, {"a": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        token = make_token(app)
        for name, method, payload in (
            ("remediation_page", "GET", b""),
            ("remediation_status", "GET", b""),
            ("remediation_approve", "POST", approve_json(proposal.plan_hash)),
            ("remediation_reject", "POST", b"{}"),
        ):
            response, queued = app.call(
                name, proposal.id, method=method, token=token, body=payload, headers=JSON
            )
            assert response.status_code in (401, 403), (name, response.get_body())
            assert queued is None
        assert app.env.store.get(proposal.id).state is State.PROPOSED
        assert app.env.setting("a") is False


def test_function_key_alone_is_not_an_identity(azurite: str, app_functions: dict[str, Any]) -> None:
    with approval_app(azurite, app_functions, True, {"a": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        response, _ = app.call(
            "remediation_approve",
            proposal.id,
            method="POST",
            body=approve_json(proposal.plan_hash),
            headers={**JSON, "x-functions-key": "the-function-key"},
        )
        assert response.status_code == 401
        assert "WWW-Authenticate" in response.headers


def test_approve_inline_then_replay_is_refused(azurite: str, app_functions: dict[str, Any]) -> None:
    with approval_app(azurite, app_functions, True, {"a": False, "b": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        token = app.issuer.token()
        response, queued = app.call(
            "remediation_approve",
            proposal.id,
            method="POST",
            token=token,
            body=approve_json(proposal.plan_hash),
            headers=JSON,
        )
        assert response.status_code == 200, response.get_body()
        assert queued is None
        document = body(response)
        assert document["state"] == "applied"
        assert document["approved_by"]["name"] == "Ada Approver"
        assert app.env.setting("a") is None
        replay, _ = app.call(
            "remediation_approve",
            proposal.id,
            method="POST",
            token=token,
            body=approve_json(proposal.plan_hash),
            headers=JSON,
        )
        assert replay.status_code == 409
        assert body(replay)["error"] == "already_used"
        status, _ = app.call("remediation_status", proposal.id, token=token, suffix="/status")
        record = body(status)
        assert record["state"] == "applied"
        assert {t["result"] for t in record["targets"]} == {"applied"}
        assert [e["event"] for e in record["trail"]].count("approved") == 1
        assert [r.state for r in app.announced] == [State.APPLIED]


def test_large_plans_are_queued_and_the_queue_function_executes_once(
    azurite: str, app_functions: dict[str, Any]
) -> None:
    with approval_app(
        azurite, app_functions, True, {"a": False, "b": False}, inline_limit=1
    ) as app:
        proposal = app.env.proposals()["mailboxes"]
        response, queued = app.call(
            "remediation_approve",
            proposal.id,
            method="POST",
            token=app.issuer.token(),
            body=approve_json(proposal.plan_hash),
            headers=JSON,
        )
        assert response.status_code == 202
        assert response.headers["Location"].endswith(f"/api/remediations/{proposal.id}/status")
        assert queued is not None and json.loads(queued) == {"id": proposal.id}
        assert app.env.setting("a") is False  # nothing changed yet

        execute = app_functions["remediation_execute"].get_user_function()
        execute(remediation_functions.build_queue_message(queued))
        writes = sum(1 for r in app.env.emulator.requests if r.cmdlet == "Set-CASMailbox")
        execute(remediation_functions.build_queue_message(queued))  # redelivered
        assert sum(1 for r in app.env.emulator.requests if r.cmdlet == "Set-CASMailbox") == writes
        assert app.env.store.get(proposal.id).state is State.APPLIED
        assert app.env.setting("a") is None and app.env.setting("b") is None


def test_concurrent_approvals_apply_once(azurite: str, app_functions: dict[str, Any]) -> None:
    with approval_app(azurite, app_functions, True, {"a": False, "b": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        token = app.issuer.token()
        statuses: list[int] = []
        barrier = threading.Barrier(5)

        def approve() -> None:
            barrier.wait(timeout=10)
            response, _ = app.call(
                "remediation_approve",
                proposal.id,
                method="POST",
                token=token,
                body=approve_json(proposal.plan_hash),
                headers=JSON,
            )
            statuses.append(response.status_code)

        threads = [threading.Thread(target=approve) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(statuses) == [200, 409, 409, 409, 409]
        assert sum(1 for r in app.env.emulator.requests if r.cmdlet == "Set-CASMailbox") == 2


def test_tampered_plan_hash_is_refused(azurite: str, app_functions: dict[str, Any]) -> None:
    with approval_app(azurite, app_functions, True, {"a": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        response, _ = app.call(
            "remediation_approve",
            proposal.id,
            method="POST",
            token=app.issuer.token(),
            body=approve_json("f" * 64),
            headers=JSON,
        )
        assert response.status_code == 412
        assert body(response)["error"] == "plan_changed"
        assert app.env.store.get(proposal.id).state is State.PROPOSED


def test_subset_approval(azurite: str, app_functions: dict[str, Any]) -> None:
    with approval_app(azurite, app_functions, True, {"a": False, "b": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        first = proposal.targets[0]
        response, _ = app.call(
            "remediation_approve",
            proposal.id,
            method="POST",
            token=app.issuer.token(),
            body=approve_json(proposal.plan_hash, targets=[first.key]),
            headers=JSON,
        )
        assert response.status_code == 200, response.get_body()
        results = {t["key"]: t["result"] for t in body(response)["targets"]}
        assert results[first.key] == "applied"
        assert list(results.values()).count("not_selected") == 1


def test_dry_run_changes_nothing(azurite: str, app_functions: dict[str, Any]) -> None:
    with approval_app(azurite, app_functions, True, {"a": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        response, queued = app.call(
            "remediation_approve",
            proposal.id,
            method="POST",
            token=app.issuer.token(),
            body=approve_json(proposal.plan_hash, dry_run=True),
            headers=JSON,
        )
        assert response.status_code == 200 and queued is None
        assert body(response)["targets"][0]["action"] == "apply"
        assert app.env.store.get(proposal.id).state is State.PROPOSED
        assert app.env.setting("a") is False


def form(app: App, proposal_id: str, fields: dict[str, Any]) -> Any:
    response, _ = app.call(
        "remediation_approve",
        proposal_id,
        method="POST",
        token=app.issuer.token(),
        body=urlencode(fields, doseq=True).encode(),
        headers=FORM,
        suffix="/approve",
    )
    return response


def test_form_needs_an_anti_forgery_token_bound_to_the_approver(
    azurite: str, app_functions: dict[str, Any]
) -> None:
    with approval_app(azurite, app_functions, True, {"a": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        base = {"plan_hash": proposal.plan_hash, "target": [proposal.targets[0].key], "form": "1"}
        assert form(app, proposal.id, base).status_code == 403
        other = app.issuer.token(oid="cccccccc-0000-0000-0000-000000000003")
        page, _ = app.call("remediation_page", proposal.id, token=other)
        text = page.get_body().decode()
        csrf = text.split("name='csrf' value='")[1].split("'")[0]
        # Minted for another approver: refused for Ada.
        assert form(app, proposal.id, {**base, "csrf": csrf}).status_code == 403
        page, _ = app.call("remediation_page", proposal.id, token=app.issuer.token())
        csrf = page.get_body().decode().split("name='csrf' value='")[1].split("'")[0]
        response = form(app, proposal.id, {**base, "csrf": csrf})
        assert response.status_code == 200, response.get_body()
        assert app.env.store.get(proposal.id).state is State.APPLIED


def test_reject(azurite: str, app_functions: dict[str, Any]) -> None:
    with approval_app(azurite, app_functions, True, {"a": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        token = app.issuer.token()
        response, _ = app.call(
            "remediation_reject",
            proposal.id,
            method="POST",
            token=token,
            body=json.dumps({"reason": "change freeze"}).encode(),
            headers=JSON,
        )
        assert response.status_code == 200
        assert body(response)["state"] == "rejected"
        again, _ = app.call(
            "remediation_approve",
            proposal.id,
            method="POST",
            token=token,
            body=approve_json(proposal.plan_hash),
            headers=JSON,
        )
        assert again.status_code == 410
        assert app.env.setting("a") is False


def test_unknown_proposal_is_404(azurite: str, app_functions: dict[str, Any]) -> None:
    with approval_app(azurite, app_functions, True, {"a": False}) as app:
        response, _ = app.call("remediation_status", "rev-mai-nope", token=app.issuer.token())
        assert response.status_code == 404


def test_easy_auth_principal_needs_the_form_token(
    azurite: str, app_functions: dict[str, Any]
) -> None:
    import base64

    from tests.support.approver_tokens import ROLE, TENANT

    claims = [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "oid-7"},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": TENANT},
        {"typ": "name", "val": "Grace"},
        {"typ": "roles", "val": ROLE},
    ]
    header = base64.b64encode(
        json.dumps({"auth_typ": "aad", "claims": claims, "role_typ": "roles"}).encode()
    ).decode()
    principal = {"X-MS-CLIENT-PRINCIPAL": header}
    with approval_app(azurite, app_functions, True, {"a": False}, easy_auth=True) as app:
        proposal = app.env.proposals()["mailboxes"]
        payload = {"plan_hash": proposal.plan_hash}
        refused, _ = app.call(
            "remediation_approve",
            proposal.id,
            method="POST",
            body=json.dumps(payload).encode(),
            headers={**JSON, **principal},
        )
        assert refused.status_code == 403  # a cookie session could be ridden by another site
        page, _ = app.call("remediation_page", proposal.id, headers=principal)
        csrf = page.get_body().decode().split("name='csrf' value='")[1].split("'")[0]
        accepted, _ = app.call(
            "remediation_approve",
            proposal.id,
            method="POST",
            body=json.dumps({**payload, "csrf": csrf}).encode(),
            headers={**JSON, **principal},
        )
        assert accepted.status_code == 200, accepted.get_body()
        assert body(accepted)["approved_by"] == {"object_id": "oid-7", "name": "Grace"}


def test_expired_proposal_is_gone(azurite: str, app_functions: dict[str, Any]) -> None:
    from datetime import timedelta

    with approval_app(azurite, app_functions, True, {"a": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        app.env.clock[0] = proposal.expires_at + timedelta(seconds=1)
        response, _ = app.call(
            "remediation_approve",
            proposal.id,
            method="POST",
            token=app.issuer.token(),
            body=approve_json(proposal.plan_hash),
            headers=JSON,
        )
        assert response.status_code == 410
        assert body(response)["error"] == "expired"
        assert app.env.setting("a") is False
