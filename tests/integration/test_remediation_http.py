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


def post_approval(
    app: App, proposal_id: str, token: str | None, plan_hash: str, **extra: Any
) -> Any:
    """POST the JSON approval of `plan_hash` (the one approve call of these tests)."""
    return app.call(
        "remediation_approve",
        proposal_id,
        method="POST",
        token=token,
        body=approve_json(plan_hash, **extra),
        headers=JSON,
    )


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
        response, queued = post_approval(app, proposal.id, token, proposal.plan_hash)
        assert response.status_code == 200, response.get_body()
        assert queued is None
        document = body(response)
        assert document["state"] == "applied"
        assert document["approved_by"]["name"] == "Ada Approver"
        assert app.env.setting("a") is None
        replay, _ = post_approval(app, proposal.id, token, proposal.plan_hash)
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
        response, queued = post_approval(app, proposal.id, app.issuer.token(), proposal.plan_hash)
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
            response, _ = post_approval(app, proposal.id, token, proposal.plan_hash)
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
        response, _ = post_approval(app, proposal.id, app.issuer.token(), "f" * 64)
        assert response.status_code == 412
        assert body(response)["error"] == "plan_changed"
        assert app.env.store.get(proposal.id).state is State.PROPOSED


def test_subset_approval(azurite: str, app_functions: dict[str, Any]) -> None:
    with approval_app(azurite, app_functions, True, {"a": False, "b": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        first = proposal.targets[0]
        response, _ = post_approval(
            app, proposal.id, app.issuer.token(), proposal.plan_hash, targets=[first.key]
        )
        assert response.status_code == 200, response.get_body()
        results = {t["key"]: t["result"] for t in body(response)["targets"]}
        assert results[first.key] == "applied"
        assert list(results.values()).count("not_selected") == 1


def test_dry_run_changes_nothing(azurite: str, app_functions: dict[str, Any]) -> None:
    with approval_app(azurite, app_functions, True, {"a": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        response, queued = post_approval(
            app, proposal.id, app.issuer.token(), proposal.plan_hash, dry_run=True
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
        again, _ = post_approval(app, proposal.id, token, proposal.plan_hash)
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
        response, _ = post_approval(app, proposal.id, app.issuer.token(), proposal.plan_hash)
        assert response.status_code == 410
        assert body(response)["error"] == "expired"
        assert app.env.setting("a") is False


def test_security_headers_on_every_response(azurite: str, app_functions: dict[str, Any]) -> None:
    with approval_app(azurite, app_functions, True, {"a": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        token = app.issuer.token()
        responses = [
            app.call("remediation_page", proposal.id, token=token)[0],
            app.call("remediation_page", proposal.id)[0],  # 401
            app.call("remediation_status", proposal.id, token=token)[0],
            app.call("remediation_status", "rev-mai-nope", token=token)[0],  # 404
            app.call(
                "remediation_status",
                proposal.id,
                token=token,
                headers={"Accept": "text/html"},
            )[0],
            post_approval(app, proposal.id, token, proposal.plan_hash, dry_run=True)[0],
        ]
        for response in responses:
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            if response.mimetype == "text/html":
                assert "base-uri 'none'" in response.headers["Content-Security-Policy"]


def test_a_body_without_a_content_type_is_refused(
    azurite: str, app_functions: dict[str, Any]
) -> None:
    with approval_app(azurite, app_functions, True, {"a": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        response, _ = app.call(
            "remediation_approve",
            proposal.id,
            method="POST",
            token=app.issuer.token(),
            body=approve_json(proposal.plan_hash),  # what a no-cors fetch of a Blob sends
        )
        assert response.status_code == 415
        assert app.env.store.get(proposal.id).state is State.PROPOSED


def test_reject_needs_a_reason_and_the_status_page_shows_it(
    azurite: str, app_functions: dict[str, Any]
) -> None:
    with approval_app(azurite, app_functions, True, {"a": False, "b": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        token = app.issuer.token()

        def reject(reason: str) -> Any:
            return app.call(
                "remediation_reject",
                proposal.id,
                method="POST",
                token=token,
                body=json.dumps({"reason": reason}).encode(),
                headers=JSON,
            )[0]

        assert reject("   ").status_code == 400
        assert app.env.store.get(proposal.id).state is State.PROPOSED
        assert reject("change freeze until <b>January</b>").status_code == 200
        page, _ = app.call(
            "remediation_status", proposal.id, token=token, headers={"Accept": "text/html"}
        )
        html = page.get_body().decode()
        assert "Ada Approver" in html.split('id="rejected-by">')[1].split("<")[0]
        assert app.env.now().isoformat() in html.split('id="rejected-at">')[1].split("<")[0]
        assert "change freeze until &lt;b&gt;January&lt;/b&gt;" in html
        assert ">pending<" not in html and "not run" in html
        document = body(app.call("remediation_status", proposal.id, token=token)[0])
        assert document["reject_reason"] == "change freeze until <b>January</b>"


def test_superseded_and_stale_proposals_say_so_and_cannot_be_approved(
    azurite: str, app_functions: dict[str, Any]
) -> None:
    with approval_app(azurite, app_functions, True, {"a": False, "b": False}) as app:
        first = app.env.proposals()["mailboxes"]
        token = app.issuer.token()
        # The next night "a" was fixed by hand: a different plan supersedes the first.
        app.env.emulator.state.cas[next(iter(app.env.emulator.state.cas))][
            "SmtpClientAuthenticationDisabled"
        ] = True
        second = app.env.proposals()["mailboxes"]
        assert second.id != first.id
        old = app.env.store.get(first.id)
        assert old.state is State.SUPERSEDED and old.superseded_by == second.id
        page = app.call("remediation_page", first.id, token=token)[0].get_body().decode()
        assert "superseded" in page and second.id in page and "id='approve'" not in page
        response, _ = post_approval(app, first.id, token, first.plan_hash)
        assert response.status_code == 410 and body(response)["error"] == "superseded"
        # A night later nothing is left to propose: the open proposal is stale.
        app.env.store.sync([], run_id="run-3", now=app.env.now())
        page = app.call("remediation_page", second.id, token=token)[0].get_body().decode()
        assert "stale" in page and "id='approve'" not in page
        assert app.env.store.recent() == []
        assert app.env.setting("b") is False


def test_dry_run_uses_the_same_subset_rules_as_approval(
    azurite: str, app_functions: dict[str, Any]
) -> None:
    boxes = {"keep": None, "keep2": None, "lose": None}
    allow = "keep@contoso.com\nkeep2@contoso.com\n"
    with approval_app(azurite, app_functions, False, boxes, allow) as app:
        proposal = app.env.proposals()["organisation"]
        pins = [t.key for t in proposal.targets if t.role.value == "pin"]

        def dry(targets: list[str]) -> Any:
            return post_approval(
                app,
                proposal.id,
                app.issuer.token(),
                proposal.plan_hash,
                dry_run=True,
                targets=targets,
            )[0]

        # The organisation without every pin: refused by the dry run as by the approval.
        refused = dry(["organisation", pins[0]])
        assert refused.status_code == 400 and body(refused)["error"] == "bad_subset"
        # The organisation with its pins: the losers come with it, as they would on approval.
        shown = body(dry(["organisation", *pins]))
        assert {line["role"] for line in shown["targets"]} == {"pin", "org", "revoke"}
        only_pin = body(dry(pins[:1]))
        assert [line["key"] for line in only_pin["targets"]] == pins[:1]
        assert app.env.store.get(proposal.id).state is State.PROPOSED


def test_outcome_card_renders_names_as_text_not_markdown() -> None:
    from datetime import UTC, datetime

    from auditor.core.proposals import Kind, Record, Result, Role, Target, TargetRecord
    from auditor.remediation.notice import teams_message

    evil = "[click me](https://evil.test) **urgent** _x_"
    target = Target(evil, Role.REVOKE, evil, False, None, 1, "r", guid="g")
    record = Record(
        id="rev-mai-1",
        kind=Kind.REVOCATION,
        scope="mailboxes",
        tenant="contoso",
        run_id="r",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        expires_at=datetime(2026, 1, 8, tzinfo=UTC),
        title="Revoke",
        plan_hash="0" * 64,
        state=State.FAILED,
        etag="",
        targets=(TargetRecord("0", target, True, Result.FAILED, f"Exchange said {evil}"),),
        approver_oid="oid",
        approver_name=f"Mallory {evil}",
    )
    card = teams_message(record, None)["attachments"][0]["content"]
    assert all(block["type"] == "RichTextBlock" for block in card["body"])
    runs = [inline for block in card["body"] for inline in block["inlines"]]
    assert all(inline["type"] == "TextRun" for inline in runs)
    texts = " ".join(inline["text"] for inline in runs)
    assert f"Mallory {evil}" in texts and f"Failed: {evil}: Exchange said {evil}" in texts


def test_a_malformed_secret_setting_is_named_never_echoed(
    azurite: str, app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from auditor.web import runtime

    secret = "hunter2-not-long-enough"
    monkeypatch.setenv("APPROVAL_SIGNING_KEY", secret)
    monkeypatch.setenv("ALERT_TEAMS_WEBHOOK_URL", "not-a-url-but-a-secret-sig=abc123")
    runtime.reset()
    try:
        request = remediation_functions.build_http_request(
            "GET",
            "http://127.0.0.1/api/remediations/x/status",
            headers={},
            body=b"",
            route_params={"id": "x"},
        )
        response = app_functions["remediation_status"].get_user_function()(request)
        text = response.get_body().decode()
        assert response.status_code == 500
        assert "APPROVAL_SIGNING_KEY" in text or "ALERT_TEAMS_WEBHOOK_URL" in text
        assert secret not in text and "abc123" not in text
    finally:
        runtime.reset()
    from auditor.app.settings import Settings
    from auditor.core.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"ALERT_TEAMS_WEBHOOK_URL": "not-a-url-sig=abc123"})
    assert caught.value.where == "ALERT_TEAMS_WEBHOOK_URL" and "abc123" not in str(caught.value)


def test_the_nightly_timer_sweeps_an_approval_whose_queue_message_was_lost(
    azurite: str, app_functions: dict[str, Any]
) -> None:
    from datetime import timedelta

    from auditor.functions.audit import _sweep_remediations

    with approval_app(azurite, app_functions, True, {"a": False}, inline_limit=0) as app:
        proposal = app.env.proposals()["mailboxes"]
        response, queued = post_approval(app, proposal.id, app.issuer.token(), proposal.plan_hash)
        assert response.status_code == 202 and queued is not None  # ... and then lost
        _sweep_remediations()
        assert app.env.store.get(proposal.id).state is State.APPROVED  # not yet: in the queue
        app.env.clock[0] += timedelta(minutes=10)
        _sweep_remediations()  # what the nightly timer runs before the audit
        assert app.env.store.get(proposal.id).state is State.APPLIED
        assert app.env.setting("a") is None
