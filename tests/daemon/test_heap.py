"""Tests for superd.daemon.heap: freezing the long-lived heap, collecting first."""

from __future__ import annotations

import gc
import sys
import weakref
from typing import Any

import pytest

from superd.daemon import heap


@pytest.fixture(autouse=True)
def unfrozen() -> Any:
    yield
    gc.unfreeze()  # leave the test process as it was


class Node:
    def __init__(self) -> None:
        self.other: Any = None


def test_settle_freezes_what_lives() -> None:
    """Everything alive ends in the permanent generation, out of the
    collector's walks."""
    kept = Node()
    frozen = heap.settle()
    assert frozen == gc.get_freeze_count() > 0
    assert not any(o is kept for generation in range(3) for o in gc.get_objects(generation))
    gc.unfreeze()
    assert any(o is kept for o in gc.get_objects(2))


def test_settle_again_frees_cycles_frozen_earlier() -> None:
    """A reload drops services whose objects were frozen, some in cycles:
    the next settling unfreezes and collects them."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    heap.settle()
    del a, b
    gc.collect()
    assert gone() is not None  # frozen: full collections do not see the cycle
    heap.settle()
    assert gone() is None


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_settle_hands_freed_c_heap_back() -> None:
    """Memory freed below a block still in use stays in glibc's heap (it
    can only shrink from the top by itself); settling returns it."""
    blocks = [bytearray(2000) for _ in range(20_000)]  # ~40 MB in the C heap
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])  # touched: resident
    top = bytearray(2000)  # keeps the heap's top in use
    del blocks
    before = rss_kib()
    heap.settle()
    assert before - rss_kib() > 20_000
    del top
