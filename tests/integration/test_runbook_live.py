"""The runbook commands against the Exchange emulator and Azurite (latest recorded audit),
and the allowlist-as-desired-state grant through the approval path."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditor.cli.main import main
from auditor.core.allowlist import read_allowlist
from auditor.core.proposals import State
from auditor.exchange.client import ExchangeClient
from auditor.identity.tokens import StaticToken
from auditor.remediation.execute import execute
from auditor.storage.connect import connect
from auditor.storage.proposal_store import ProposalStore
from tests.support.builders import EMULATOR_TOKEN
from tests.support.remediation_fixtures import APPROVER, SIGNING_KEY


@pytest.fixture
def env(azurite: str, exchange_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    prefix = f"rb{datetime.now(UTC):%H%M%S%f}"
    exchange_emulator.table_prefix = prefix
    exchange_emulator.storage = azurite
    for name, value in {
        "EXO_TENANT": exchange_emulator.domain,
        "EXO_BASE_URL": exchange_emulator.base_url,
        "EXO_ACCESS_TOKEN": EMULATOR_TOKEN,
        "AUDITOR_STORAGE": azurite,
        "AUDITOR_TABLE_PREFIX": prefix,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AUDITOR_ALLOWLIST", raising=False)
    return exchange_emulator


def out(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_mailboxes_from_the_latest_audit_in_every_format(
    env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    state = env.state
    expected = {
        "disabled": sum(
            1 for r in state.cas.values() if r["SmtpClientAuthenticationDisabled"] is True
        ),
        "enabled": sum(
            1 for r in state.cas.values() if r["SmtpClientAuthenticationDisabled"] is False
        ),
        "inherit": sum(
            1 for r in state.cas.values() if r["SmtpClientAuthenticationDisabled"] is None
        ),
    }
    assert expected["enabled"] > 0  # the seeded tenant has explicit enables, none allowlisted
    assert out(capsys, "audit")[0] == 1
    code, text, err = out(capsys, "mailboxes", "--format", "json")
    assert code == 0, err
    doc = json.loads(text)
    counts = doc["counts"]
    assert counts["mailboxes"] == len(state.cas)
    assert {k: counts[f"setting_{k}"] for k in expected} == expected
    inherit_enabled = 0 if state.org_disabled else expected["inherit"]
    assert counts["inherit_enabled"] == inherit_enabled
    code, text, _ = out(capsys, "mailboxes", "--setting", "enabled", "--format", "json")
    rows = json.loads(text)["mailboxes"]
    assert len(rows) == expected["enabled"]
    assert {r["raw_value"] for r in rows} == {False}
    code, text, _ = out(capsys, "mailboxes", "--type", "SharedMailbox", "--format", "csv")
    shared = list(csv.DictReader(io.StringIO(text)))
    assert shared and {r["recipient_type_details"] for r in shared} == {"SharedMailbox"}
    for fmt in ("text", "md", "html"):
        code, text, _ = out(capsys, "mailboxes", "--setting", "enabled", "--format", fmt)
        assert code == 0
        assert rows[0]["mailbox"] in text


def test_check_live_and_from_history(env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    guid = sorted(env.state.cas)[3]
    record = env.state.mailboxes[guid]
    env.state.cas[guid]["SmtpClientAuthenticationDisabled"] = True
    out(capsys, "audit")
    env.state.cas[guid]["SmtpClientAuthenticationDisabled"] = False
    out(capsys, "audit")
    code, text, _ = out(capsys, "check", record["UserPrincipalName"], "--format", "json")
    doc = json.loads(text)
    assert code == 1
    assert doc["raw_value"] is False and doc["effective"] == "enabled"
    assert doc["last_change"]["kind"] == "changed"
    # --live reads the tenant now, not the stored evidence.
    env.state.cas[guid]["SmtpClientAuthenticationDisabled"] = True
    code, text, _ = out(capsys, "check", guid, "--live", "--format", "json")
    assert code == 0 and json.loads(text)["raw_value"] is True


def test_apply_allowlist_dry_run_then_grant_applied_once(
    env: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = env.state
    guids = sorted(state.cas)
    disabled, inheriting, enabled, expired = guids[10:14]
    state.cas[disabled]["SmtpClientAuthenticationDisabled"] = True
    state.cas[inheriting]["SmtpClientAuthenticationDisabled"] = None
    state.cas[enabled]["SmtpClientAuthenticationDisabled"] = False
    state.cas[expired]["SmtpClientAuthenticationDisabled"] = True
    address = {g: state.mailboxes[g]["PrimarySmtpAddress"] for g in guids[10:14]}
    allowlist = tmp_path / "allow.csv"
    allowlist.write_text(
        "Identity,Owner,Expires\n"
        f"{address[disabled]},ops,2027-12-31\n"
        f"{address[inheriting]},ops,\n"
        f"{address[enabled]},ops,\n"
        f"{address[expired]},ops,2026-01-01\n"
        "no-such-mailbox@contoso.com,ops,\n"
    )
    monkeypatch.setenv("AUDITOR_ALLOWLIST", str(allowlist))
    out(capsys, "audit")
    before = {g: dict(state.cas[g]) for g in guids}

    code, text, err = out(
        capsys, "apply-allowlist", str(allowlist), "--dry-run", "--format", "json"
    )
    assert code == 0, err
    dry = json.loads(text)
    verdicts = {row["entry"]: row["auditor"] for row in dry["entries"]}
    assert verdicts[address[disabled]] == "grant: set false"
    # Disabled (organisation blocks) or enabled only by inheritance: either way a grant.
    assert verdicts[address[inheriting]] == "grant: set false"
    assert verdicts[address[enabled]].startswith("nothing to do")
    assert verdicts[address[expired]].startswith("not proposed: the exception expired")
    assert verdicts["no-such-mailbox@contoso.com"] == "not proposed: no such mailbox"
    loop = {row["entry"]: row["runbook_loop"] for row in dry["entries"]}
    assert loop[address[expired]] == "set false"  # the runbook would re-enable it
    assert dry["proposal"]["stored"] is False
    assert {g: dict(state.cas[g]) for g in guids} == before  # a dry run changes nothing

    code, text, err = out(capsys, "apply-allowlist", str(allowlist), "--format", "json")
    assert code == 0, err
    proposal = json.loads(text)["proposal"]
    assert proposal["stored"] is True
    assert {g: dict(state.cas[g]) for g in guids} == before  # stored, not applied

    store = ProposalStore(connect(env.storage), prefix=env.table_prefix, signing_key=SIGNING_KEY)
    record = store.get(proposal["id"])
    assert record.kind.value == "grant"
    assert {t.target.guid for t in record.targets} == {disabled, inheriting}
    now = datetime.now(UTC)
    store.approve(proposal["id"], plan_digest=proposal["plan_hash"], principal=APPROVER, now=now)
    with httpx.Client() as http:
        exchange = ExchangeClient(
            base_url=env.base_url, tenant=env.domain, tokens=StaticToken(EMULATOR_TOKEN), http=http
        )
        done = execute(
            proposal["id"],
            store=store,
            exchange=exchange,
            load_allowlist=lambda: read_allowlist(allowlist),
            now=lambda: now,
        )
        assert done.state is State.APPLIED
        assert state.cas[disabled]["SmtpClientAuthenticationDisabled"] is False
        assert state.cas[inheriting]["SmtpClientAuthenticationDisabled"] is False
        assert state.cas[expired]["SmtpClientAuthenticationDisabled"] is True
        again = execute(
            proposal["id"],
            store=store,
            exchange=exchange,
            load_allowlist=lambda: read_allowlist(allowlist),
            now=lambda: now,
        )
        assert again.state is State.APPLIED
    events = [e.event for e in store.trail(proposal["id"])]
    assert events.count("target applied") == 2
