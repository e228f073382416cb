"""Judging while paging (issue 17): each page's bytes are compressed into the evidence and
joined into the snapshot as they arrive; the snapshot is the one the stored bytes give."""

from __future__ import annotations

import json
import random
import threading
import zlib
from typing import Any

import pytest

from auditor.core.errors import InputError
from auditor.core.evidence import (
    Compressed,
    EvidenceStream,
    StreamedEvidence,
    encode_document,
    inflate,
    read_evidence,
)
from auditor.core.screen import RECORD_SOURCE, screen
from auditor.core.snapshot import parse_snapshot

SOURCE = "Exchange collection"
LISTINGS = ("cas_mailboxes", "mailboxes")


def guid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def document(count: int, *, org: bool | None = False) -> dict[str, Any]:
    """A collected document: CAS records, and directory records for most of them (some only
    in the directory listing), in another order than the CAS listing."""
    cas = [
        {
            "Guid": guid(n),
            "ExternalDirectoryObjectId": f"edo-{n}",
            "Name": f"Zoë Ø’Brien {n} 日本",
            "PrimarySmtpAddress": f"user{n}@contoso.com",
            "SmtpClientAuthenticationDisabled": [None, True, False][n % 3],
        }
        for n in range(count)
    ]
    directory = [
        {
            "Guid": guid(n),
            "ExternalDirectoryObjectId": f"edo-{n}",
            "UserPrincipalName": f"user{n}@contoso.onmicrosoft.com",
            "RecipientTypeDetails": "UserMailbox",
            "EmailAddresses": [f"SMTP:user{n}@contoso.com", f"smtp:alias{n}@contoso.com"],
        }
        for n in [*range(count - 1, -1, -1), count, count + 1]
        if n % 7
    ]
    return {
        "schema": "smtp-auth-snapshot/1",
        "tenant": "contoso.onmicrosoft.com",
        "collected_at": "2026-11-26T02:00:00Z",
        "transport_config": {"SmtpClientAuthenticationDisabled": org},
        "cas_mailboxes": cas,
        "mailboxes": directory,
        "errors": [],
    }


