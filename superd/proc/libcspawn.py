"""
glibc's ``posix_spawn`` called through ctypes, for threads other than the
reactor's.

``os.posix_spawn`` holds the GIL until the child has executed its program
(CPython 3.11 does not release it around the vfork-style clone), so a thread
calling it stops the reactor thread as surely as calling it there.  A ctypes
call releases the GIL for its whole duration: while one thread waits for its
child to exec, the interpreter runs the others.

The child is set up as ``superd.proc.spawner.PosixSpawner`` sets it up with
``os.posix_spawn``: a session leader (``setsid``), every catchable signal at
its default disposition, an empty signal mask, the request's descriptors
duplicated onto the child's numbers, and -- when ``resetids`` is asked --
its effective ids reset to the real ones the spawning thread gave it
(``superd.proc.credentials``).  Exec failures come back as the errno, and
glibc has reaped the failed child by then, as with ``os.posix_spawn``.

Only for glibc on Linux (``LibcSpawn.load`` returns None elsewhere): its
``posix_spawnattr_t`` and ``posix_spawn_file_actions_t`` are opaque, so they
live in buffers larger than any glibc's structures (336 and 80 bytes on
x86_64) and are only ever touched by glibc's own functions.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Optional

__all__ = ["LibcSpawn"]

# <spawn.h>
_POSIX_SPAWN_RESETIDS = 0x01
_POSIX_SPAWN_SETSIGDEF = 0x04
_POSIX_SPAWN_SETSIGMASK = 0x08
_POSIX_SPAWN_SETSID = 0x80
_FLAGS = _POSIX_SPAWN_SETSID | _POSIX_SPAWN_SETSIGDEF | _POSIX_SPAWN_SETSIGMASK

#: Bytes reserved for each opaque glibc structure (several times their size).
_OPAQUE = 1024


_ENCODING = sys.getfilesystemencoding()
_ERRORS = sys.getfilesystemencodeerrors()
#: Distinct argument vectors kept converted (one per service, usually).
_ARGV_CACHE = 256
#: File action sets each thread keeps prepared (descriptor numbers recur).
_ACTIONS_CACHE = 32


def _strings(items: list[bytes]) -> Any:
    """A NULL-terminated ``char *[]`` pointing into ``items`` (keep them alive)."""
    array: Any = (ctypes.c_char_p * (len(items) + 1))()
    array[:len(items)] = items  # much cheaper than the constructor's *args
    return array


class LibcSpawn:
    """One process's handle on glibc's ``posix_spawn`` (safe to share between threads)."""

    def __init__(self, libc: Any) -> None:
        self._libc = libc
        spawn = libc.posix_spawn
        spawn.restype = ctypes.c_int
        spawn.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_void_p,
                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._spawn = spawn
        self._adddup2 = libc.posix_spawn_file_actions_adddup2
        self._adddup2.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self._init_actions = libc.posix_spawn_file_actions_init
        self._destroy_actions = libc.posix_spawn_file_actions_destroy
        defaults = ctypes.create_string_buffer(_OPAQUE)
        libc.sigfillset(defaults)  # glibc leaves out its own internal signals
        for kept in (signal.SIGKILL, signal.SIGSTOP):
            libc.sigdelset(defaults, int(kept))
        empty = ctypes.create_string_buffer(_OPAQUE)
        libc.sigemptyset(empty)
        self._argvs: dict[tuple[str, ...], Any] = {}
        self._local = threading.local()  # each thread's prepared file actions
        # Read-only once set up, so every thread may pass them at once.
        self._attrs = {resetids: self._attributes(_FLAGS | (_POSIX_SPAWN_RESETIDS if resetids
                                                            else 0), defaults, empty)
                       for resetids in (False, True)}

    def _attributes(self, flags: int, defaults: Any, mask: Any) -> Any:
        libc = self._libc
        attr = ctypes.create_string_buffer(_OPAQUE)
        for result in (libc.posix_spawnattr_init(attr),
                       libc.posix_spawnattr_setsigdefault(attr, defaults),
                       libc.posix_spawnattr_setsigmask(attr, mask),
                       libc.posix_spawnattr_setflags(attr, ctypes.c_short(flags))):
            if result != 0:
                raise OSError(result, os.strerror(result))
        return attr

    @classmethod
    def load(cls) -> Optional["LibcSpawn"]:
        """The binding, or None where this is not glibc on Linux."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            if not os.confstr("CS_GNU_LIBC_VERSION"):
                return None
            return cls(ctypes.CDLL(None, use_errno=True))
        except (AttributeError, OSError, ValueError):
            return None

    def __call__(self, executable: str, argv: Iterable[str], env: Mapping[str, str],
                 fds: Mapping[int, int], *, resetids: bool = False) -> int:
        """
        Start ``executable`` and return its pid, or raise ``OSError`` with
        glibc's errno.  ``fds`` maps each child descriptor to one of ours.
        The GIL is released while glibc waits for the child to exec.
        """
        actions = self._actions(fds)
        argv = tuple(argv)
        args = self._argvs.get(argv)
        if args is None:
            encoded = [arg.encode(_ENCODING, _ERRORS) for arg in argv]
            args = (_strings(encoded), encoded)
            if len(self._argvs) < _ARGV_CACHE:
                self._argvs[argv] = args
        environment = [f"{name}={value}".encode(_ENCODING, _ERRORS)
                       for name, value in env.items()]
        pid = ctypes.c_int(0)
        result = self._spawn(ctypes.byref(pid), executable.encode(_ENCODING, _ERRORS),
                             actions, self._attrs[resetids], args[0], _strings(environment))
        if result != 0:
            raise OSError(result, os.strerror(result))
        return pid.value

    def _actions(self, fds: Mapping[int, int]) -> Any:
        """This thread's file actions for ``fds``, prepared once: descriptor
        numbers are reused, so a few sets serve every spawn (glibc only
        reads them)."""
        prepared: Optional[dict[tuple[tuple[int, int], ...], Any]] = getattr(
            self._local, "prepared", None)
        if prepared is None:
            prepared = self._local.prepared = {}
        key = tuple(sorted(fds.items()))
        actions = prepared.get(key)
        if actions is not None:
            return actions
        if len(prepared) >= _ACTIONS_CACHE:
            for old in prepared.values():
                self._destroy_actions(old)
            prepared.clear()
        actions = ctypes.create_string_buffer(_OPAQUE)
        result = self._init_actions(actions)
        if result != 0:
            raise OSError(result, os.strerror(result))
        for child, ours in key:
            result = self._adddup2(actions, ours, child)
            if result != 0:
                self._destroy_actions(actions)
                raise OSError(result, os.strerror(result))
        prepared[key] = actions
        return actions
