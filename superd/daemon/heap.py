"""
Keeping CPython's cyclic garbage collector off the daemon's long-lived objects.

Once superd is up (and after each successful reload) almost everything it
holds -- the configuration, the service tree, the modules of Twisted and the
libraries, tens of thousands of objects -- lives until the next reload.
The collector would still walk all of it on every full collection, and the
steady churn of per-connection objects brings those under load.
``gc.freeze()`` moves the survivors to the permanent generation, which
collections skip (bench/README, "Why the code is the way it is", has the
figures).

What loading the configuration allocated and freed (parse trees, drafts,
the strings of long address lists) stays in the C heap unless it is handed
back: each settling then asks glibc to return the free memory at the top of
its heap and in its empty pages (``malloc_trim``), so an idle daemon's
resident memory is what it holds, not what starting it took.

Frozen objects are still freed by reference counting; only cyclic garbage
among them waits.  So each settling first unfreezes and collects -- freeing,
after a reload, the cycles of the services it replaced -- and then freezes
what is left.  Objects of connections that were open during a settling
(their protocols and transports hold each other) are therefore freed at the
next reload rather than at once: a bounded delay, not a leak that grows.
"""

from __future__ import annotations

import ctypes
import gc

__all__ = ["settle"]


def settle() -> int:
    """Collect everything, then freeze the survivors; how many are frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _trim()
    return gc.get_freeze_count()


def _trim() -> None:
    """Give the C heap's free memory back to the system (glibc only)."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (AttributeError, OSError):
        return  # not glibc: nothing to ask
    trim(0)
