"""
Who a child runs as, and how the spawning thread becomes that user briefly.

Why per-thread credentials
--------------------------
``posix_spawn`` cannot change credentials, and Twisted's ``uid=``/``gid=``
fall back to forking the whole interpreter.  On Linux, credentials belong to
each *thread* in the kernel; only glibc's ``setresuid()`` wrapper broadcasts a
change to every thread (the "setxid" signal dance).  Calling the raw
``setgroups``/``setresgid``/``setresuid`` system calls changes the calling
thread only.  So the spawning thread becomes the service user (keeping saved
uid/gid 0 so it can come back), calls ``posix_spawn`` -- the vfork-style child
starts with the thread's credentials, and ``execve`` copies the effective ids
into the saved ones and clears every capability -- then switches back.  One
``exec``, no wrapper program, no fork of the interpreter.

The thread switch costs next to nothing beside the spawn; a ``setpriv``
wrapper costs a whole extra exec, and forking the interpreter costs more
the more memory superd holds (bench/README, "Why the code is the way it
is", has the figures).

Side effects handled here: changing the effective uid makes the kernel reset
the whole process's "dumpable" flag, so it is restored afterwards; nice is a
per-thread attribute on Linux too, so it is applied the same way.  Python
signal handlers may run in the window; Twisted's only schedule work, and the
window is a few microseconds of straight-line code with the GC disabled.
Architectures without a known syscall table fall back to a ``setpriv`` prefix.

One visible difference from xinetd: while switched, the spawning thread is
itself one of the user's tasks, so ``RLIMIT_NPROC`` for a service user lets
one process fewer run than under xinetd (the clone fails with EAGAIN, logged
as FAIL ``fork``).
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import sys
import threading
from typing import Any, Callable, Dict, Mapping, Optional, Protocol, Sequence, Tuple

import attrs

from superd.config.model import Credentials

__all__ = [
    "SYSCALL_NUMBERS",
    "CredentialPlan",
    "CredentialSyscalls",
    "Identity",
    "SpawningThread",
    "plan_credentials",
    "setpriv_prefix",
]

#: (setgroups, setresgid, setresuid) system call numbers by machine.
SYSCALL_NUMBERS: Mapping[str, Tuple[int, int, int]] = {
    "x86_64": (116, 119, 117),
    "aarch64": (159, 149, 147),
    "riscv64": (159, 149, 147),
}

_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4
_UNCHANGED = -1


@attrs.frozen
class Identity:
    """superd's own effective user, group and supplementary groups."""

    uid: int
    gid: int
    groups: Tuple[int, ...] = ()

    @property
    def is_root(self) -> bool:
        """True when superd may give children other credentials."""
        return self.uid == 0

    @classmethod
    def current(cls) -> "Identity":
        """The calling thread's identity (read once, at startup)."""
        return cls(os.geteuid(), os.getegid(), tuple(os.getgroups()))


@attrs.frozen
class CredentialPlan:
    """The exact ids a child gets: uid, gid and supplementary groups."""

    uid: int
    gid: int
    groups: Tuple[int, ...] = ()


def plan_credentials(
    credentials: Credentials, own: Identity,
    group_list: Callable[[str, int], Sequence[int]],
) -> Optional[CredentialPlan]:
    """
    The credentials a service's children need, or None for "superd's own".

    As xinetd: only a root superd changes anything; ``user`` sets the uid,
    ``group`` (else the user's primary group, resolved by the loader) the
    gid; ``groups = yes`` means the user's groups (``initgroups``), looked up
    here once at load time through ``group_list``, and ``no`` means none.
    """
    if not own.is_root:
        return None
    if credentials.uid is None and credentials.gid is None:
        return None
    uid = own.uid if credentials.uid is None else credentials.uid
    gid = own.gid if credentials.gid is None else credentials.gid
    groups: Tuple[int, ...] = ()
    if credentials.groups and credentials.user is not None:
        groups = tuple(sorted(set(group_list(credentials.user, gid))))
    plan = CredentialPlan(uid, gid, groups)
    if plan == CredentialPlan(own.uid, own.gid, tuple(sorted(own.groups))):
        return None
    return plan


def setpriv_prefix(plan: CredentialPlan, setpriv: str) -> Tuple[str, ...]:
    """The util-linux ``setpriv`` argv prefix (fallback mechanism)."""
    groups = ("--groups=" + ",".join(map(str, plan.groups)) if plan.groups
              else "--clear-groups")
    return (setpriv, f"--reuid={plan.uid}", f"--regid={plan.gid}", groups,
            "--")


class CredentialSyscalls(Protocol):
    """The per-thread operations ``SpawningThread`` needs (faked in tests)."""

    def setgroups(self, groups: Tuple[int, ...]) -> None: ...

    def setresgid(self, rgid: int, egid: int, sgid: int) -> None: ...

    def setresuid(self, ruid: int, euid: int, suid: int) -> None: ...

    def dumpable(self) -> int: ...

    def set_dumpable(self, value: int) -> None: ...


