"""The alert delivery ledger: `alerts` table, PartitionKey run key, RowKey channel.

What was delivered for which run, so a retried run never tells the same alert twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from auditor.core.errors import StoreError
from auditor.core.history import run_key
from auditor.storage.limits import check_key
from auditor.storage.tables import Table

__all__ = ["AlertLedgerTable"]


class AlertLedgerTable:
    def __init__(self, table: Table, clock: Callable[[], datetime]) -> None:
        self.table = table
        self._clock = clock

    def deliveries(self, run_id: str) -> dict[str, str]:
        """channel -> status of the alerts already sent for a run."""
        return {
            str(row["RowKey"]): str(row.get("status", ""))
            for row in self.table.partition(run_key(run_id))
        }

    def record(self, run_id: str, channel: str, status: str, detail: str) -> None:
        check_key(channel, "alert channel")
        if not channel.replace(".", "").replace("_", "").isalnum():
            raise StoreError(f"alert channel must be letters, digits, . or _, got {channel!r}")
        self.table.replace(
            {
                "PartitionKey": run_key(run_id),
                "RowKey": channel,
                "status": status[:100],
                "detail": detail[:4000],
                "at": self._clock(),
            }
        )
