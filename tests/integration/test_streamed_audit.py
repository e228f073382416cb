"""Judging while paging (issue 17) end to end: the Exchange emulator over HTTP, Azurite, the
real policy. The evidence is compressed page by page and stored as it is; what is stored is
what was judged, and reading it back judges the same."""

from __future__ import annotations

import json
import secrets
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditor.app.audit import AuditIncomplete, run_audit
from auditor.core.allowlist import load_allowlist
from auditor.core.evidence import (
    Compressed,
    EvidenceStream,
    StreamedEvidence,
    inflate,
    read_evidence,
)
from auditor.core.policy import evaluate
from auditor.core.screen import screen
from auditor.core.snapshot import parse_snapshot, snapshot_document
from auditor.exchange.client import ExchangeClient
from auditor.exchange.collect import collect_evidence, collect_streamed
from auditor.identity.tokens import StaticToken
from auditor.storage.blobs import Blobs
from devkit.emulator import Emulator
from tests.support.builders import EMULATOR_TOKEN
from tests.support.store_helpers import new_store

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def test_pre_compressed_evidence_round_trips_through_the_store(azurite: str) -> None:
    # Random text does not compress: several entities of 11 x 64 KiB.
    cas = [
        {
            "Guid": f"00000000-0000-4000-8000-{n:012d}",
            "Name": secrets.token_hex(200),
            "SmtpClientAuthenticationDisabled": None,
        }
        for n in range(8000)
    ]
    stream = EvidenceStream("Exchange collection")
    for start in range(0, len(cas), 1000):
        stream.sink("cas_mailboxes")(cas[start : start + 1000])
    document = snapshot_document(
        tenant="contoso.onmicrosoft.com",
        collected_at=NOW,
        transport_config={"SmtpClientAuthenticationDisabled": True},
        cas_mailboxes=None,
        mailboxes=None,
        errors=[],
    )
    streamed = stream.finish(document)
    compressed = streamed.evidence
    assert compressed.length > 2 * 11 * 64 * 1024
    whole = b"".join(compressed.chunks)
    store = new_store(azurite)
    store.ensure_tables()
    blobs = Blobs(store.evidence)
    assert blobs.write("rk1", {"snapshot": compressed}) == compressed.length == len(whole)
    assert compressed.chunks == ()  # taken over by the write, freed as sent
    stored = blobs.read("rk1", "snapshot", "run 1")
    assert stored is not None and stored == zlib.decompress(whole)
    assert json.loads(stored)["cas_mailboxes"] == cas
    rows = list(store.evidence.rows_between("rk1", "snapshot.", "snapshot.~"))
    assert len(rows) == rows[0]["of"] >= 3 and rows[0]["size"] == len(stored)
    # The same blob handed over uncompressed is stored in the same format, read the same way.
    assert blobs.write("rk2", {"snapshot": stored}) > 0
    assert blobs.read("rk2", "snapshot", "run 2") == stored
    # A compressed blob given in odd pieces is stored whole.
    odd = Compressed(tuple(whole[i : i + 777] for i in range(0, len(whole), 777)), len(stored))
    blobs.write("rk3", {"snapshot": odd})
    assert blobs.read("rk3", "snapshot", "run 3") == stored
    assert zlib.decompress(whole) == stored


@pytest.mark.parametrize("parallel", [False, True])
def test_collect_streamed_stores_what_collect_evidence_encodes(
    exchange_emulator: Emulator, client: ExchangeClient, parallel: bool
) -> None:
    domain = exchange_emulator.domain
    streamed = collect_streamed(client, tenant=domain, now=NOW, parallel=parallel)
    expected = collect_evidence(client, tenant=domain, now=NOW, parallel=parallel)
    assert inflate(streamed.evidence) == expected
    snapshot = streamed.snapshot()
    assert streamed.joined
    assert snapshot == read_evidence(expected, source="Exchange collection")
    assert snapshot.mailboxes is not None and len(snapshot.mailboxes) == 250


