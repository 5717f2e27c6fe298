"""
What is fixed about a service's children, computed once when the service is
built (at load or reload), so that nothing is looked up at connect time:
the executable and argv (with the ``prlimit`` prefix if limits are set and
the sandbox's programs if it is confined: ``superd.handlers.spawn.sandbox``),
the environment without the per-connection variables, the credentials with
the supplementary groups resolved, the umask and the absolute nice value.
A service this host cannot confine as configured raises ``SpawnSetupError``.
"""

from __future__ import annotations

import os
import resource
from typing import Any, Mapping, Optional, Tuple

import attrs
from twisted.logger import Logger

from superd.config.model import UNLIMITED, ServiceConfig
from superd.handlers.spawn.argv import limits_prefix, server_argv
from superd.handlers.spawn.environ import base_environment, missing_passenv
from superd.handlers.spawn.sandbox import SpawnSetupError, confinement
from superd.observe import events
from superd.proc.cgroups import Limits
from superd.proc.credentials import CredentialPlan, plan_credentials
from superd.proc.spawner import SpawnRequest

__all__ = ["SpawnSetupError", "SpawnSpec", "build_spec"]

_log = Logger(namespace="superd.spawn")

_RESOURCES = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "data": resource.RLIMIT_DATA,
    "rss": resource.RLIMIT_RSS,
    "stack": resource.RLIMIT_STACK,
    "files": resource.RLIMIT_NOFILE,
}


@attrs.frozen
class SpawnSpec:
    """The load-time part of every ``SpawnRequest`` of one service."""

    executable: str
    argv: Tuple[str, ...]
    base_env: Mapping[str, str]
    credentials: Optional[CredentialPlan] = None
    umask: Optional[int] = None
    nice: Optional[int] = None
    #: The server, when ``executable`` is a wrapper (``prlimit``, the
    #: sandbox's programs) that ends up executing it.
    wrapped: Optional[str] = None
    #: The cgroup limits, when the child moves itself into its cgroup.
    limits: Optional[Limits] = None

    def request(self, env: Mapping[str, str], fd: int) -> SpawnRequest:
        """The request that runs the server with ``fd`` as fds 0, 1 and 2."""
        return SpawnRequest(
            executable=self.executable, argv=self.argv, env=env,
            fds={0: fd, 1: fd, 2: fd}, credentials=self.credentials,
            umask=self.umask, nice=self.nice, wrapped=self.wrapped, limits=self.limits)


def _absolute_nice(increment: Optional[int], own: int) -> Optional[int]:
    # xinetd calls nice(n) in the child: relative to its own niceness.
    if increment is None:
        return None
    return max(-20, min(19, own + increment))


def _raise_hard_limits(rlimits: Mapping[str, int]) -> None:
    # The prlimit prefix runs with the service's credentials, so it can only
    # lower limits: lift superd's own *hard* limit (its soft limit, which is
    # what superd itself lives by, is untouched) where a service asks for more.
    for name, value in rlimits.items():
        res = _RESOURCES[name]
        soft, hard = resource.getrlimit(res)
        wanted = resource.RLIM_INFINITY if value == UNLIMITED else value
        if hard == resource.RLIM_INFINITY or (
                wanted != resource.RLIM_INFINITY and wanted <= hard):
            continue
        try:
            resource.setrlimit(res, (soft, wanted))
        except (OSError, ValueError) as e:
            _log.warn("cannot raise the hard limit rlimit_{name}: {error}",
                      event=events.EV_RLIMIT, name=name, error=str(e))


def build_spec(service: ServiceConfig, table: Any) -> SpawnSpec:
    """
    The ``SpawnSpec`` of an external ``service``; ``table`` is the
    ``ProcessTable`` (startup environment, identity, program lookup).
    """
    if service.server is None:
        raise ValueError(f"service {service.id}: no server to run")
    argv = server_argv(service)
    executable = service.server
    wrapped = None
    rlimit_prefix: Tuple[str, ...] = ()
    if service.rlimits:
        rlimit_prefix = limits_prefix(service.rlimits, table.find_program("prlimit"))
        if table.identity.is_root:
            _raise_hard_limits(service.rlimits)
    credentials = plan_credentials(service.credentials, table.identity, table.group_list)
    confined = confinement(service.sandbox, table, service.id, credentials, rlimit_prefix)
    if confined.prefix:
        wrapped = service.server
        executable, argv = confined.prefix[0], (*confined.prefix, service.server, *argv[1:])
    for name in missing_passenv(service, table.environ):
        _log.warn("service {service_id}: passenv {name} is not set",
                  event=events.EV_CONFIG_WARNING, service_id=service.id, name=name)
    return SpawnSpec(
        executable=executable, argv=argv,
        base_env=base_environment(service, table.environ),
        credentials=None if confined.takes_credentials else credentials,
        umask=service.umask,
        nice=_absolute_nice(service.nice, os.getpriority(os.PRIO_PROCESS, 0)),
        wrapped=wrapped,
        limits=confined.limits,
    )
