"""The client against the emulator in its realistic mode, over real HTTP on 127.0.0.1.

Paging as live captures show it (the truncation warning on every page that has a nextLink,
nextLinks bound to the session's connection-id), the RBAC 403 of NUL bytes labelled gzip, the
front door's 302 to a regional host, and the Rate-Limit-* budget (docs/exchange-protocol.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from auditor.core.errors import CollectionFailed, PermissionDenied
from auditor.exchange.client import ExchangeClient
from auditor.exchange.collect import collect_snapshot
from auditor.identity.tokens import StaticToken
from devkit.emulator import MORE_RESULTS, PAGINATION_EXPIRED, Emulator
from devkit.tenantgen import generate_tenant
from tests.conftest import EMULATOR_TOKEN

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
FRONT_DOOR = "outlook.office365.com"
REGIONAL = "emea04.outlook.office365.com"


class Loopback(httpx.HTTPTransport):
    """Sends every request to 127.0.0.1 on its own port, keeping the URL's host in `Host`:
    a real HTTP exchange with an emulator that plays several host names."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host="127.0.0.1")
        return super().handle_request(request)


@pytest.fixture
def loopback() -> Iterator[httpx.Client]:
    with httpx.Client(transport=Loopback(), timeout=30) as http:
        yield http


def client(base_url: str, http: httpx.Client, **kw: object) -> ExchangeClient:
    return ExchangeClient(
        base_url=base_url,
        tenant="contoso.onmicrosoft.com",
        tokens=StaticToken(EMULATOR_TOKEN),
        http=http,
        sleep=lambda _s: None,
        **kw,  # type: ignore[arg-type]
    )


def test_a_complete_snapshot_of_3000_mailboxes_under_the_real_paging_model() -> None:
    with (
        Emulator(generate_tenant(3000, seed=12), token=EMULATOR_TOKEN) as emu,
        httpx.Client(timeout=30) as http,
    ):
        exo = client(emu.base_url, http, page_size=1000)
        document = collect_snapshot(exo, tenant=emu.domain, now=NOW)
        assert document["errors"] == []
        assert len(document["cas_mailboxes"]) == 3000
        assert len(document["mailboxes"]) == 3000
        assert len({m["Guid"] for m in document["cas_mailboxes"]}) == 3000
        # Real record details reach the snapshot untouched (SPO:/SIP: proxies included).
        addresses = document["mailboxes"][0]["EmailAddresses"]
        assert any(a.startswith("SPO:SPO_") for a in addresses)
        assert any(a.startswith("SIP:") for a in addresses)
        listings = [r for r in emu.requests if r.cmdlet == "Get-CASMailbox"]
        assert [r.page for r in listings] == [1, 2, 3]
        assert all(r.status == 200 for r in emu.requests)
        # One connection-id for the client's life; one client-request-id per call.
        assert {r.headers["connection-id"] for r in emu.requests} == {exo.connection_id}
        assert len({r.headers["client-request-id"] for r in listings}) == 1
        calls = {r.headers["client-request-id"] for r in emu.requests}
        assert len(calls) == 3  # Get-TransportConfig, Get-CASMailbox, Get-Mailbox


def test_pages_really_carry_the_warning_and_links_need_the_session() -> None:
    with Emulator(generate_tenant(30, seed=2), token=EMULATOR_TOKEN) as emu:
        url = f"{emu.base_url}/adminapi/beta/{emu.domain}/InvokeCommand"
        body = {"CmdletInput": {"CmdletName": "Get-CASMailbox", "Parameters": {}}}
        session = {
            "Authorization": f"Bearer {EMULATOR_TOKEN}",
            "connection-id": "8d1e7b8a-0000-4000-8000-000000000001",
            "Prefer": "odata.maxpagesize=20",
        }
        first = httpx.post(url, json=body, headers=session, timeout=10).json()
        assert first["@adminapi.warnings"] == [MORE_RESULTS] and first["@odata.nextLink"]
        other = {**session, "connection-id": "8d1e7b8a-0000-4000-8000-000000000002"}
        replay = httpx.post(first["@odata.nextLink"], json=body, headers=other, timeout=10)
        assert replay.status_code == 400
        assert PAGINATION_EXPIRED in replay.json()["error"]["details"][0]["message"]
        anonymous = {k: v for k, v in session.items() if k != "connection-id"}
        replay = httpx.post(first["@odata.nextLink"], json=body, headers=anonymous, timeout=10)
        assert replay.status_code == 400
        second = httpx.post(first["@odata.nextLink"], json=body, headers=session, timeout=10)
        assert second.status_code == 200
        assert second.json()["@adminapi.warnings"] == [] and len(second.json()["value"]) == 10


