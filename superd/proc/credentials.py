"""
Who a child runs as, and how the spawning thread becomes that user briefly.

Why per-thread credentials
--------------------------
``posix_spawn`` cannot change credentials, and Twisted's ``uid=``/``gid=``
fall back to forking the whole interpreter.  On Linux, credentials belong to
each *thread* in the kernel; only glibc's ``setresuid()`` wrapper broadcasts a
change to every thread (the "setxid" signal dance).  Calling the raw
``setgroups``/``setresgid``/``setresuid`` system calls changes the calling
thread only.  So the spawning thread takes the service user's ids as its
*real* ids (and its groups), keeping superd's effective and saved ids, and
calls ``posix_spawn`` with ``POSIX_SPAWN_RESETIDS``: the vfork-style child
starts with the thread's credentials, sets its effective ids to those real
ones, and ``execve`` copies them into the saved ones and clears every
capability -- then the thread switches back.  One ``exec``, no wrapper
program, no fork of the interpreter.

While switched the thread is still superd as far as the kernel's checks go
(effective ids, and every capability but the two that would exempt the
child from its user's ``RLIMIT_NPROC``), so whatever it runs in the window
-- a signal handler, or a finalizer the garbage collector calls from a
spawning worker thread -- acts as superd does; nothing needs holding off
(least of all the process-wide garbage collector, which other threads use
meanwhile), and the process's "dumpable" flag, which the kernel resets only
when effective ids change, stays as it is.

The thread switch costs next to nothing beside the spawn; a ``setpriv``
wrapper costs a whole extra exec, and forking the interpreter costs more
the more memory superd holds (bench/README, "Why the code is the way it
is", has the figures).

nice is a per-thread attribute on Linux too, so it is applied the same way.
Architectures without a known syscall table fall back to a ``setpriv`` prefix.

One visible difference from xinetd: while switched, the spawning thread is
itself one of the user's tasks (``RLIMIT_NPROC`` counts tasks by real uid),
so a service user's ``RLIMIT_NPROC`` lets one process fewer run than under
xinetd (the clone fails with EAGAIN, logged as FAIL ``fork``).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
from typing import Any, Callable, Dict, Mapping, Optional, Protocol, Sequence, Tuple

import attrs

from superd.config.model import Credentials

__all__ = [
    "LIMIT_EXEMPTIONS",
    "SYSCALL_NUMBERS",
    "CredentialPlan",
    "CredentialSyscalls",
    "Identity",
    "SpawningThread",
    "plan_credentials",
    "setpriv_prefix",
]

#: (setgroups, setresgid, setresuid, capget, capset) system call numbers by machine.
SYSCALL_NUMBERS: Mapping[str, Tuple[int, int, int, int, int]] = {
    "x86_64": (116, 119, 117, 125, 126),
    "aarch64": (159, 149, 147, 90, 91),
    "riscv64": (159, 149, 147, 90, 91),
}

_UNCHANGED = -1
#: <linux/capability.h>: the header version with two 32-bit words per set.
_CAPABILITY_VERSION_3 = 0x20080522
#: CAP_SYS_ADMIN and CAP_SYS_RESOURCE: with either in its effective set, a
#: thread creates a process even beyond its real user's RLIMIT_NPROC.
LIMIT_EXEMPTIONS = (1 << 21) | (1 << 24)


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

    def drop_capabilities(self, mask: int) -> None:
        """Take ``mask`` out of the calling thread's effective capabilities."""

    def restore_capabilities(self) -> None:
        """Give the calling thread superd's capabilities back."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CapSets = _CapData * 2


class _RawSyscalls:
    """The credential system calls, without glibc's setxid broadcast (each
    changes the calling thread only)."""

    def __init__(self, numbers: Tuple[int, int, int, int, int]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        (self._setgroups, self._setresgid, self._setresuid,
         capget, self._capset) = numbers
        self._arrays: Dict[Tuple[int, ...], Any] = {}
        self._own_caps = _CapSets()
        self._call(capget, ctypes.byref(self._header()), ctypes.byref(self._own_caps))
        self._reduced: Dict[int, Any] = {}

    @staticmethod
    def _header() -> _CapHeader:
        return _CapHeader(_CAPABILITY_VERSION_3, 0)  # pid 0: the calling thread

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

    def drop_capabilities(self, mask: int) -> None:
        reduced = self._reduced.get(mask)
        if reduced is None:
            reduced = _CapSets()
            ctypes.memmove(reduced, self._own_caps, ctypes.sizeof(_CapSets))
            reduced[0].effective &= ~mask & 0xFFFFFFFF
            reduced[1].effective &= ~(mask >> 32) & 0xFFFFFFFF
            self._reduced[mask] = reduced
        self._call(self._capset, ctypes.byref(self._header()), ctypes.byref(reduced))

    def restore_capabilities(self) -> None:
        self._call(self._capset, ctypes.byref(self._header()), ctypes.byref(self._own_caps))


def _die(message: str) -> None:
    # Continuing with the wrong credentials in the reactor thread would be a
    # security bug; there is no sane way to recover, so stop at once.
    sys.stderr.write(f"superd: fatal: {message}\n")
    sys.stderr.flush()
    os._exit(70)


class SpawningThread:
    """
    Gives the calling thread a child's credentials (as its real ids: the
    spawn must reset the child's effective ids, ``POSIX_SPAWN_RESETIDS``)
    and nice value for the duration of one ``posix_spawn``, and takes them
    back.  Any thread may use it, several at once.
    """

    def __init__(self, own: Identity, syscalls: Optional[CredentialSyscalls],
                 fatal: Callable[[str], None] = _die) -> None:
        self._own = own
        self._sys = syscalls
        self._fatal = fatal
        # One thread at a time takes a given user's ids (see run_as).
        self._users: Dict[int, threading.Lock] = {}
        self._users_lock = threading.Lock()

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
        """Give this thread ``plan``'s groups and real ids; the effective and
        saved ids stay superd's."""
        sys_ = self._sys
        if sys_ is None:
            raise OSError(0, "per-thread credentials are unavailable")
        sys_.setgroups(plan.groups)
        sys_.setresgid(plan.gid, _UNCHANGED, _UNCHANGED)
        sys_.setresuid(plan.uid, _UNCHANGED, _UNCHANGED)
        # The child is counted against its user's RLIMIT_NPROC only if the
        # thread creating it lacks these (as a thread that had become the
        # user would).
        sys_.drop_capabilities(LIMIT_EXEMPTIONS)

    def restore(self) -> None:
        """Back to superd's own identity; dying is the only alternative."""
        own, sys_ = self._own, self._sys
        if sys_ is None:
            return
        try:
            sys_.restore_capabilities()
            sys_.setresuid(own.uid, own.uid, own.uid)
            sys_.setresgid(own.gid, own.gid, own.gid)
            sys_.setgroups(own.groups)
        except OSError as e:
            self._fatal(f"cannot restore credentials after spawn: {e}")

    def run_as(self, plan: Optional[CredentialPlan], nice: Optional[int],
               action: Callable[[], int]) -> int:
        """
        Run ``action`` (the spawn) with ``plan`` and niceness ``nice``.

        ``plan`` must be None unless ``can_switch``, and ``action`` must then
        spawn with ``POSIX_SPAWN_RESETIDS`` (see the module docstring).
        ``nice`` is absolute; setting it per thread needs root to lower it
        back afterwards.
        """
        tid = threading.get_native_id()
        old_nice = 0 if nice is None else os.getpriority(os.PRIO_PROCESS, tid)
        try:
            if nice is not None:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
            if plan is None:
                return action()
            # A thread holding a user's ids is one of the user's tasks for
            # RLIMIT_NPROC: one at a time per user, so that the user's limit
            # counts one task of superd's whatever the number of threads
            # spawning.
            with self._user(plan.uid):
                try:
                    self.become(plan)
                    return action()
                finally:
                    self.restore()
        finally:
            if nice is not None:
                # Lowering it back needs CAP_SYS_NICE: the effective ids
                # never left superd's.
                os.setpriority(os.PRIO_PROCESS, tid, old_nice)

    def _user(self, uid: int) -> threading.Lock:
        lock = self._users.get(uid)
        if lock is None:
            with self._users_lock:
                lock = self._users.setdefault(uid, threading.Lock())
        return lock

    def probe(self) -> bool:
        """True if switching to nobody and back works in this process."""
        if not self.can_switch:
            return False
        try:
            self.become(CredentialPlan(65534, 65534, ()))
            switched = os.getresuid() == (65534, self._own.uid, self._own.uid)
        except OSError:
            switched = False
        finally:
            self.restore()
        return switched and os.getresuid() == (self._own.uid,) * 3
