"""The emulator implements docs/exchange-protocol.md (raw HTTP, no auditor client)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from devkit.emulator import MORE_RESULTS, PAGINATION_EXPIRED, Emulator, load_tenant
from devkit.tenantgen import generate_tenant
from tests.conftest import EMULATOR_TOKEN

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {EMULATOR_TOKEN}"}
SESSION = "5f0c1d2e-3a4b-4c5d-8e6f-708192a3b4c5"  # one connection-id, as a session sends


def call(
    emu: Emulator,
    cmdlet: str,
    parameters: dict[str, Any] | None = None,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    url: str | None = None,
) -> httpx.Response:
    target = url or f"{emu.base_url}/adminapi/beta/{emu.domain}/InvokeCommand{query}"
    body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters or {}}}
    session = {"connection-id": SESSION}
    return httpx.post(target, json=body, headers={**AUTH, **session, **(headers or {})}, timeout=10)


def test_bearer_token_is_required(exchange_emulator: Emulator) -> None:
    response = httpx.post(
        f"{exchange_emulator.base_url}/adminapi/beta/{exchange_emulator.domain}/InvokeCommand",
        json={"CmdletInput": {"CmdletName": "Get-TransportConfig"}},
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.json()["error"]["code"] == "Unauthorized"


def test_tenant_by_guid_or_domain_and_unknown_tenant(exchange_emulator: Emulator) -> None:
    emu = exchange_emulator
    for tenant in (emu.tenant_id, emu.domain.upper()):
        url = f"{emu.base_url}/adminapi/beta/{tenant}/InvokeCommand"
        assert call(emu, "Get-TransportConfig", url=url).status_code == 200
    other = f"{emu.base_url}/adminapi/beta/fabrikam.onmicrosoft.com/InvokeCommand"
    assert call(emu, "Get-TransportConfig", url=other).status_code == 404


def test_default_result_size_stops_at_1000_with_the_warning() -> None:
    with Emulator(generate_tenant(1200, seed=3), token=EMULATOR_TOKEN) as emu:
        response = call(emu, "Get-CASMailbox", query="?$select=Guid")
        document = response.json()
        assert len(document["value"]) == 1000
        assert "@odata.nextLink" not in document
        assert document["@adminapi.warnings"] == [MORE_RESULTS]
        unlimited = call(emu, "Get-CASMailbox", {"ResultSize": "Unlimited"}, query="?$select=Guid")
        # Every page that has a nextLink carries the same warning; the last page does not.
        assert unlimited.json()["@adminapi.warnings"] == [MORE_RESULTS]
        assert "@odata.nextLink" in unlimited.json()
        last = call(emu, "Get-CASMailbox", url=unlimited.json()["@odata.nextLink"]).json()
        assert last["@adminapi.warnings"] == [] and "@odata.nextLink" not in last
        assert len(last["value"]) == 200


def test_prefer_page_size_and_opaque_next_links(exchange_emulator: Emulator) -> None:
    emu = exchange_emulator
    headers = {"Prefer": "odata.maxpagesize=100"}
    first = call(
        emu, "Get-Mailbox", {"ResultSize": "Unlimited"}, query="?$select=Guid", headers=headers
    ).json()
    assert len(first["value"]) == 100
    link = first["@odata.nextLink"]
    assert link.startswith(f"{emu.base_url}/adminapi/beta/{emu.domain}/InvokeCommand?$skiptoken=")
    assert "100" not in link.split("$skiptoken=")[1]  # nothing readable in the token
    second = call(emu, "Get-Mailbox", {"ResultSize": "Unlimited"}, url=link, headers=headers)
    assert set(second.json()["value"][0]) == {"Guid@data.type", "Guid@odata.type", "Guid"}
    third = call(emu, "Get-Mailbox", url=second.json()["@odata.nextLink"], headers=headers).json()
    assert len(third["value"]) == 50 and "@odata.nextLink" not in third
    wrong = call(emu, "Get-CASMailbox", url=link)
    assert wrong.status_code == 400


def test_expired_link_is_an_error() -> None:
    with Emulator(generate_tenant(30), token=EMULATOR_TOKEN, link_ttl=0.0) as emu:
        headers = {"Prefer": "odata.maxpagesize=10"}
        link = call(emu, "Get-CASMailbox", {"ResultSize": "Unlimited"}, headers=headers).json()[
            "@odata.nextLink"
        ]
        expired = call(emu, "Get-CASMailbox", url=link)
        assert expired.status_code == 400
        assert PAGINATION_EXPIRED in expired.json()["error"]["details"][0]["message"]


def test_unprojected_records_are_full_and_annotated(exchange_emulator: Emulator) -> None:
    record = call(exchange_emulator, "Get-CASMailbox", {"ResultSize": 1}).json()["value"][0]
    data = {k for k in record if "@" not in k}
    assert len(data) >= 60
    assert {"ActiveSyncEnabled", "OWAEnabled", "PopEnabled", "ImapEnabled", "MAPIEnabled"} <= data
    assert record["Guid@odata.type"] == "#Guid"
    assert record["EmailAddresses@odata.type"] == "#Collection(String)"
    selected = call(
        exchange_emulator, "Get-CASMailbox", {"ResultSize": 1}, query="?$select=guid,POPENABLED"
    ).json()["value"][0]
    assert {k for k in selected if "@" not in k} == {"Guid", "PopEnabled"}


def test_set_semantics(exchange_emulator: Emulator) -> None:
    emu = exchange_emulator
    guid = next(iter(emu.state.cas))
    alias = emu.state.mailboxes[guid]["Alias"]
    ok = call(emu, "Set-CASMailbox", {"Identity": alias, "SmtpClientAuthenticationDisabled": True})
    assert ok.status_code == 200 and ok.json()["value"] is None  # a Set-* answers no object
    assert emu.state.cas[guid]["SmtpClientAuthenticationDisabled"] is True
    again = call(
        emu, "Set-CASMailbox", {"Identity": guid, "SmtpClientAuthenticationDisabled": True}
    )
    assert "no settings" in again.json()["@adminapi.warnings"][0]
    call(emu, "Set-CASMailbox", {"Identity": guid, "SmtpClientAuthenticationDisabled": None})
    assert emu.state.cas[guid]["SmtpClientAuthenticationDisabled"] is None
    bad = call(emu, "Set-CASMailbox", {"Identity": guid, "Bogus": 1})
    assert bad.status_code == 400
    assert "Bogus" in bad.json()["error"]["details"][0]["message"]
    text = call(emu, "Set-CASMailbox", {"Identity": guid, "SmtpClientAuthenticationDisabled": "no"})
    assert text.status_code == 400
    null_org = call(emu, "Set-TransportConfig", {"SmtpClientAuthenticationDisabled": None})
    assert null_org.status_code == 400
    assert call(emu, "Set-TransportConfig", {"SmtpClientAuthenticationDisabled": True}).is_success
    assert emu.state.org_disabled is True
    unknown = call(emu, "Get-Nothing")
    assert unknown.status_code == 400
    assert "not recognized" in unknown.json()["error"]["innererror"]["message"]


def test_faults_fire_as_configured(exchange_emulator: Emulator) -> None:
    emu = exchange_emulator
    emu.faults.add("throttle", cmdlet="Get-TransportConfig", retry_after="1.5")
    throttled = call(emu, "Get-TransportConfig")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1.5"
    assert call(emu, "Get-TransportConfig").status_code == 200  # fired once
    emu.faults.add("deny", cmdlet="Get-Mailbox", times=None)
    for _ in range(2):
        denied = call(emu, "Get-Mailbox")
        assert denied.status_code == 401
        assert "User is not allowed to call Get-Mailbox" in denied.text
    emu.faults.add("adminapi_error", cmdlet="Get-CASMailbox")
    body = call(emu, "Get-CASMailbox", {"ResultSize": "Unlimited"}).json()
    assert body["@adminapi.errors"] and len(body["value"]) < 250
    emu.faults.add("drop", cmdlet="Get-CASMailbox")
    with pytest.raises(httpx.RemoteProtocolError):
        call(emu, "Get-CASMailbox", {"ResultSize": "Unlimited"})
    with pytest.raises(ValueError, match="unknown fault"):
        emu.faults.add("gremlins")


def test_batch(exchange_emulator: Emulator) -> None:
    emu = exchange_emulator
    url = f"{emu.base_url}/adminapi/beta/{emu.domain}/InvokeCommand"
    requests = [
        {
            "id": "1",
            "method": "POST",
            "url": url,
            "body": {"CmdletInput": {"CmdletName": "Get-TransportConfig"}},
        },
        {
            "id": "2",
            "method": "POST",
            "url": url + "?$select=Guid",
            "body": {
                "CmdletInput": {"CmdletName": "Get-CASMailbox", "Parameters": {"ResultSize": 2}}
            },
        },
    ]
    response = httpx.post(
        f"{emu.base_url}/adminapi/beta/{emu.domain}/$batch",
        json={"requests": requests},
        headers=AUTH,
    )
    items = response.json()["responses"]
    assert [(i["id"], i["status"]) for i in items] == [("1", 200), ("2", 200)]
    assert len(items[1]["body"]["value"]) == 2
    too_many = httpx.post(
        f"{emu.base_url}/adminapi/beta/{emu.domain}/$batch",
        json={"requests": requests * 6},
        headers=AUTH,
    )
    assert too_many.status_code == 400


def test_tenant_from_a_snapshot_shaped_file(tmp_path: Path) -> None:
    tenant = load_tenant(ROOT / "examples" / "snapshot.json")
    assert tenant.cas
    with Emulator(tenant, token="t") as emu:
        response = httpx.post(
            f"{emu.base_url}/adminapi/beta/{emu.domain}/InvokeCommand",
            json={
                "CmdletInput": {
                    "CmdletName": "Get-CASMailbox",
                    "Parameters": {"ResultSize": "Unlimited"},
                }
            },
            headers={"Authorization": "Bearer t"},
        )
        assert len(response.json()["value"]) == len(tenant.cas)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cas_mailboxes": [{"Name": "no guid"}]}))
    with pytest.raises(ValueError, match=r"cas_mailboxes\[0\] needs a string Guid"):
        load_tenant(bad)


def test_command_line_serves_a_generated_tenant() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devkit.emulator",
            "--generate",
            "5",
            "--token",
            "cli",
            "--duration",
            "20",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        fields = dict(p.split("=", 1) for p in line.split() if "=" in p)
        response = httpx.post(
            f"{fields['base_url']}/adminapi/beta/{fields['tenant']}/InvokeCommand",
            json={
                "CmdletInput": {
                    "CmdletName": "Get-Mailbox",
                    "Parameters": {"ResultSize": "Unlimited"},
                }
            },
            headers={"Authorization": "Bearer cli"},
            timeout=10,
        )
        assert len(response.json()["value"]) == 5
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_command_line_switches_the_real_service_behaviours() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devkit.emulator",
            "--generate",
            "5",
            "--token",
            "cli",
            "--deny",
            "Get-Mailbox",
            "--rate-limit",
            "100/60",
            "--redirect",
            "outlook.office365.com=emea04.outlook.office365.com",
            "--duration",
            "20",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        fields = dict(p.split("=", 1) for p in process.stdout.readline().split() if "=" in p)
        url = f"{fields['base_url']}/adminapi/beta/{fields['tenant']}/InvokeCommand"

        def post(cmdlet: str, host: str | None = None) -> httpx.Response:
            headers = {"Authorization": "Bearer cli", **({"Host": host} if host else {})}
            body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": {}}}
            return httpx.post(url, json=body, headers=headers, timeout=10)

        body = {"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": {}}}
        with httpx.stream(
            "POST", url, json=body, headers={"Authorization": "Bearer cli"}, timeout=10
        ) as denied:  # read raw: a plain read would fail decoding this "gzip" body
            assert denied.status_code == 403 and denied.headers["Content-Encoding"] == "gzip"
            assert set(b"".join(denied.iter_raw())) == {0}
        allowed = post("Get-CASMailbox")
        assert allowed.status_code == 200 and allowed.headers["Rate-Limit-Remaining"] == "98"
        moved = post("Get-CASMailbox", host="outlook.office365.com")
        assert moved.status_code == 302
        assert moved.headers["Location"].startswith("http://emea04.outlook.office365.com:")
    finally:
        process.terminate()
        process.wait(timeout=10)
