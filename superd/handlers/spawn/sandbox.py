"""
The argv prefix that confines an external server (issue 17), built once at
load from its ``Sandbox``, and the host checks that make an impossible one
a configuration error (``SpawnSetupError``, reported FILE:LINE).

Everything is applied in the child before the server executes, by small
programs that each ``exec`` the next (the pid stays the server's), in this
order:

1. ``unshare --mount --propagation private`` (util-linux) when the server
   needs mounts of its own (``private_tmp``, ``read_only_paths``): a mount
   namespace nothing leaks out of;
2. ``/bin/sh -c`` running as root what needs root: moving itself into the
   service's cgroup (``memory_max``/``tasks_max``: see
   ``superd.proc.cgroups``), an empty tmpfs on ``/tmp``, read-only bind
   mounts;
3. ``prlimit`` for ``rlimit_*`` (``superd.handlers.spawn.argv``);
4. ``setpriv`` (util-linux): the service's user and groups when step 2 had
   to run as root (superd's own per-thread credential switch would have
   made the child the user before step 1), and ``--no-new-privs``.

Without steps 1 and 2 the credential switch keeps the ``posix_spawn`` fast
path, and ``no_new_privileges`` alone costs one ``setpriv`` exec.  Paths
from the configuration reach the shell as positional parameters, never as
script text.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

import attrs

from superd.config.model import Sandbox
from superd.handlers.spawn.errors import SpawnSetupError
from superd.proc.cgroups import Limits
from superd.proc.credentials import CredentialPlan, setpriv_prefix

__all__ = ["Confinement", "SpawnSetupError", "confinement"]

_TMPFS_OPTIONS = "mode=1777,nosuid,nodev"


@attrs.frozen
class Confinement:
    """What ``confinement`` decided for one service."""

    #: Programs to run before the server, each exec'ing the rest.
    prefix: Tuple[str, ...] = ()
    #: True when ``prefix`` ends in ``setpriv`` taking the credentials (the
    #: spawning thread must not switch them itself).
    takes_credentials: bool = False
    #: The cgroup limits when the child moves itself into its cgroup.
    limits: Optional[Limits] = None


def _program(table: Any, name: str, attribute: str) -> str:
    path: Optional[str] = table.find_program(name)
    if path is None:
        raise SpawnSetupError(attribute, f"needs the {name} program, which is not installed")
    return path


def _first(sandbox: Sandbox, *names: str) -> str:
    """The first of ``names`` that is set (the line an error points at)."""
    for name in names:
        value = getattr(sandbox, name)
        if value not in (None, False, ()):
            return name
    return names[0]


def _root_setup(sandbox: Sandbox, table: Any, service_id: str,
                shell: str) -> Tuple[Tuple[str, ...], Optional[Limits]]:
    """Step 2: the shell and its arguments, and the cgroup limits."""
    steps: List[str] = []
    args: List[str] = []
    limits = None
    if sandbox.cgroup_limits:
        limits = Limits(memory_max=sandbox.memory_max, tasks_max=sandbox.tasks_max)
        attribute = _first(sandbox, "memory_max", "tasks_max")
        problem = table.tracker.limits_problem(limits)
        if problem is not None:
            raise SpawnSetupError(attribute, problem)
        try:
            procs = table.tracker.procs(service_id, limits)
        except OSError as e:
            raise SpawnSetupError(attribute, f"cannot set up its cgroup: {e.strerror or e}") from e
        if procs is None:
            raise SpawnSetupError(attribute, "needs a cgroup v2 subtree for superd")
        args.append(procs)
        steps.append(f"echo 0 >{_positional(len(args))}")
    if sandbox.mounts:
        mount = _program(table, "mount", _first(sandbox, "private_tmp", "read_only_paths"))
        if sandbox.private_tmp:
            steps.append(f"{mount} -t tmpfs -o {_TMPFS_OPTIONS} tmpfs /tmp")
        for path in sandbox.read_only_paths:
            if not os.path.exists(path):
                raise SpawnSetupError("read_only_paths", f"{path} does not exist")
            args.append(path)
            # util-linux turns "bind,ro" into the bind and its read-only remount.
            here = _positional(len(args))
            steps.append(f"{mount} -o bind,ro -- {here} {here}")
    if not steps:
        return (), limits
    script = " && ".join([*steps, f"shift {len(args)}", 'exec "$@"'])
    return (shell, "-c", script, "superd-sandbox", *args), limits


def _positional(n: int) -> str:
    return f'"${{{n}}}"'


def confinement(sandbox: Sandbox, table: Any, service_id: str,
                plan: Optional[CredentialPlan],
                rlimit_prefix: Tuple[str, ...] = ()) -> Confinement:
    """
    The prefix confining a service's children (``rlimit_prefix``, the
    ``prlimit`` one, goes in its place in the chain); raises
    ``SpawnSetupError`` when this host cannot do it.
    """
    needs_root = sandbox.mounts or sandbox.cgroup_limits
    if needs_root and not table.identity.is_root:
        attribute = _first(sandbox, "private_tmp", "read_only_paths", "memory_max",
                           "tasks_max")
        raise SpawnSetupError(attribute, "needs superd to run as root")
    prefix: List[str] = []
    if sandbox.mounts:
        attribute = _first(sandbox, "private_tmp", "read_only_paths")
        prefix += [_program(table, "unshare", attribute), "--mount",
                   "--propagation", "private", "--"]
    shell = _program(table, "sh", _first(sandbox, "private_tmp", "read_only_paths",
                                         "memory_max", "tasks_max")) if needs_root else ""
    root_steps, limits = _root_setup(sandbox, table, service_id, shell)
    prefix += root_steps
    prefix += rlimit_prefix
    takes_credentials = needs_root and plan is not None
    if takes_credentials or sandbox.no_new_privileges:
        attribute = "no_new_privileges" if sandbox.no_new_privileges else "user"
        setpriv = _program(table, "setpriv", attribute)
        setpriv_args = list(setpriv_prefix(plan, setpriv) if takes_credentials and plan
                            else (setpriv, "--"))
        if sandbox.no_new_privileges:
            setpriv_args.insert(-1, "--no-new-privs")
        prefix += setpriv_args
    return Confinement(tuple(prefix), takes_credentials, limits)
