"""Evidence bytes: encoded member by member (and page by page by the collector) exactly as
`json.dumps` would, and read back streamed into the same Snapshot."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from auditor.core.errors import InputError
from auditor.core.evidence import ListingEncoder, encode_document, read_evidence
from auditor.core.snapshot import parse_snapshot
from auditor.exchange.client import ExchangeClient
from auditor.exchange.collect import collect_evidence, collect_snapshot
from devkit.emulator import Emulator

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def document(count: int) -> dict[str, Any]:
    cas = [
        {
            "Guid": f"00000000-0000-4000-8000-{n:012d}",
            "Name": f"Zoë Ø’Brien {n} 日本",
            "PrimarySmtpAddress": f"user{n}@contoso.com",
            "SmtpClientAuthenticationDisabled": [None, True, False][n % 3],
        }
        for n in range(count)
    ]
    mailboxes = [
        {
            "Guid": f"00000000-0000-4000-8000-{n:012d}",
            "UserPrincipalName": f"user{n}@contoso.onmicrosoft.com",
            "RecipientTypeDetails": "UserMailbox",
            "EmailAddresses": [f"SMTP:user{n}@contoso.com", f"smtp:alias{n}@contoso.com"],
        }
        for n in range(count)
        if n % 7  # some mailboxes without a directory record
    ]
    return {
        "schema": "smtp-auth-snapshot/1",
        "tenant": "contoso.onmicrosoft.com",
        "collected_at": "2026-11-26T02:00:00Z",
        "transport_config": {
            "Identity": "Transport Settings",
            "SmtpClientAuthenticationDisabled": False,
        },
        "cas_mailboxes": cas,
        "mailboxes": mailboxes,
        "errors": [],
    }


@pytest.mark.parametrize("count", [0, 1, 999, 1000, 2501])
def test_encode_document_is_json_dumps_byte_for_byte(count: int) -> None:
    original = document(count)
    expected = dumps(original)
    spent = copy.deepcopy(original)
    assert encode_document(spent) == expected
    # Each listing is let go once encoded: the document is spent.
    assert spent["cas_mailboxes"] is None and spent["mailboxes"] is None
    assert spent["tenant"] == original["tenant"]


def test_missing_listings_stay_null() -> None:
    original = document(3)
    original["cas_mailboxes"] = None
    original["errors"] = [{"source": "Get-CASMailbox", "message": "refusé"}]
    assert encode_document(copy.deepcopy(original)) == dumps(original)


def test_listing_encoder_pages_join_into_the_whole_array() -> None:
    original = document(2600)
    records = original["cas_mailboxes"]
    listing = ListingEncoder()
    for page in (records[:1000], [], records[1000:1001], records[1001:]):
        listing.add(page)
    assert listing.count == 2600
    placeholder = {**original, "cas_mailboxes": []}
    assert encode_document(placeholder, listings={"cas_mailboxes": listing}) == dumps(original)
    assert listing.chunks == []  # given up as copied


def test_read_evidence_streams_to_the_same_snapshot() -> None:
    raw = dumps(document(9000))  # several MiB: multi-byte characters cross the read chunks
    assert len(raw) > 2 * 2**20
    assert read_evidence(raw, source="run") == parse_snapshot(raw, source="run")


def test_read_evidence_names_what_is_wrong() -> None:
    bad = document(3)
    bad["cas_mailboxes"][1]["SmtpClientAuthenticationDisabled"] = "yes"
    with pytest.raises(InputError) as caught:
        read_evidence(dumps(bad), source="Exchange collection")
    assert "Exchange collection" in str(caught.value)
    assert "cas_mailboxes[1]" in str(caught.value)


@pytest.mark.parametrize("parallel", [False, True])
def test_collect_evidence_is_the_collected_document_encoded(
    exchange_emulator: Emulator, client: ExchangeClient, parallel: bool
) -> None:
    domain = exchange_emulator.domain
    evidence = collect_evidence(client, tenant=domain, now=NOW, parallel=parallel)
    expected = collect_snapshot(client, tenant=domain, now=NOW, parallel=parallel)
    assert len(expected["cas_mailboxes"]) == 250
    assert evidence == dumps(expected)


def test_collect_evidence_drops_a_read_cut_short(
    exchange_emulator: Emulator, client: ExchangeClient
) -> None:
    emu = exchange_emulator
    emu.faults.add("drop", cmdlet="Get-CASMailbox", page=5)  # after four pages were read
    emu.faults.add("deny", cmdlet="Get-TransportConfig", times=None)
    found = json.loads(collect_evidence(client, tenant=emu.domain, now=NOW))
    assert found["transport_config"] is None
    assert found["cas_mailboxes"] is None  # never the four pages it had
    assert len(found["mailboxes"]) == 250
    assert [e["source"] for e in found["errors"]] == ["Get-TransportConfig", "Get-CASMailbox"]
    snapshot = read_evidence(dumps(found), source="collection")
    assert snapshot.mailboxes is None and snapshot.org_disabled is None
