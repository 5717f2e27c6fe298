"""
Starting a child without waiting for its exec: the Python side of the
compiled ``superd.proc._clonespawn`` (see its source for how the child is
made and why no library does it).

``posix_spawn`` returns only once the child has executed its program, and
on a busy machine the calling thread waits most of that time for the child
to get a CPU.  ``CloneSpawn`` returns as soon as the child exists: the
reactor thread goes on with the next connection, with no second thread and
no hand-over between threads.  Whether the exec succeeded is learnt later,
from ``settle`` (``superd.proc.spawner.PosixSpawner`` asks on the next
reactor turns and before it handles the child's exit), so a server that
cannot be executed is still logged as a FAIL, never as a START.

The child is set up as ``superd.proc.spawner.PosixSpawner`` sets it up with
``os.posix_spawn``: a session leader, every catchable signal at its default
disposition and unblocked, the request's descriptors duplicated onto the
child's numbers (the rest of superd's are close-on-exec), and with
``resetids`` its effective ids made its real ones (``superd.proc.credentials``).
The child copies the calling thread's credentials, niceness and the
process's umask when it is created, as with ``posix_spawn``.

Only where the module was built and supports the machine (x86_64 Linux):
``CloneSpawn.load`` returns None elsewhere, and superd spawns with
``posix_spawn``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Mapping
from typing import List, Optional, Protocol, Tuple

__all__ = ["MAX_FDS", "CloneSpawn"]

#: Child descriptor numbers the module can set (0 to MAX_FDS - 1).
MAX_FDS = 16

_ENCODING = sys.getfilesystemencoding()
_ERRORS = sys.getfilesystemencodeerrors()
#: Distinct argument vectors kept encoded (one per service, usually).
_ARGV_CACHE = 256


class _Module(Protocol):
    """What ``superd.proc._clonespawn`` provides."""

    AVAILABLE: int

    def spawn(self, path: bytes, argv: Tuple[bytes, ...], envp: Tuple[bytes, ...],
              fds: Tuple[int, ...], resetids: bool) -> int: ...

    def settle(self) -> List[Tuple[int, int]]: ...

    def pending(self) -> int: ...


class CloneSpawn:
    """Starts children from the calling thread without waiting for their exec."""

    def __init__(self, module: _Module) -> None:
        self._module = module
        self._spawn = module.spawn
        #: See ``settle``.
        self.settle = module.settle
        self._argvs: dict[Tuple[str, ...], Tuple[bytes, ...]] = {}
        self._paths: dict[str, bytes] = {}

    @classmethod
    def load(cls) -> Optional["CloneSpawn"]:
        """The compiled module's spawn, or None where it is not built or not
        supported here."""
        try:
            module = importlib.import_module("superd.proc._clonespawn")
        except ImportError:
            return None
        if not getattr(module, "AVAILABLE", 0):
            return None
        return cls(module)

    @staticmethod
    def takes(fds: Mapping[int, int]) -> bool:
        """Whether the child's descriptors ``fds`` can be set up here."""
        return max(fds, default=0) < MAX_FDS

    @property
    def pending(self) -> int:
        """Children started whose exec ``settle`` has not reported yet."""
        return self._module.pending()

    def __call__(self, executable: str, argv: Iterable[str], env: Mapping[str, str],
                 fds: Mapping[int, int], *, resetids: bool = False) -> int:
        """
        Start ``executable`` and return its pid once the child exists, before
        it has executed anything; ``settle`` later says whether it did.
        Raises ``OSError`` when no child could be created.  ``fds`` maps each
        child descriptor (below ``MAX_FDS``) to one of ours.
        """
        argv = tuple(argv)
        args = self._argvs.get(argv)
        if args is None:
            args = tuple(arg.encode(_ENCODING, _ERRORS) for arg in argv)
            if len(self._argvs) < _ARGV_CACHE:
                self._argvs[argv] = args
        path = self._paths.get(executable)
        if path is None:
            path = executable.encode(_ENCODING, _ERRORS)
            if len(self._paths) < _ARGV_CACHE:
                self._paths[executable] = path
        envp = tuple([f"{name}={value}".encode(_ENCODING, _ERRORS)
                      for name, value in env.items()])
        numbers = [-1] * (max(fds) + 1)
        for child, ours in fds.items():
            numbers[child] = ours
        return self._spawn(path, args, envp, tuple(numbers), resetids)