def test_a_403_of_nul_bytes_is_a_permission_error_naming_the_role() -> None:
    with (
        Emulator(generate_tenant(50, seed=4), token=EMULATOR_TOKEN, denied=("Get-Mailbox",)) as emu,
        httpx.Client(timeout=30) as http,
    ):
        exo = client(emu.base_url, http)
        with pytest.raises(PermissionDenied) as caught:
            exo.get_mailboxes()
        message = str(caught.value)
        assert message.startswith("Get-Mailbox: HTTP 403, request-id ")
        assert "request-id none" not in message
        assert "View-Only Recipients" in message
        assert "\x00" not in message
        assert [r.status for r in emu.requests if r.cmdlet == "Get-Mailbox"] == [403]  # no retry
        document = collect_snapshot(exo, tenant=emu.domain, now=NOW)
        assert document["mailboxes"] is None and len(document["cas_mailboxes"]) == 50
        assert "View-Only Recipients" in document["errors"][0]["message"]
        assert "\\u0000" not in json.dumps(document) and "\x00" not in json.dumps(document)


def test_parameters_outside_the_role_definition_are_a_permission_error() -> None:
    with (
        Emulator(generate_tenant(5, seed=4), token=EMULATOR_TOKEN) as emu,
        httpx.Client(timeout=30) as http,
    ):
        emu.faults.add("role_parameters", cmdlet="Set-CASMailbox", times=None)
        exo = client(emu.base_url, http)
        guid = next(iter(emu.state.cas))
        with pytest.raises(PermissionDenied, match="Mail Recipients") as caught:
            exo.set_cas_mailbox(guid, True)
        assert "aren't present in the role definition" in str(caught.value)
        assert "DirectInvokeCmdletAccessDeniedException|" not in str(caught.value)


def test_a_redirect_to_the_regional_host_is_followed_once(loopback: httpx.Client) -> None:
    with Emulator(
        generate_tenant(250, seed=5), token=EMULATOR_TOKEN, redirects={FRONT_DOOR: REGIONAL}
    ) as emu:
        exo = client(f"http://{FRONT_DOOR}:{emu.port}", loopback, page_size=100)
        document = collect_snapshot(exo, tenant=emu.domain, now=NOW)
        assert document["errors"] == []
        assert len(document["cas_mailboxes"]) == 250 and len(document["mailboxes"]) == 250
        assert exo.redirected_to == REGIONAL
        assert exo.endpoint.startswith(f"http://{REGIONAL}:{emu.port}/adminapi/beta/")
        hosts = [r.headers["host"].split(":")[0] for r in emu.requests]
        assert hosts.count(FRONT_DOOR) == 1  # one 302, then every request and nextLink there
        assert hosts[1:] == [REGIONAL] * (len(hosts) - 1)
        assert emu.requests[0].status == 302


@pytest.mark.parametrize(
    ("redirects", "refused"),
    [
        ({FRONT_DOOR: REGIONAL, REGIONAL: "emea05.outlook.office365.com"}, "a second redirect"),
        ({FRONT_DOOR: "evil.example.com"}, "not a tenant host under outlook.office365.com"),
        ({FRONT_DOOR: "emea04.outlook.office365.com.evil.example"}, "not a tenant host"),
    ],
)
def test_other_redirects_are_refused(
    loopback: httpx.Client, redirects: dict[str, str], refused: str
) -> None:
    with Emulator(generate_tenant(5, seed=5), token=EMULATOR_TOKEN, redirects=redirects) as emu:
        exo = client(f"http://{FRONT_DOOR}:{emu.port}", loopback)
        with pytest.raises(CollectionFailed, match=refused):
            exo.get_cas_mailboxes()
        hosts = {r.headers["host"].split(":")[0] for r in emu.requests}
        assert hosts <= {FRONT_DOOR, REGIONAL}  # never a request to the refused host


def test_a_low_rate_limit_budget_slows_the_client_before_it_is_throttled() -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with (
        Emulator(generate_tenant(60, seed=6), token=EMULATOR_TOKEN, rate_limit=(8, 0.5)) as emu,
        httpx.Client(timeout=30) as http,
    ):
        exo = ExchangeClient(
            base_url=emu.base_url,
            tenant=emu.domain,
            tokens=StaticToken(EMULATOR_TOKEN),
            http=http,
            sleep=sleep,
            page_size=5,
            max_slowdown=0.5,
        )
        assert len(exo.get_cas_mailboxes()) == 60
        assert waits and all(0 < w <= 0.5 for w in waits)
        statuses = [r.status for r in emu.requests]
        assert statuses.count(429) <= 1  # paced, not throttled over and over
