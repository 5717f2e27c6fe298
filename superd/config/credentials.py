"""
``user``, ``group`` and ``groups``: resolved once, at load, through the injected lookup.

Privileges are decided here, not at connection time: unknown accounts are
configuration errors, and a superd that is not root refuses a ``user`` or
``group`` other than its own for anything that runs a program (it could not
switch to it).  A numeric ``user`` also sets the group to the same number
unless ``group`` says otherwise, as xinetd does.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Tuple

from superd.config.environment import LoadEnvironment
from superd.config.model import Credentials, ServiceKind

__all__ = ["resolve_credentials"]

#: Kinds of service that start a program as ``user``.
_RUNS_PROGRAM = frozenset({ServiceKind.EXTERNAL, ServiceKind.REDIRECT, ServiceKind.TCPMUX_CLIENT})


class _Checker(Protocol):
    env: LoadEnvironment

    def get(self, key: str, default: Any = None) -> Any: ...

    def error(self, attribute: Optional[str], message: str) -> None: ...


def _user(c: _Checker, user: str) -> Tuple[Optional[str], Optional[int], Optional[int]]:
    """(name, uid, gid) of ``user``; errors reported, Nones on failure."""
    if user.isdigit():
        uid = int(user)
        try:
            name: Optional[str] = c.env.getpwuid(uid).pw_name
        except KeyError:
            name = None
        return name, uid, uid
    try:
        entry = c.env.getpwnam(user)
    except KeyError:
        c.error("user", f"unknown user {user!r}")
        return None, None, None
    return user, int(entry.pw_uid), int(entry.pw_gid)


def _group(c: _Checker, group: str) -> Optional[int]:
    if group.isdigit():
        return int(group)
    try:
        return int(c.env.getgrnam(group).gr_gid)
    except KeyError:
        c.error("group", f"unknown group {group!r}")
        return None


def resolve_credentials(c: _Checker, kind: ServiceKind) -> Credentials:
    """The service's credentials, or superd's own ("unchanged") when not root."""
    user, group = c.get("user"), c.get("group")
    root = c.env.euid == 0
    # A tcpmux client of type INTERNAL is served in superd by a builtin or a
    # user protocol: it runs no program, so (as xinetd) it needs no user.
    runs_program = kind in _RUNS_PROGRAM and not (
        kind is ServiceKind.TCPMUX_CLIENT and "INTERNAL" in c.get("type", frozenset()))
    if user is None and root and runs_program:
        c.error("user", "missing: write user = NAME (the account the server runs as)")
    name, uid, gid = _user(c, user) if user is not None else (None, None, None)
    if group is not None:
        gid = _group(c, group)
    if not root:
        if runs_program:
            _refuse_other_ids(c, user, uid, group, gid)
        return Credentials(user=name, group=group)
    return Credentials(user=name, uid=uid, group=group, gid=gid, groups=c.get("groups", False))


def _refuse_other_ids(c: _Checker, user: Optional[str], uid: Optional[int],
                      group: Optional[str], gid: Optional[int]) -> None:  # fmt: skip
    euid, egid = c.env.euid, c.env.egid
    if uid is not None and uid != euid:
        c.error(
            "user",
            f"superd runs as uid {euid}, not root, so it cannot start servers as "
            f"{user!r} (uid {uid}); remove the user line or run superd as root",
        )
    if group is not None and gid is not None and gid != egid:
        c.error(
            "group",
            f"superd runs as gid {egid}, not root, so it cannot start servers with "
            f"group {group!r} (gid {gid}); remove the group line or run superd as root",
        )
