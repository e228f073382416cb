"""The three reads of an audit, as a snapshot document or as evidence bytes.

A read that fails leaves its evidence `None` and adds an `errors` entry naming the cmdlet; it
never yields a shorter list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from auditor.core.errors import CollectionFailed
from auditor.core.evidence import EvidenceStream, ListingEncoder, StreamedEvidence, encode_document
from auditor.core.model import CollectionError
from auditor.core.snapshot import snapshot_document
from auditor.exchange.client import ExchangeClient

__all__ = ["collect_evidence", "collect_snapshot", "collect_streamed", "EVIDENCE_SOURCE"]

EVIDENCE_SOURCE = "Exchange collection"  # how errors name the collected evidence

log = logging.getLogger(__name__)


def collect_snapshot(
    client: ExchangeClient, *, tenant: str, now: datetime, parallel: bool = False
) -> dict[str, Any]:
    """Read the three sources and return the `smtp-auth-snapshot/1` document.

    A read that fails leaves its evidence `None` and adds an `errors` entry naming the cmdlet;
    it never yields a shorter list. With `parallel` the three reads run at once (three
    connections; each paging chain stays sequential, so at most three requests are in flight).
    """
    results, errors = _read_sources(
        {
            "Get-TransportConfig": client.get_transport_config,
            "Get-CASMailbox": client.get_cas_mailboxes,
            "Get-Mailbox": client.get_mailboxes,
        },
        parallel,
    )
    return snapshot_document(
        tenant=tenant,
        collected_at=now,
        transport_config=results["Get-TransportConfig"],
        cas_mailboxes=results["Get-CASMailbox"],
        mailboxes=results["Get-Mailbox"],
        errors=errors,
    )


def collect_evidence(
    client: ExchangeClient, *, tenant: str, now: datetime, parallel: bool = False
) -> bytes:
    """What `collect_snapshot` reads, as the evidence bytes the audit stores and judges
    (`evidence.encode_document` of the same document, byte for byte).

    Each page's records are encoded as soon as they are read, so the listings are never held
    as dictionaries (a 100,000-mailbox tenant: ~60 MB of JSON instead of ~270 MB of objects).
    A read that fails leaves its member `null` and adds an `errors` entry naming the cmdlet;
    the pages it had already read are dropped, never stored as a shorter list.
    """
    listings = {"cas_mailboxes": ListingEncoder(), "mailboxes": ListingEncoder()}

    def listing(read: Callable[..., Any], member: str) -> Callable[[], Any]:
        def run() -> ListingEncoder:
            read(on_page=listings[member].add)
            return listings[member]

        return run

    results, errors = _read_sources(
        {
            "Get-TransportConfig": client.get_transport_config,
            "Get-CASMailbox": listing(client.get_cas_mailboxes, "cas_mailboxes"),
            "Get-Mailbox": listing(client.get_mailboxes, "mailboxes"),
        },
        parallel,
    )
    read = {
        "cas_mailboxes": results["Get-CASMailbox"] is not None,
        "mailboxes": results["Get-Mailbox"] is not None,
    }
    document = snapshot_document(
        tenant=tenant,
        collected_at=now,
        transport_config=results["Get-TransportConfig"],
        cas_mailboxes=[] if read["cas_mailboxes"] else None,
        mailboxes=[] if read["mailboxes"] else None,
        errors=errors,
    )
    del results
    return encode_document(
        document, listings={member: listings[member] for member in read if read[member]}
    )


def collect_streamed(
    client: ExchangeClient,
    *,
    tenant: str,
    now: datetime,
    parallel: bool = True,
    source: str = EVIDENCE_SOURCE,
) -> StreamedEvidence:
    """What the nightly audit collects (issue 17, docs/architecture.md "A nightly run"): the
    evidence of `collect_evidence`, compressed as the pages arrive, and the snapshot joined
    from those same page bytes while the reads page (`core.evidence.EvidenceStream`).

    A read that fails leaves its member `null` and adds an `errors` entry naming the cmdlet;
    its pages are dropped from the evidence, never stored as a shorter list.
    """
    stream = EvidenceStream(source)

    def listing(read: Callable[..., Any], member: str) -> Callable[[], Any]:
        def run() -> int:
            try:
                read(on_page=stream.sink(member))
            except CollectionFailed:
                stream.failed(member)
                raise
            return stream.count(member)

        return run

    results, errors = _read_sources(
        {
            "Get-TransportConfig": client.get_transport_config,
            "Get-CASMailbox": listing(client.get_cas_mailboxes, "cas_mailboxes"),
            "Get-Mailbox": listing(client.get_mailboxes, "mailboxes"),
        },
        parallel,
    )
    document = snapshot_document(
        tenant=tenant,
        collected_at=now,
        transport_config=results["Get-TransportConfig"],
        cas_mailboxes=None,  # written from the pages (or null: the read failed)
        mailboxes=None,
        errors=errors,
    )
    return stream.finish(document)


def _read_sources(
    readers: Mapping[str, Callable[[], Any]], parallel: bool
) -> tuple[dict[str, Any], list[CollectionError]]:
    """source -> what its reader returned (None if it failed), and the failures in order."""
    errors: list[CollectionError] = []

    def read(source: str) -> Any:
        try:
            return readers[source]()
        except CollectionFailed as exc:
            log.error("%s failed: %s", source, exc)
            errors.append(CollectionError(source=source, message=str(exc)))
            return None

    if parallel:
        with ThreadPoolExecutor(max_workers=len(readers), thread_name_prefix="exo-read") as pool:
            results = dict(zip(readers, pool.map(read, readers), strict=True))
    else:
        results = {source: read(source) for source in readers}
    order = list(readers)
    errors.sort(key=lambda e: order.index(e.source))
    return results, errors
