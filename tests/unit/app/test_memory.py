"""`app.memory.release`: what nothing holds is freed, and glibc gives its free pages back."""

from __future__ import annotations

import ctypes.util
import gc
import sys
import weakref

import pytest

from auditor.app import memory


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_release_frees_cyclic_garbage() -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle: reference counting alone never frees it
    gone = weakref.ref(a)
    enabled = gc.isenabled()
    gc.disable()  # as during an audit's evaluation
    try:
        del a, b
        assert gone() is not None
        memory.release()
        assert gone() is None
    finally:
        if enabled:
            gc.enable()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None,
    reason="glibc only",
)
def test_release_trims_on_glibc_and_can_be_called_again() -> None:
    assert memory.release() is True
    assert memory.release(collect=False) is True  # the arena cap is set once, trimming again