class _RawSyscalls:
    """The three credential system calls, without glibc's setxid broadcast."""

    def __init__(self, numbers: Tuple[int, int, int]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._setgroups, self._setresgid, self._setresuid = numbers
        self._arrays: Dict[Tuple[int, ...], Any] = {}

    def _call(self, number: int, *args: object) -> None:
        if self._libc.syscall(ctypes.c_long(number), *args) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def setgroups(self, groups: Tuple[int, ...]) -> None:
        array = self._arrays.get(groups)
        if array is None:
            # Few distinct lists exist (one per service user, and superd's).
            array = (ctypes.c_uint * max(1, len(groups)))(*groups)
            if len(self._arrays) < 256:
                self._arrays[groups] = array
        self._call(self._setgroups, ctypes.c_long(len(groups)), array)

    def setresgid(self, rgid: int, egid: int, sgid: int) -> None:
        self._call(self._setresgid, ctypes.c_long(rgid), ctypes.c_long(egid),
                   ctypes.c_long(sgid))

    def setresuid(self, ruid: int, euid: int, suid: int) -> None:
        self._call(self._setresuid, ctypes.c_long(ruid), ctypes.c_long(euid),
                   ctypes.c_long(suid))

    def dumpable(self) -> int:
        return int(self._libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))

    def set_dumpable(self, value: int) -> None:
        self._libc.prctl(_PR_SET_DUMPABLE, value, 0, 0, 0)


def _die(message: str) -> None:
    # Continuing with the wrong credentials in the reactor thread would be a
    # security bug; there is no sane way to recover, so stop at once.
    sys.stderr.write(f"superd: fatal: {message}\n")
    sys.stderr.flush()
    os._exit(70)


class SpawningThread:
    """
    Gives the calling thread a child's credentials and nice value for the
    duration of one ``posix_spawn``, and takes them back.
    """

    def __init__(self, own: Identity, syscalls: Optional[CredentialSyscalls],
                 fatal: Callable[[str], None] = _die) -> None:
        self._own = own
        self._sys = syscalls
        self._fatal = fatal
        self._dumpable = 1 if syscalls is None else syscalls.dumpable()

    @classmethod
    def for_this_machine(cls, own: Identity) -> "SpawningThread":
        """The switcher for this CPU (unable to switch if its syscalls are
        unknown, in which case callers use ``setpriv_prefix``)."""
        numbers = SYSCALL_NUMBERS.get(platform.machine())
        if numbers is None or not sys.platform.startswith("linux"):
            return cls(own, None)
        return cls(own, _RawSyscalls(numbers))

    @property
    def can_switch(self) -> bool:
        """True if this thread can take a child's credentials itself."""
        return self._sys is not None and self._own.is_root

    def become(self, plan: CredentialPlan) -> None:
        """Switch this thread to ``plan``, keeping saved ids to come back."""
        sys_ = self._sys
        if sys_ is None:
            raise OSError(0, "per-thread credentials are unavailable")
        sys_.setgroups(plan.groups)
        sys_.setresgid(plan.gid, plan.gid, _UNCHANGED)
        sys_.setresuid(plan.uid, plan.uid, _UNCHANGED)

    def restore(self) -> None:
        """Back to superd's own identity; dying is the only alternative."""
        own, sys_ = self._own, self._sys
        if sys_ is None:
            return
        try:
            sys_.setresuid(own.uid, own.uid, own.uid)
            sys_.setresgid(own.gid, own.gid, own.gid)
            sys_.setgroups(own.groups)
            sys_.set_dumpable(self._dumpable)
        except OSError as e:
            self._fatal(f"cannot restore credentials after spawn: {e}")

    def run_as(self, plan: Optional[CredentialPlan], nice: Optional[int],
               action: Callable[[], int]) -> int:
        """
        Run ``action`` (the spawn) with ``plan`` and niceness ``nice``.

        ``plan`` must be None unless ``can_switch``.  ``nice`` is absolute;
        setting it per thread needs root to lower it back afterwards.
        """
        tid = threading.get_native_id()
        old_nice = 0 if nice is None else os.getpriority(os.PRIO_PROCESS, tid)
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            if nice is not None:
                # Before dropping root: lowering nice needs CAP_SYS_NICE.
                os.setpriority(os.PRIO_PROCESS, tid, nice)
            if plan is None:
                return action()
            try:
                self.become(plan)
                return action()
            finally:
                self.restore()
        finally:
            if nice is not None:
                os.setpriority(os.PRIO_PROCESS, tid, old_nice)
            if gc_was_enabled:
                gc.enable()

    def probe(self) -> bool:
        """True if switching to nobody and back works in this process."""
        if not self.can_switch:
            return False
        try:
            self.become(CredentialPlan(65534, 65534, ()))
            switched = os.getresuid() == (65534, 65534, self._own.uid)
        except OSError:
            switched = False
        finally:
            self.restore()
        return switched and os.getresuid() == (self._own.uid,) * 3
