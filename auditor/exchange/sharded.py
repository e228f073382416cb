"""One listing read as K shard chains at once, merged (issue 17 item 6; docs/exchange-protocol.md,
"Sharded reads").

Each shard is a read of its own (its own paging chain and `client-request-id`), at most
`max_parallel` of them at a time. Their pages go to the read's one sink through `Merger`,
which hands them over one at a time (so a sink that is not thread-safe, such as a listing of
`core.evidence.EvidenceStream`, sees the pages of one source as if one chain had read them)
and drops any record whose `Guid` an earlier page already gave (a mailbox renamed between two
shards' reads can be listed by both; it is counted once). A shard that fails fails the read:
the other chains stop at their next page and the first failure is raised, as a failing page of
an unsharded read raises; the pages already handed over are then a partial read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from auditor.core.errors import CollectionFailed

__all__ = ["Merger", "read_shards"]

Sink = Callable[[list[dict[str, Any]]], None]


class Merger:
    """The sink the shard chains of one read share: serialised, duplicates (by `Guid`,
    case-insensitive) dropped. `stop()` makes every later page raise, ending the chains."""

    def __init__(self, sink: Sink, cmdlet: str) -> None:
        self._sink = sink
        self._cmdlet = cmdlet
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._stopped = threading.Event()
        self.duplicates = 0

    def stop(self) -> None:
        self._stopped.set()

    def __call__(self, page: list[dict[str, Any]]) -> None:
        with self._lock:
            if self._stopped.is_set():
                raise CollectionFailed(
                    f"{self._cmdlet}: another shard of the read failed; the read is incomplete"
                )
            kept = []
            for record in page:
                guid = record.get("Guid")
                if isinstance(guid, str):
                    key = guid.lower()
                    if key in self._seen:
                        self.duplicates += 1
                        continue
                    self._seen.add(key)
                kept.append(record)  # no Guid: kept, `core.screen` names it
            if kept:
                self._sink(kept)


def read_shards(
    cmdlet: str,
    filters: Sequence[str | None],
    read: Callable[[str | None, Sink], list[str]],
    sink: Sink,
    *,
    max_parallel: int,
) -> tuple[list[str], int]:
    """Run `read(filter, page_sink)` for every filter, at most `max_parallel` at once, every
    page into `sink` through one `Merger`; (the warnings of all shards, duplicates dropped).
    `read` returns its shard's non-fatal warnings. Raises the first shard's CollectionFailed."""
    merger = Merger(sink, cmdlet)
    warnings: list[str] = []
    with ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="exo-shard") as pool:
        futures = [pool.submit(read, shard, merger) for shard in filters]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failure = next((f.exception() for f in futures if f.done() and f.exception()), None)
        if failure is not None:
            merger.stop()
            for future in pending:
                future.cancel()
            wait(futures)
            raise failure
    for future in futures:
        warnings.extend(future.result())
    return warnings, merger.duplicates
