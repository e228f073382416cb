"""Progress on standard error for long commands (an audit of 100,000 mailboxes reads for
minutes): elapsed time and what has been read so far, redrawn on one line.

Only when standard error is a terminal and `--quiet` is not given: schedulers, pipes and log
files get nothing extra. Standard output (the report) is never touched.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["progress", "wanted"]

# The loggers whose INFO lines say what was read ("Get-CASMailbox: 100000 records in 100 pages").
_SOURCES = ("auditor.exchange.client",)


def wanted(quiet: bool, stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    try:
        return not quiet and stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Done(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.parts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " records in " in message:
            self.parts.append(message.split(" pages")[0] + " pages")


@contextmanager
def progress(label: str, *, enabled: bool, stream: TextIO | None = None) -> Iterator[None]:
    """While the block runs, redraw "label: 12 s; Get-Mailbox: 3000 records in 3 pages"."""
    if not enabled:
        yield
        return
    out = stream or sys.stderr
    done = _Done()
    loggers = [logging.getLogger(name) for name in _SOURCES]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(done)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    stop = threading.Event()
    start = time.monotonic()

    def line() -> None:
        read = "; ".join(done.parts) or "reading the tenant"
        out.write(f"\r\033[K{label}: {time.monotonic() - start:.0f} s; {read}")
        out.flush()

    def draw() -> None:
        line()
        while not stop.wait(1.0):
            line()

    thread = threading.Thread(target=draw, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2.0)
        out.write("\r\033[K")
        out.flush()
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(done)
            logger.setLevel(level)
