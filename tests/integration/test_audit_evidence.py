"""run_audit stores the evidence it judged, byte for byte, whether the collector returns the
document (dicts) or its evidence bytes (what the nightly audit uses): Exchange emulator over
HTTP, Azurite, the real policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditor.app.audit import run_audit
from auditor.core.allowlist import load_allowlist
from auditor.core.policy import evaluate
from auditor.core.snapshot import parse_snapshot
from auditor.exchange.client import ExchangeClient
from auditor.exchange.collect import collect_evidence, collect_snapshot
from auditor.identity.tokens import StaticToken
from tests.support.builders import EMULATOR_TOKEN
from tests.support.store_helpers import new_store

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["document", "evidence"])
def test_the_stored_evidence_is_what_was_judged(
    azurite: str, exchange_emulator: Any, tmp_path: Path, kind: str
) -> None:
    emu = exchange_emulator
    guids = sorted(emu.state.cas)
    emu.state.cas[guids[3]]["SmtpClientAuthenticationDisabled"] = False
    emu.state.cas[guids[4]]["Name"] = "Zoë Ø’Brien 日本"
    allowlist = tmp_path / "allow.txt"
    allowlist.write_text(emu.state.cas[guids[0]]["PrimarySmtpAddress"] + "\n")
    collected: list[bytes] = []
    with httpx.Client(timeout=30) as http:
        client = ExchangeClient(
            base_url=emu.base_url,
            tenant=emu.domain,
            tokens=StaticToken(EMULATOR_TOKEN),
            http=http,
            sleep=lambda _: None,
        )

        def collect(now: datetime) -> dict[str, Any] | bytes:
            if kind == "evidence":
                raw = collect_evidence(client, tenant=emu.domain, now=now, parallel=True)
                collected.append(raw)
                return raw
            document = collect_snapshot(client, tenant=emu.domain, now=now)
            encoded = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
            collected.append(encoded.encode("utf-8"))
            return document

        store = new_store(azurite)
        summary = run_audit(
            store=store,
            collect=collect,
            tenant=emu.domain,
            allowlist_path=allowlist,
            clock=lambda: NOW,
        )
    assert summary.complete and summary.evaluation is not None
    assert summary.counts["mailboxes"] == 250
    stored = store.read_blob(summary.run_id, "snapshot")
    assert stored is not None and stored == collected[0]
    assert "Zoë Ø’Brien 日本".encode() in stored
    # Judged again from what was stored: the very same findings.
    again = evaluate(
        parse_snapshot(stored, source="stored"),
        load_allowlist(allowlist).allowlist,
        NOW.date(),
        evaluated_at=NOW,
    )
    assert again.findings == summary.evaluation.findings
    assert again.counts == summary.evaluation.counts
