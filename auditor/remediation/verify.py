"""Verify after a change, with replication in mind (docs/exchange-protocol.md).

A read right after `Set-CASMailbox` can still return the old value. Each written change is
read back with backoff (0.5 s doubling to 15 s, the last read at the bound) until the new value
shows or `bound` seconds (REMEDIATION_VERIFY_SECONDS) have passed since the write; only then is
it "verify failed". Checks are settled together: every due read runs in a bounded thread pool,
so a plan of many targets takes about one replication delay, not one per target. The detail
says how long it took and how many reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from auditor.core.errors import AuditorError
from auditor.core.model import Setting
from auditor.core.proposals import Result, TargetRecord

__all__ = ["Check", "Verifier"]

_show = Setting.text
_FIRST_WAIT = 0.5
_MAX_WAIT = 15.0


@dataclass(eq=False)
class Check:
    """One written change waiting to be seen: `read` returns the value a read shows now."""

    target: TargetRecord
    read: Callable[[], bool | None]
    expected: bool | None
    change: str  # what was written, for the detail
    before: str
    written_at: float = -1.0  # set by `Verifier.add` when not given
    reads: int = 0
    due: float = 0.0
    wait: float = _FIRST_WAIT
    result: Result = Result.PENDING
    detail: str = ""
    after: str = ""


class Verifier:
    """Reads changes back until they show, at most `bound` seconds after each write."""

    def __init__(
        self,
        *,
        bound: float = 120.0,
        workers: int = 16,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bound = max(0.0, bound)
        self.workers = max(1, workers)
        self.sleep = sleep
        self.clock = clock
        self._open: list[Check] = []

    def add(self, check: Check) -> None:
        """Call right after the write: the bound counts from now."""
        if check.written_at < 0:
            check.written_at = self.clock()
        check.due = check.written_at
        self._open.append(check)

    def settle(self) -> list[Check]:
        """Decide every open check; returns them, each with its result, detail and value."""
        done: list[Check] = []
        if not self._open:
            return done
        workers = min(self.workers, len(self._open))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
            while self._open:
                now = self.clock()
                due = [c for c in self._open if c.due <= now]
                if not due:
                    self.sleep(max(0.0, min(c.due for c in self._open) - now))
                    continue
                for check, seen in zip(due, pool.map(_read, due), strict=True):
                    check.reads += 1
                    if self._decide(check, seen):
                        self._open.remove(check)
                        done.append(check)
        return done

    def _decide(self, check: Check, seen: bool | AuditorError | None) -> bool:
        elapsed = self.clock() - check.written_at
        took = f"{elapsed:.1f} s, {check.reads} read{'s' if check.reads != 1 else ''}"
        if isinstance(seen, AuditorError):
            check.result = Result.FAILED
            check.detail = f"changed, but the read-back failed ({took}): {seen}"
            return True
        check.after = _show(seen)
        if seen is check.expected:
            check.result = Result.APPLIED
            check.detail = f"{check.change}; verified after {took}"
            return True
        if elapsed >= self.bound:
            check.result = Result.FAILED
            check.detail = (
                f"verify failed: read back {_show(seen)}, expected {_show(check.expected)}, "
                f"still after {took} (REMEDIATION_VERIFY_SECONDS {self.bound:g})"
            )
            return True
        check.due = min(self.clock() + check.wait, check.written_at + self.bound)
        check.wait = min(check.wait * 2, _MAX_WAIT)
        return False


def _read(check: Check) -> bool | AuditorError | None:
    try:
        return check.read()
    except AuditorError as exc:
        return exc