@pytest.mark.parametrize("cmdlet", ["Get-CASMailbox", "Get-Mailbox"])
def test_a_read_cut_short_while_judging_is_null_never_a_shorter_list(
    exchange_emulator: Emulator, client: ExchangeClient, cmdlet: str
) -> None:
    emu = exchange_emulator
    emu.faults.add("drop", cmdlet=cmdlet, page=5)  # after four pages were read and joined
    streamed = collect_streamed(client, tenant=emu.domain, now=NOW)
    found = json.loads(inflate(streamed.evidence))
    member = "cas_mailboxes" if cmdlet == "Get-CASMailbox" else "mailboxes"
    other = "mailboxes" if member == "cas_mailboxes" else "cas_mailboxes"
    assert found[member] is None and len(found[other]) == 250
    assert [e["source"] for e in found["errors"]] == [cmdlet]
    snapshot = streamed.snapshot()
    assert snapshot == read_evidence(inflate(streamed.evidence), source="Exchange collection")
    if member == "cas_mailboxes":
        assert snapshot.mailboxes is None
    else:
        assert not snapshot.directory_collected
        assert snapshot.mailboxes is not None and len(snapshot.mailboxes) == 250


def audit_streamed(
    emu: Emulator, store: Any, allowlist: Path | None = None
) -> tuple[Any, list[tuple[StreamedEvidence, bytes]]]:
    """The audit, and what each collection gave it with the bytes its evidence inflates to
    (taken before the store takes the compressed pieces over)."""
    collected: list[tuple[StreamedEvidence, bytes]] = []
    with httpx.Client(timeout=30) as http:
        client = ExchangeClient(
            base_url=emu.base_url,
            tenant=emu.domain,
            tokens=StaticToken(EMULATOR_TOKEN),
            http=http,
            sleep=lambda _: None,
            page_size=40,
        )

        def collect(now: datetime) -> StreamedEvidence:
            streamed = collect_streamed(client, tenant=emu.domain, now=now)
            collected.append((streamed, inflate(streamed.evidence)))
            return streamed

        summary = run_audit(
            store=store,
            collect=collect,
            tenant=emu.domain,
            allowlist_path=allowlist,
            clock=lambda: NOW,
        )
    return summary, collected


def test_the_audit_stores_the_compressed_evidence_it_judged(
    azurite: str, exchange_emulator: Emulator, tmp_path: Path
) -> None:
    emu = exchange_emulator
    guids = sorted(emu.state.cas)
    emu.state.cas[guids[3]]["SmtpClientAuthenticationDisabled"] = False
    emu.state.cas[guids[4]]["Name"] = "Zoë Ø’Brien 日本"
    emu.state.cas[guids[5]]["Name"] = "bad \udc80 record"
    allowlist = tmp_path / "allow.txt"
    allowlist.write_text(emu.state.cas[guids[0]]["PrimarySmtpAddress"] + "\n")
    store = new_store(azurite)
    summary, collected = audit_streamed(emu, store, allowlist)
    assert summary.complete and summary.evaluation is not None
    streamed, judged = collected[0]
    assert streamed.joined
    assert summary.counts["mailboxes"] == 250
    stored = store.read_blob(summary.run_id, "snapshot")
    assert stored is not None and stored == judged
    assert streamed.evidence.chunks == ()  # the store took them over
    assert store.run(summary.run_id).evidence_bytes >= streamed.evidence.length
    # The bad record: one unknown mailbox, named in the errors; the run is whole.
    assert any(e.source == f"record:{guids[5]}" for e in summary.errors)
    # Judged again from what was stored (as `replay` does): the very same findings.
    again = evaluate(
        screen(parse_snapshot(stored, source="stored")),
        load_allowlist(allowlist).allowlist,
        NOW.date(),
        evaluated_at=NOW,
    )
    assert again.findings == summary.evaluation.findings
    assert again.counts == summary.evaluation.counts


def test_a_directory_read_cut_short_is_an_incomplete_run(
    azurite: str, exchange_emulator: Emulator
) -> None:
    emu = exchange_emulator
    emu.faults.add("drop", cmdlet="Get-Mailbox", page=3)
    store = new_store(azurite)
    with pytest.raises(AuditIncomplete) as caught:
        audit_streamed(emu, store)
    summary = caught.value.summary
    assert not summary.complete and summary.status == "incomplete"
    assert [e.source for e in summary.errors] == ["Get-Mailbox"]
    stored = store.read_blob(summary.run_id, "snapshot")
    assert stored is not None and json.loads(stored)["mailboxes"] is None
    assert summary.counts["mailboxes"] == 250  # judged from the CAS listing, never fewer
