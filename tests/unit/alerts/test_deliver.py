"""Alert delivery against local recording receivers (real HTTP servers on 127.0.0.1): the Teams
Workflows envelope and card, the Graph sendMail request, retries, one channel failing, no double
send, secrets kept out of logs and reports."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import httpx
import pytest

from auditor.alerts.decide import SHOWN_MAX, Alert, AlertItem
from auditor.alerts.deliver import (
    ALREADY_SENT,
    EMAIL,
    FAILED,
    NOT_CONFIGURED,
    SENT,
    TEAMS,
    MemoryLedger,
    deliver,
)
from auditor.alerts.post import redact
from auditor.alerts.teams import build_message, message_size
from auditor.app.settings import Settings
from auditor.app.wiring import alert_channels
from auditor.core.model import Allowlist, CollectionError, Severity, Status
from auditor.core.policy import evaluate
from auditor.core.routes import report_url
from tests.support.alerting import NOW, SIG, TOKEN, make_alert, settings_for, webhook
from tests.support.builders import cas, mbx, snapshot
from tests.support.receivers import ReceiverPool, Reply


def actions_in(node: Any) -> list[dict[str, Any]]:
    """Every element whose type starts with `Action.`, anywhere in the card."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if str(node.get("type", "")).startswith("Action."):
            found.append(node)
        for value in node.values():
            found.extend(actions_in(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(actions_in(value))
    return found


def texts_in(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("text"), str):
            found.append(node["text"])
        if node.keys() == {"title", "value"}:  # a FactSet's fact
            found.append(f"{node['title']}: {node['value']}")
        for value in node.values():
            found.extend(texts_in(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(texts_in(value))
    return found


@pytest.fixture
def http() -> Any:
    with httpx.Client() as client:
        yield client


def test_teams_message_envelope_and_card(receivers: ReceiverPool, http: httpx.Client) -> None:
    teams = receivers.start("teams", default=Reply(202))
    alert = make_alert(
        3,
        report_url="https://reports.contoso.example/runs/20261127T020000Z-ab12",
        remediation_url="https://auditor.contoso.example/api/remediations/p1/confirm",
    )
    report = deliver(
        alert,
        alert_channels(settings_for(teams=webhook(teams.url))),
        http=http,
        ledger=MemoryLedger(),
    )
    assert report.status(TEAMS) == SENT and report.status(EMAIL) == NOT_CONFIGURED
    assert len(teams.requests) == 1
    posted = teams.requests[0]
    assert posted.method == "POST"
    assert posted.path.startswith("/workflows/abc123/triggers/manual/paths/invoke?")
    assert posted.headers["content-type"].startswith("application/json")
    message = posted.json()
    assert message["type"] == "message"
    assert len(message["attachments"]) == 1
    attachment = message["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["version"] == "1.5"
    actions = actions_in(card)
    assert {a["type"] for a in actions} == {"Action.OpenUrl"}
    # The fix first (what to do), the report last.
    assert [a["url"] for a in card["actions"]] == [alert.remediation_url, alert.report_url]
    text = " ".join(texts_in(card))
    for expected in ("contoso.onmicrosoft.com", "20261127T020000Z-ab12", "2026-11-27 02:00"):
        assert expected in text
    assert "user1@contoso.com" in text and "enabled explicit" in text
    assert "SMTP AUTH blocked" in text  # the organisation state, polarity spelled out


def test_card_without_links_has_no_buttons_and_unsafe_links_are_dropped() -> None:
    alert = make_alert(1, report_url="javascript:alert(1)")
    card = build_message(alert)["attachments"][0]["content"]
    assert card["actions"] == []


def test_card_data_is_not_markdown() -> None:
    # An address with underscores must not turn into italics: data goes into TextRuns.
    item = AlertItem(
        finding_id="SMTPAUTH-MAILBOX:1",
        control="SMTPAUTH-MAILBOX",
        status=Status.FAIL,
        severity=Severity.HIGH,
        subject="scan_to_mail_2@contoso.com",
        reason="r",
        mailbox_type="SharedMailbox",
        via="inherited",
        since=NOW,
    )
    alert = Alert(
        kind="change",
        tenant="contoso.onmicrosoft.com",
        run_id="r1",
        evaluated_at=NOW,
        org_disabled=False,
        complete=True,
        severity=Severity.HIGH,
        triggers=("new",),
        counts={"fail": 1},
        new=(item,),
    )
    card = build_message(alert)["attachments"][0]["content"]
    runs = [
        inline
        for block in card["body"]
        if block["type"] == "RichTextBlock"
        for inline in block["inlines"]
    ]
    assert {"type": "TextRun", "text": "scan_to_mail_2@contoso.com", "weight": "Bolder"} in runs
    detail = next(r["text"] for r in runs if "SharedMailbox" in r["text"])
    assert "enabled inherited" in detail and "since 2026-11-27" in detail


def test_teams_message_stays_under_28_kb_with_5000_violations(
    receivers: ReceiverPool, http: httpx.Client
) -> None:
    errors = [CollectionError(f"Get-CASMailbox page {n}", "x" * 2000) for n in range(300)]
    alert = make_alert(5000, complete=False, errors=errors, report_url="https://r.example/1")
    assert len(alert.new) == SHOWN_MAX and alert.total("new") == 5000  # the rest counted
    teams = receivers.start("teams", default=Reply(202))
    deliver(
        alert,
        alert_channels(settings_for(teams=webhook(teams.url))),
        http=http,
        ledger=MemoryLedger(),
    )
    body = teams.requests[0].body
    assert len(body) < 28_000
    card = json.loads(body)["attachments"][0]["content"]
    assert card["version"] == "1.5"
    text = texts_in(card)
    shown = sum(
        1
        for block in card["body"]
        if block["type"] == "RichTextBlock"
        and any("@contoso.com" in i["text"] for i in block["inlines"][:1])
    )
    assert 0 < shown < 5000
    assert f"… and {5000 - shown} more: see the full report" in text
    assert "Violations (5000)" in text  # a first run: the baseline lists them all
    assert "Collection errors (300)" in text


def test_size_bound_is_enforced_for_any_bound() -> None:
    alert = make_alert(400)
    for bound in (27_000, 12_000, 6_000):
        assert message_size(build_message(alert, max_bytes=bound)) <= bound
    with pytest.raises(ValueError, match="exceeds 500 bytes"):
        build_message(alert, max_bytes=500)


def test_graph_sendmail_request(receivers: ReceiverPool, http: httpx.Client) -> None:
    graph = receivers.start("graph", default=Reply(202))
    alert = make_alert(3, report_url="https://reports.contoso.example/runs/1")
    report = deliver(
        alert, alert_channels(settings_for(graph=graph.url)), http=http, ledger=MemoryLedger()
    )
    assert report.status(EMAIL) == SENT and report.status(TEAMS) == NOT_CONFIGURED
    assert len(graph.requests) == 1
    posted = graph.requests[0]
    assert posted.method == "POST"
    assert posted.path == "/v1.0/users/alerts@contoso.com/sendMail"
    assert posted.headers["authorization"] == f"Bearer {TOKEN}"
    assert posted.headers["content-type"] == "application/json"
    body = posted.json()
    assert set(body) == {"message", "saveToSentItems"}
    assert body["saveToSentItems"] is False
    message = body["message"]
    assert message["subject"] == "[SMTP AUTH] contoso: baseline, 3 violations"
    assert message["body"]["contentType"] == "HTML"
    assert [r["emailAddress"]["address"] for r in message["toRecipients"]] == [
        "secops@contoso.com",
        "exo-admins@contoso.com",
    ]
    html = message["body"]["content"]
    assert "user1@contoso.com" in html and "<table" in html
    lowered = html.lower()
    for forbidden in ("<script", "<img", "<style", "src=", "<link"):
        assert forbidden not in lowered
    assert 'href="https://reports.contoso.example/runs/1"' in html
    (attachment,) = message["attachments"]
    assert attachment["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert attachment["name"] == "smtp-auth-alert-20261127T020000Z-ab12.txt"
    text = base64.b64decode(attachment["contentBytes"]).decode("utf-8")
    assert "- user1@contoso.com · UserMailbox · enabled explicit · since 2026-11-27" in text
    assert "Open the report: https://reports.contoso.example/runs/1" in text


def test_email_values_are_escaped() -> None:
    from auditor.alerts.mail import build_email

    item = AlertItem(
        finding_id="x",
        control="SMTPAUTH-MAILBOX",
        status=Status.FAIL,
        severity=Severity.HIGH,
        subject='<script>alert("x")</script>@contoso.com',
        reason="r",
    )
    alert = Alert(
        kind="change",
        tenant="contoso.onmicrosoft.com",
        run_id="r/1?x",
        evaluated_at=NOW,
        org_disabled=True,
        complete=True,
        severity=Severity.HIGH,
        triggers=("new",),
        counts={},
        new=(item,),
    )
    email = build_email(alert)
    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html
    assert email.attachment_name == "smtp-auth-alert-r_1_x.txt"


@pytest.mark.parametrize("status", [200, 201, 204])
def test_graph_only_202_is_success(
    receivers: ReceiverPool, http: httpx.Client, status: int
) -> None:
    graph = receivers.start("graph", default=Reply(status))
    ledger = MemoryLedger()
    report = deliver(
        make_alert(1), alert_channels(settings_for(graph=graph.url)), http=http, ledger=ledger
    )
    assert report.status(EMAIL) == FAILED
    assert f"HTTP {status}" in report.failed[0].detail
    assert len(graph.requests) == 1  # not a transient answer: not retried
    assert ledger.alert_deliveries("20261127T020000Z-ab12")[EMAIL] == FAILED


def test_retries_honour_retry_after_then_succeed(
    receivers: ReceiverPool, http: httpx.Client
) -> None:
    graph = receivers.start("graph", default=Reply(202))
    graph.script(
        Reply(429, {"Retry-After": "7"}, b'{"error":{"code":"TooManyRequests","message":"x"}}'),
        Reply(503),
        Reply(429, {"Retry-After": "0.5"}),
    )
    slept: list[float] = []
    report = deliver(
        make_alert(1),
        alert_channels(settings_for(graph=graph.url)),
        http=http,
        ledger=MemoryLedger(),
        sleep=slept.append,
    )
    assert report.status(EMAIL) == SENT
    assert report.results[1].attempts == 4
    assert slept == [7.0, 4.0, 0.5]  # Retry-After, own backoff 2 s x 2^1, Retry-After
    assert len(graph.requests) == 4


def test_retries_are_bounded_and_long_retry_after_is_capped(
    receivers: ReceiverPool, http: httpx.Client
) -> None:
    graph = receivers.start("graph", default=Reply(500))
    graph.script(Reply(429, {"Retry-After": "3600"}))
    slept: list[float] = []
    report = deliver(
        make_alert(1),
        alert_channels(settings_for(graph=graph.url)),
        http=http,
        ledger=MemoryLedger(),
        sleep=slept.append,
        max_attempts=3,
    )
    assert report.status(EMAIL) == FAILED
    assert len(graph.requests) == 3
    assert slept == [60.0, 4.0]
    assert "gave up after 3 attempts" in report.failed[0].detail


def test_one_channel_failing_does_not_stop_the_other(
    receivers: ReceiverPool, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    teams = receivers.start("teams", default=Reply(400, body=b"Bad Request: invalid card"))
    graph = receivers.start("graph", default=Reply(202))
    ledger = MemoryLedger()
    with caplog.at_level(logging.INFO, logger="auditor.notify"):
        report = deliver(
            make_alert(2),
            alert_channels(settings_for(teams=webhook(teams.url), graph=graph.url)),
            http=http,
            ledger=ledger,
        )
    assert report.status(TEAMS) == FAILED and report.status(EMAIL) == SENT
    assert "HTTP 400" in report.failed[0].detail
    assert len(graph.requests) == 1
    assert ledger.alert_deliveries("20261127T020000Z-ab12") == {TEAMS: FAILED, EMAIL: SENT}
    assert any("channel=teams failed" in r.getMessage() for r in caplog.records)


def test_unreachable_webhook_fails_that_channel_only(
    receivers: ReceiverPool, http: httpx.Client
) -> None:
    graph = receivers.start("graph", default=Reply(202))
    dead = receivers.start("dead")
    dead_url = webhook(dead.url)
    dead.stop()  # nothing listens there any more: connection refused
    slept: list[float] = []
    report = deliver(
        make_alert(1),
        alert_channels(settings_for(teams=dead_url, graph=graph.url)),
        http=http,
        ledger=MemoryLedger(),
        sleep=slept.append,
    )
    assert report.status(TEAMS) == FAILED and report.status(EMAIL) == SENT
    assert "ConnectError" in report.failed[0].detail
    assert slept == [2.0, 4.0, 8.0]


def test_no_alert_is_sent_twice_for_the_same_run(
    receivers: ReceiverPool, http: httpx.Client
) -> None:
    teams = receivers.start("teams", default=Reply(202))
    graph = receivers.start("graph", default=Reply(503))
    settings = settings_for(teams=webhook(teams.url), graph=graph.url)
    ledger = MemoryLedger()
    alert = make_alert(2)
    first = deliver(alert, alert_channels(settings), http=http, ledger=ledger, sleep=lambda s: None)
    assert first.status(TEAMS) == SENT and first.status(EMAIL) == FAILED
    # The Function is retried: Teams was served and is skipped; email, which failed, is retried.
    graph.default = Reply(202)
    second = deliver(
        alert, alert_channels(settings), http=http, ledger=ledger, sleep=lambda s: None
    )
    assert second.status(TEAMS) == ALREADY_SENT and second.status(EMAIL) == SENT
    third = deliver(alert, alert_channels(settings), http=http, ledger=ledger, sleep=lambda s: None)
    assert third.status(TEAMS) == ALREADY_SENT and third.status(EMAIL) == ALREADY_SENT
    assert len(teams.requests) == 1
    assert len(graph.requests) == 4 + 1


class BrokenLedger:
    def alert_deliveries(self, run_id: str) -> dict[str, str]:
        raise OSError("table service unreachable")

    def record_alert_delivery(self, run_id: str, channel: str, status: str, detail: str) -> None:
        raise OSError("table service unreachable")


def test_unreadable_ledger_sends_anyway(receivers: ReceiverPool, http: httpx.Client) -> None:
    teams = receivers.start("teams", default=Reply(202))
    report = deliver(
        make_alert(1),
        alert_channels(settings_for(teams=webhook(teams.url))),
        http=http,
        ledger=BrokenLedger(),
    )
    assert report.status(TEAMS) == SENT and len(teams.requests) == 1


def test_secrets_never_reach_logs_or_reports(
    receivers: ReceiverPool, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    teams = receivers.start("teams")
    url = webhook(teams.url)
    # A hostile answer that echoes the URL and the token back.
    teams.default = Reply(500, body=f"failed for {url} with {SIG}".encode())
    graph = receivers.start("graph")
    graph.default = Reply(
        401,
        body=json.dumps(
            {"error": {"code": "InvalidAuthenticationToken", "message": f"bad token {TOKEN}"}}
        ).encode(),
    )
    with caplog.at_level(logging.DEBUG):
        report = deliver(
            make_alert(1),
            alert_channels(settings_for(teams=url, graph=graph.url)),
            http=http,
            ledger=(ledger := MemoryLedger()),
            sleep=lambda s: None,
        )
    assert report.status(TEAMS) == FAILED and report.status(EMAIL) == FAILED
    assert "InvalidAuthenticationToken" in report.summary()
    everything = json.dumps(report.as_dict()) + json.dumps(ledger.records) + caplog.text
    assert SIG not in everything
    assert "Zm9vYmFyU2VjcmV0U2lnbmF0dXJl" not in everything
    assert TOKEN not in everything
    assert "[redacted]" in everything
    assert url not in repr(settings_for(teams=url, graph=graph.url))


def test_redact_removes_url_query_and_path() -> None:
    url = "https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/x?sig=SECRET123"
    text = redact(f"error posting to {url}; query sig=SECRET123", [url, None])
    assert "SECRET123" not in text and "/workflows/abc" not in text


def test_no_channel_configured_is_reported(http: httpx.Client) -> None:
    ledger = MemoryLedger()
    report = deliver(make_alert(1), alert_channels(Settings.from_env({})), http=http, ledger=ledger)
    assert report.none_configured
    assert report.summary().startswith("no alert channel configured")
    assert ledger.alert_deliveries("20261127T020000Z-ab12") == {
        TEAMS: NOT_CONFIGURED,
        EMAIL: NOT_CONFIGURED,
    }


def test_half_configured_email_is_a_clear_failure(http: httpx.Client) -> None:
    settings = Settings.from_env({"ALERT_EMAIL_FROM": "alerts@contoso.com"})
    report = deliver(make_alert(1), alert_channels(settings), http=http, ledger=MemoryLedger())
    assert report.status(EMAIL) == FAILED
    assert report.failed[0].detail == "ALERT_EMAIL_FROM is set but ALERT_EMAIL_TO is empty"


def test_injected_graph_token_provider(receivers: ReceiverPool, http: httpx.Client) -> None:
    graph = receivers.start("graph", default=Reply(202))
    settings = settings_for(graph=graph.url, GRAPH_ACCESS_TOKEN="")
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return "from-provider"

    report = deliver(
        make_alert(1),
        alert_channels(settings),
        http=http,
        ledger=MemoryLedger(),
        graph_token=provider,
    )
    assert report.status(EMAIL) == SENT and calls == [1]
    assert graph.requests[0].headers["authorization"] == "Bearer from-provider"


def test_token_failure_fails_email_only(receivers: ReceiverPool, http: httpx.Client) -> None:
    teams = receivers.start("teams", default=Reply(202))
    graph = receivers.start("graph", default=Reply(202))
    settings = settings_for(teams=webhook(teams.url), graph=graph.url, GRAPH_ACCESS_TOKEN="")

    def provider() -> str:
        raise RuntimeError("managed identity endpoint unavailable")

    report = deliver(
        make_alert(1),
        alert_channels(settings),
        http=http,
        ledger=MemoryLedger(),
        graph_token=provider,
    )
    assert report.status(TEAMS) == SENT and report.status(EMAIL) == FAILED
    assert "Graph token not acquired" in report.failed[0].detail
    assert graph.requests == []


def test_retry_after_as_http_date_falls_back_to_backoff() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "Fri, 27 Nov 2026 02:00:00 GMT"})])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, httpx.Response(202))

    slept: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        report = deliver(
            make_alert(1),
            alert_channels(settings_for(graph="https://graph.microsoft.com")),
            http=client,
            ledger=MemoryLedger(),
            sleep=slept.append,
        )
    assert report.status(EMAIL) == SENT and slept == [2.0]


def test_report_url_setting() -> None:
    settings = Settings.from_env({"ALERT_REPORT_BASE_URL": "https://reports.example/runs/"})
    assert (
        report_url(settings.alert_report_base_url, "2026-11-27 run/1")
        == "https://reports.example/runs/2026-11-27%20run%2F1"
    )
    assert report_url(Settings.from_env({}).alert_report_base_url, "x") is None


def test_digest_setting_parses() -> None:
    assert Settings.from_env({"ALERT_DIGEST": "true"}).alert_digest is True
    assert Settings.from_env({}).alert_digest is False
    from auditor.core.errors import ConfigError

    with pytest.raises(ConfigError, match="ALERT_DIGEST"):
        Settings.from_env({"ALERT_DIGEST": "sometimes"})


def test_notify_run_uses_the_alert_settings(receivers: ReceiverPool, http: httpx.Client) -> None:
    from auditor.app.alerting import notify_run
    from auditor.core.model import PreviousRun, PriorFinding

    teams = receivers.start("teams", default=Reply(202))
    records = [cas(1, False), cas(2, True)]
    evaluation = evaluate(
        snapshot(cas_records=records, mailboxes=[mbx(1), mbx(2)]),
        Allowlist(),
        NOW.date(),
        evaluated_at=NOW,
    )
    previous = PreviousRun(
        run_id="20261126T020000000Z-aa11",
        evaluated_at=NOW,
        org_disabled=True,
        complete=True,
        findings={
            f.id: PriorFinding(f.id, f.control, f.status, f.subject) for f in evaluation.findings
        },
    )
    base = {"ALERT_REPORT_BASE_URL": "https://reports.example/runs"}
    quiet = settings_for(teams=webhook(teams.url), **base)
    kwargs: dict[str, Any] = dict(run_id="20261127T020000000Z-bb22", complete=True, errors=[])
    assert (
        notify_run(evaluation, previous, settings=quiet, http=http, ledger=MemoryLedger(), **kwargs)
        is None
    )
    assert teams.requests == []

    chatty = settings_for(teams=webhook(teams.url), ALERT_DIGEST="true", **base)
    report = notify_run(
        evaluation, previous, settings=chatty, http=http, ledger=MemoryLedger(), **kwargs
    )
    assert report is not None and report.status(TEAMS) == SENT
    card = teams.requests[0].json()["attachments"][0]["content"]
    assert card["actions"][0]["url"] == "https://reports.example/runs/20261127T020000000Z-bb22"
    assert any("Daily digest: no change, 1 open violation" in t for t in texts_in(card))
