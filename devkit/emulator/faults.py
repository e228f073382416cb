"""Switchable faults of the emulated endpoint.

A fault fires on requests for one cmdlet (or any) and one page of a paging chain (or any page),
a given number of times (or forever). Kinds:

- `throttle`: HTTP 429 with `Retry-After` (decimal seconds, `retry_after`; None: no header).
- `unavailable`: HTTP `status` (503 by default, or 504) with an error body.
- `transient`: HTTP 500 whose error names a transient Exchange exception (`DCOverloadedException`).
- `deny`: the RBAC refusal, HTTP 401 "User is not allowed to call <cmdlet>" (use `times=None`).
- `adminapi_error`: HTTP 200 with part of the page and an entry in `@adminapi.errors`.
- `drop`: the response is cut in the middle of its body and the connection closed.
- `malformed`: HTTP 200 whose body is not valid JSON.
- `claims`: HTTP 401 with a `WWW-Authenticate` claims challenge (`insufficient_claims`).
- `forbidden`: the RBAC 403 of a cmdlet the identity lacks: NUL bytes labelled gzip.
- `role_parameters`: HTTP 403 "parameters … aren't present in the role definition".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Fault", "Faults", "FAULT_KINDS"]

FAULT_KINDS = frozenset(
    {
        "throttle",
        "unavailable",
        "transient",
        "deny",
        "adminapi_error",
        "drop",
        "malformed",
        "claims",
        "forbidden",
        "role_parameters",
    }
)


@dataclass
class Fault:
    kind: str
    cmdlet: str | None = None
    page: int | None = None
    times: int | None = 1
    retry_after: str | None = "0.01"
    status: int = 503
    fired: int = 0

    def matches(self, cmdlet: str, page: int) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.cmdlet is not None and self.cmdlet.lower() != cmdlet.lower():
            return False
        return self.page is None or self.page == page


class Faults:
    """The faults currently switched on; thread-safe, first match fires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Fault] = []

    def add(
        self,
        kind: str,
        *,
        cmdlet: str | None = None,
        page: int | None = None,
        times: int | None = 1,
        retry_after: str | float | None = "0.01",
        status: int = 503,
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        fault = Fault(
            kind=kind,
            cmdlet=cmdlet,
            page=page,
            times=times,
            retry_after=None if retry_after is None else str(retry_after),
            status=status,
        )
        with self._lock:
            self._items.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def take(self, cmdlet: str, page: int) -> Fault | None:
        """The fault that fires for this request, counting it; None when none applies."""
        with self._lock:
            for fault in self._items:
                if fault.matches(cmdlet, page):
                    fault.fired += 1
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def __iter__(self) -> Iterator[Fault]:
        with self._lock:
            return iter(list(self._items))
