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

from typing import TYPE_CHECKING

import attrs

from superd.access.state import AccessState, open_access
from superd.core.runtime import Runtime
from superd.handlers.tls.certwatch import CertificateFiles
from superd.net.listener import Listeners
from superd.net.shared import SharedPorts
from superd.observe.counters import Counters
from superd.proc.table import ProcessTable, open_process_table

if TYPE_CHECKING:
    from superd.handlers.tls.sni import SNIRouter

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
    #: The sockets of TLS services, which several may share (``tls_sni``).
    shared_ports: SharedPorts = attrs.field(default=attrs.Factory(
        lambda self: SharedPorts(lambda: _sni_router(self.runtime)), takes_self=True))
    #: The watch over the certificate files of the running TLS services.
    certificates: CertificateFiles = attrs.field(default=attrs.Factory(
        lambda self: CertificateFiles(self.runtime.reactor), takes_self=True))

    @property
    def counters(self) -> Counters:
        """Accepted and refused counts per block."""
        return self.access.counters


def open_parts(runtime: Runtime) -> Parts:
    """The real daemon's parts: ``posix_spawn``, the ban database in the state
    directory, the hosts files and name lookups of the command line."""
    processes = open_process_table(runtime.reactor, cgroup=runtime.options.cgroup)
    listeners = Listeners()
    access = open_access(runtime, processes, Counters(), listeners.sockets)
    return Parts(runtime, processes, access, listeners)
