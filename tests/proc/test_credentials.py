"""Tests for superd.proc.credentials: plans and the per-thread switch."""

from __future__ import annotations

import os
import threading
from typing import List, Tuple

import pytest

from superd.config.model import Credentials
from superd.proc.credentials import (
    LIMIT_EXEMPTIONS,
    CredentialPlan,
    Identity,
    SpawningThread,
    plan_credentials,
    setpriv_prefix,
)
from tests.fakes import ROOT, USER


def groups_of(user: str, gid: int) -> List[int]:
    return [gid, 27, 4, 27]


def test_plan_user_with_initgroups() -> None:
    """groups = yes: the user's groups, looked up at load, sorted, unique."""
    plan = plan_credentials(Credentials("alice", 1001, None, 1001, True), ROOT, groups_of)
    assert plan == CredentialPlan(1001, 1001, (4, 27, 1001))


def test_plan_user_without_groups_clears_them() -> None:
    """groups = no: supplementary groups cleared (xinetd's setgroups(0))."""
    plan = plan_credentials(Credentials("nobody", 65534, None, 65534, False), ROOT, groups_of)
    assert plan == CredentialPlan(65534, 65534, ())


def test_plan_group_only_keeps_uid() -> None:
    """group without user: root uid, the given gid, no supplementary groups."""
    plan = plan_credentials(Credentials(None, None, "tty", 5, False), ROOT, groups_of)
    assert plan == CredentialPlan(0, 5, ())


def test_plan_nothing_to_change() -> None:
    """No user and no group: superd's own credentials (None)."""
    assert plan_credentials(Credentials(), ROOT, groups_of) is None


def test_plan_same_as_own_is_none() -> None:
    """Asking for exactly superd's own ids needs no switch at all."""
    own = Identity(0, 0, (0,))
    creds = Credentials("root", 0, None, 0, True)
    assert plan_credentials(creds, own, lambda u, g: [0]) is None


def test_not_root_never_changes() -> None:
    """When superd is not root it never tries to change credentials."""
    creds = Credentials("alice", 1001, None, 1001, True)
    assert plan_credentials(creds, USER, groups_of) is None


def test_setpriv_prefix() -> None:
    """The fallback wrapper sets uid, gid and the exact group list."""
    assert setpriv_prefix(CredentialPlan(5, 6, (7, 8)), "/usr/bin/setpriv") == (
        "/usr/bin/setpriv", "--reuid=5", "--regid=6", "--groups=7,8", "--")
    assert setpriv_prefix(CredentialPlan(5, 6, ()), "/s")[3] == "--clear-groups"


class RecordingSyscalls:
    """Fake per-thread syscalls that record every call."""

    def __init__(self, fail_on: str = "") -> None:
        self.calls: List[Tuple[object, ...]] = []
        self.fail_on = fail_on

    def _rec(self, *call: object) -> None:
        self.calls.append(call)
        if call[0] == self.fail_on:
            raise OSError(1, "Operation not permitted")

    def setgroups(self, groups: Tuple[int, ...]) -> None:
        self._rec("setgroups", groups)

    def setresgid(self, r: int, e: int, s: int) -> None:
        self._rec("setresgid", r, e, s)

    def setresuid(self, r: int, e: int, s: int) -> None:
        self._rec("setresuid", r, e, s)

    def drop_capabilities(self, mask: int) -> None:
        self._rec("drop_capabilities", mask)

    def restore_capabilities(self) -> None:
        self._rec("restore_capabilities")



def test_switch_changes_real_ids_only() -> None:
    """Groups, then the real gid, then the real uid; effective and saved ids
    stay root (the child resets its effective ids to the real ones); the two
    capabilities that would exempt the child from RLIMIT_NPROC are dropped.
    Restoring puts everything back in the reverse order."""
    fake = RecordingSyscalls()
    thread = SpawningThread(ROOT, fake)
    assert thread.run_as(CredentialPlan(65534, 65534, (65534,)), None, lambda: 42) == 42
    assert fake.calls == [
        ("setgroups", (65534,)), ("setresgid", 65534, -1, -1),
        ("setresuid", 65534, -1, -1), ("drop_capabilities", LIMIT_EXEMPTIONS),
        ("restore_capabilities",),
        ("setresuid", 0, 0, 0), ("setresgid", 0, 0, 0), ("setgroups", (0,)),
    ]


def test_restore_even_when_spawn_fails() -> None:
    """A failing spawn still switches the thread back before raising."""
    fake = RecordingSyscalls()
    thread = SpawningThread(ROOT, fake)

    def boom() -> int:
        raise FileNotFoundError(2, "No such file")

    with pytest.raises(FileNotFoundError):
        thread.run_as(CredentialPlan(1, 1, ()), None, boom)
    assert fake.calls[-4:-2] == [("restore_capabilities",), ("setresuid", 0, 0, 0)]


def test_restore_failure_is_fatal() -> None:
    """If the thread cannot get its credentials back superd must stop."""
    fake = RecordingSyscalls(fail_on="setresgid")
    deaths: List[str] = []
    thread = SpawningThread(ROOT, fake, fatal=deaths.append)
    with pytest.raises(OSError):
        thread.run_as(CredentialPlan(1, 1, ()), None, lambda: 0)
    assert deaths and "cannot restore credentials" in deaths[0]


def test_cannot_switch_without_syscalls_or_root() -> None:
    """No syscall table, or not root: the switch is unavailable."""
    assert not SpawningThread(ROOT, None).can_switch
    assert not SpawningThread(USER, RecordingSyscalls()).can_switch
    assert SpawningThread(ROOT, RecordingSyscalls()).can_switch


needs_root_switch = pytest.mark.skipif(
    os.geteuid() != 0 or not SpawningThread.for_this_machine(ROOT).can_switch,
    reason="needs root on a machine with a known syscall table")


@needs_root_switch
def test_real_switch_is_per_thread() -> None:
    """The raw syscalls change only the calling thread: another thread keeps
    root while this one is nobody, and this one comes back to root."""
    own = Identity.current()
    thread = SpawningThread.for_this_machine(own)
    seen: List[Tuple[int, int, int]] = []
    go, done = threading.Event(), threading.Event()

    def observe() -> None:
        go.wait(10)
        seen.append(os.getresuid())
        done.set()

    # Started before the switch: a thread created while switched would
    # inherit the switched credentials.
    observer = threading.Thread(target=observe)
    observer.start()

    def look() -> int:
        go.set()
        done.wait(10)
        assert os.getresuid() == (65534, 0, 0) and os.getresgid()[0] == 65534
        return os.getresuid()[0]

    assert thread.run_as(CredentialPlan(65534, 65534, ()), None, look) == 65534
    observer.join()
    assert seen == [(0, 0, 0)]
    assert os.getresuid() == (0, 0, 0) and os.getresgid() == (own.gid,) * 3
    assert tuple(os.getgroups()) == own.groups
    assert thread.probe()


@needs_root_switch
def test_real_nice_is_per_thread_and_restored() -> None:
    """The spawning thread's nice is set for the action and put back."""
    thread = SpawningThread.for_this_machine(Identity.current())
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    inside = thread.run_as(None, 7, lambda: os.getpriority(
        os.PRIO_PROCESS, threading.get_native_id()))
    assert inside == 7
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