def pages(records: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def stream(
    doc: dict[str, Any],
    order: list[str],
    *,
    size: int = 37,
    failed: dict[str, int] | None = None,
) -> StreamedEvidence:
    """Feed the listings' pages in `order` (one member name per page taken). `failed`: member
    -> pages after which its read fails (the rest of its pages never arrive)."""
    evidence = EvidenceStream(SOURCE)
    queues = {member: pages(doc[member], size) for member in LISTINGS}
    taken = dict.fromkeys(LISTINGS, 0)
    for member in order:
        if not queues[member] or (failed and taken[member] >= failed.get(member, 1 << 30)):
            continue
        evidence.sink(member)(queues[member].pop(0))
        taken[member] += 1
    for member, after in (failed or {}).items():
        assert taken[member] == after
        evidence.failed(member)
    return evidence.finish(placeholders(doc))


def placeholders(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "cas_mailboxes": None, "mailboxes": None}


def interleavings(doc: dict[str, Any], size: int, seed: int) -> list[str]:
    counts = {m: len(pages(doc[m], size)) for m in LISTINGS}
    order = [m for m in LISTINGS for _ in range(counts[m])]
    random.Random(seed).shuffle(order)
    return order


def stored(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("seed", range(6))
def test_any_interleaving_gives_the_snapshot_of_the_stored_bytes(seed: int) -> None:
    doc = document(400)
    streamed = stream(doc, interleavings(doc, 37, seed))
    raw = inflate(streamed.evidence)
    assert raw == stored(doc) == encode_document(json.loads(stored(doc)))
    assert streamed.evidence.size == len(raw)
    assert zlib.decompress(b"".join(streamed.evidence.chunks)) == raw  # one zlib stream
    snapshot = streamed.snapshot()
    assert streamed.joined
    assert snapshot == parse_snapshot(raw, source=SOURCE)
    assert snapshot == read_evidence(streamed.evidence, source=SOURCE)  # inflated as read


def test_all_cas_pages_first_or_all_directory_pages_first() -> None:
    doc = document(300)
    expected = parse_snapshot(stored(doc), source=SOURCE)
    for order in (
        ["cas_mailboxes"] * 9 + ["mailboxes"] * 9,
        ["mailboxes"] * 9 + ["cas_mailboxes"] * 9,
    ):
        assert stream(doc, order).snapshot() == expected


def test_two_reads_paging_in_two_threads_at_once() -> None:
    doc = document(3000)
    evidence = EvidenceStream(SOURCE)
    start = threading.Barrier(2)

    def read(member: str) -> None:
        start.wait()
        for page in pages(doc[member], 25):
            evidence.sink(member)(page)

    threads = [threading.Thread(target=read, args=(m,)) for m in LISTINGS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    streamed = evidence.finish(placeholders(doc))
    raw = inflate(streamed.evidence)
    assert raw == stored(doc)
    assert streamed.snapshot() == parse_snapshot(raw, source=SOURCE)


def test_empty_listings_and_no_pages() -> None:
    doc = {**document(0), "mailboxes": []}
    streamed = stream(doc, [])
    assert inflate(streamed.evidence) == stored(doc)
    snapshot = streamed.snapshot()
    assert snapshot.mailboxes == ()


@pytest.mark.parametrize("after", [0, 3])
def test_a_directory_read_that_fails_after_some_pages_is_null_never_shorter(after: int) -> None:
    doc = document(200)
    order = interleavings(doc, 37, 1)
    streamed = stream(doc, order, failed={"mailboxes": after})
    found = json.loads(inflate(streamed.evidence))
    assert found["mailboxes"] is None
    assert len(found["cas_mailboxes"]) == 200
    snapshot = streamed.snapshot()
    # The joined records paired with directory records that are no longer evidence: after a
    # page was joined the join is given up and the stored bytes are read instead.
    assert streamed.joined is (after == 0)
    assert snapshot == parse_snapshot(inflate(streamed.evidence), source=SOURCE)
    assert not snapshot.directory_collected
    assert snapshot.mailboxes is not None and len(snapshot.mailboxes) == 200
    assert all(m.user_principal_name is None for m in snapshot.mailboxes)


def test_a_cas_read_that_fails_after_some_pages_leaves_no_mailboxes() -> None:
    doc = document(200)
    streamed = stream(doc, interleavings(doc, 37, 2), failed={"cas_mailboxes": 2})
    found = json.loads(inflate(streamed.evidence))
    assert found["cas_mailboxes"] is None and len(found["mailboxes"]) == len(doc["mailboxes"])
    snapshot = streamed.snapshot()
    assert snapshot.mailboxes is None and snapshot.directory_collected
    assert snapshot == parse_snapshot(inflate(streamed.evidence), source=SOURCE)


def test_a_bad_value_in_a_later_page_is_one_unknown_mailbox_named_in_the_errors() -> None:
    doc = document(200)
    bad = doc["cas_mailboxes"][3 * 37 + 5]  # page 4 of the CAS listing
    bad["Name"] = "broken \udc80 name"  # a lone surrogate, as Exchange can return
    streamed = stream(doc, interleavings(doc, 37, 3))
    raw = inflate(streamed.evidence)
    assert b"\\udc80" in raw  # kept as read, escaped
    snapshot = screen(streamed.snapshot())
    assert streamed.joined
    assert snapshot == screen(parse_snapshot(raw, source=SOURCE))
    named = [e for e in snapshot.errors if e.source.startswith(RECORD_SOURCE)]
    assert [e.source for e in named] == [RECORD_SOURCE + bad["Guid"]]
    assert snapshot.mailboxes is not None
    judged = [m for m in snapshot.mailboxes if m.guid == bad["Guid"]]
    assert len(judged) == 1 and not judged[0].setting_present  # unknown, never dropped


@pytest.mark.parametrize(
    ("member", "position", "change", "message"),
    [
        ("cas_mailboxes", 4 * 37 + 2, {"SmtpClientAuthenticationDisabled": "yes"}, "must be"),
        ("mailboxes", 2 * 37 + 9, {"UserPrincipalName": 5}, "must be a string"),
    ],
)
def test_a_record_the_joiner_refuses_is_named_by_its_number_in_the_listing(
    member: str, position: int, change: dict[str, Any], message: str
) -> None:
    doc = document(300)
    doc[member][position].update(change)
    expected = f"{SOURCE}: {member}[{position}]"
    with pytest.raises(InputError) as one_shot:
        parse_snapshot(stored(doc), source=SOURCE)
    assert expected in str(one_shot.value)
    for seed in range(3):
        streamed = stream(doc, interleavings(doc, 37, seed))
        with pytest.raises(InputError) as caught:
            streamed.snapshot()
        assert str(caught.value) == str(one_shot.value)
        assert message in str(caught.value)


def test_compressed_evidence_inflates_as_a_stream_in_any_chunking() -> None:
    raw = stored(document(500))
    whole = zlib.compress(raw, 1)
    for size in (1, 7, 4096, len(whole)):
        pieces = tuple(whole[i : i + size] for i in range(0, len(whole), size))
        compressed = Compressed(pieces, len(raw))
        assert compressed.length == len(whole)
        assert inflate(compressed) == raw
        assert read_evidence(compressed, source="x") == parse_snapshot(raw, source="x")
