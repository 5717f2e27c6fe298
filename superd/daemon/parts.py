"""
The daemon's long-lived collaborators, built once, in one place.

``Parts`` holds what every service of the daemon shares and what outlives a
reload: the runtime (reactor and options), the table of running children,
the per-block counters, the access state (bans, hosts tables, live
sessions), the collection of listeners, whose sockets the access state's
kernel filters cover, the sockets TLS services share and the watch over
their certificate files.  ``open_parts`` builds the real daemon's; unit tests build
``Parts`` from fakes (a ``MemoryReactorClock``, a recording spawner).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import attrs

from superd.access.state import AccessState, open_access
from superd.core.runtime import Runtime
from superd.net.listener import Listeners
from superd.observe.counters import Counters
from superd.proc.table import ProcessTable, open_process_table

if TYPE_CHECKING:
    from superd.handlers.tls.certwatch import CertificateFiles
    from superd.handlers.tls.sni import SNIRouter
    from superd.net.shared import SharedPorts

__all__ = ["Parts", "open_parts"]


def _sni_router(runtime: Runtime) -> "SNIRouter":
    """The router of a socket TLS services share, imported with the first one."""
    from superd.handlers.tls.sni import SNIRouter

    return SNIRouter(runtime)


@attrs.frozen(eq=False)
class Parts:
    """What every service of one superd process shares."""

    runtime: Runtime
    processes: ProcessTable
    access: AccessState
    #: Every listening socket (reload adds and removes them).
    listeners: Listeners = attrs.field(factory=Listeners)

    # What only TLS services use is made (and imported) with the first one.

    @cached_property
    def shared_ports(self) -> SharedPorts:
        """The sockets of TLS services, which several may share (``tls_sni``)."""
        from superd.net.shared import SharedPorts

        return SharedPorts(lambda: _sni_router(self.runtime))

    @cached_property
    def certificates(self) -> CertificateFiles:
        """The watch over the certificate files of the running TLS services."""
        from superd.handlers.tls.certwatch import CertificateFiles

        return CertificateFiles(self.runtime.reactor)

    @property
    def counters(self) -> Counters:
        """Accepted and refused counts per block."""
        return self.access.counters


def open_parts(runtime: Runtime) -> Parts:
    """The real daemon's parts: ``posix_spawn``, the ban database in the state
    directory, the hosts files and name lookups of the command line."""
    processes = open_process_table(runtime.reactor, cgroup=runtime.options.cgroup,
                                   spawn_helpers=runtime.options.spawn_helpers)
    listeners = Listeners()
    access = open_access(runtime, processes, Counters(), listeners.sockets)
    return Parts(runtime, processes, access, listeners)
