"""How the emulated service behaves where the real one varies (docs/exchange-protocol.md).

`Behaviour` holds the switches; its defaults are the harshest behaviour public sources show:
the truncation warning on every page that has a nextLink, nextLinks bound to the session's
`connection-id` and valid for 30 minutes, and real-looking records. Redirects, RBAC refusals,
replication lag and rate limits are off unless asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ABSENT", "Behaviour", "Lag", "RateLimit"]

ABSENT: Any = object()


@dataclass(frozen=True)
class Behaviour:
    """The switches. `denied`: cmdlets the identity's roles lack (403, NUL bytes labelled
    gzip). `redirects`: host -> host answered with a 302 (the front door sending a tenant to its
    regional host). `replication_delay`: seconds a read shows the value from before a write.
    `rate_limit`: (requests, window seconds) per tenant, announced in `Rate-Limit-Remaining`
    and `Rate-Limit-Reset` (seconds to the window's end) and enforced with 429."""

    page_warnings: bool = True
    bind_links: bool = True
    link_ttl: float = 1800.0
    denied: frozenset[str] = frozenset()
    redirects: Mapping[str, str] = field(default_factory=dict)
    replication_delay: float = 0.0
    rate_limit: tuple[int, float] | None = None

    def denies(self, cmdlet: str) -> bool:
        return cmdlet.lower() in {name.lower() for name in self.denied}


class RateLimit:
    """A fixed-window request budget; thread-safe."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs at least one request per positive window")
        self.limit, self.window = limit, window
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._used = 0

    def take(self) -> tuple[bool, int, float]:
        """(allowed, remaining after this request, seconds until the window resets)."""
        with self._lock:
            now = self._clock()
            if now - self._start >= self.window:
                self._start, self._used = now, 0
            reset = max(0.0, self.window - (now - self._start))
            if self._used >= self.limit:
                return False, 0, reset
            self._used += 1
            return True, self.limit - self._used, reset


class Lag:
    """Reads that lag writes: the values from before a write, until `delay` has passed."""

    def __init__(self, delay: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = delay
        self._clock = clock
        self._old: dict[str, tuple[float, dict[str, Any]]] = {}

    def wrote(self, key: str, before: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
        """Remember what a read shows until the write replicates (call under the state lock)."""
        if self.delay <= 0:
            return
        pending = self._old.get(key)
        old = dict(pending[1]) if pending and self._clock() < pending[0] else {}
        for name in changes:
            old.setdefault(name, before.get(name, ABSENT))
        self._old[key] = (self._clock() + self.delay, old)

    def view(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        """The record as a read sees it now (call under the state lock)."""
        if not self._old:
            return record
        pending = self._old.get(key)
        if pending is None:
            return record
        visible_at, old = pending
        if self._clock() >= visible_at:
            del self._old[key]
            return record
        shown = dict(record)
        for name, value in old.items():
            if value is ABSENT:
                shown.pop(name, None)
            else:
                shown[name] = value
        return shown
