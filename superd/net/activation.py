"""
systemd socket activation: listening sockets passed in ``LISTEN_FDS``.

A supervisor (systemd, or anything speaking its protocol) may bind the
sockets itself and pass them as fds 3, 4, ... with ``LISTEN_PID`` (our pid),
``LISTEN_FDS`` (how many) and ``LISTEN_FDNAMES`` (colon-separated names).
Because the supervisor keeps its copy open, connections made while superd
restarts wait in the kernel's backlog instead of being refused: that is the
rolling restart without loss.

Which service adopts which socket (the naming rule):

* a socket whose name (``FileDescriptorName=``) is a service id serves that
  service wherever the unit made it listen (the configured ``port`` and
  ``bind`` are then not used); when several sockets carry the service's id
  (several ``bind`` values), each serves the address with its local host;
* a socket with any other name (systemd's default is the unit's name) serves
  the service address equal to its own: same socket type, host and port,
  or, for a UNIX socket (``ListenStream=/run/foo.sock``), the same path.

A ``bind = unix:PATH`` service adopts only UNIX sockets and an IP service
only IP ones, whatever their names.  The file of an adopted UNIX socket is
systemd's: superd neither changes its mode nor removes it.

A service address with a matching socket does not bind.  The environment is
read once, by ``capture`` (the tap calls it first thing), and ``LISTEN_PID``,
``LISTEN_FDS`` and ``LISTEN_FDNAMES`` are removed so that nothing else -- a
child, or Twisted's ``systemd:`` endpoint parser, which reads and deletes
them when ``twisted.internet.endpoints`` is first imported -- takes the
same sockets again.  If that import already happened, its parsed copy is
used instead (``superd.core.twistedprivate.endpoints_inherited_descriptors``).
The inherited sockets are a process-wide resource, like the environment
they are announced in, so the registry is module state; ``claim`` hands out
duplicates, so a reload that listens again adopts the same socket again.

Why not ``twisted.python.systemd.ListenFDs`` alone: it drops every socket
when ``LISTEN_FDNAMES`` is missing (systemd before 227, hand-made
activation), and leaves ``LISTEN_FDNAMES`` behind.
"""

from __future__ import annotations

import os
import socket
from typing import MutableMapping, Optional, Sequence, Tuple

import attrs
from twisted.logger import Logger

from superd.core import twistedprivate
from superd.net.address import ListenAddress
from superd.observe import events

__all__ = [
    "FIRST_FD",
    "Inherited",
    "capture",
    "claim",
    "inherited",
    "inherits",
    "parse_environment",
    "reset",
    "unclaimed",
    "warn_unclaimed",
]

_log = Logger(namespace="superd.activation")

#: systemd passes sockets from this descriptor on (SD_LISTEN_FDS_START).
FIRST_FD = 3
#: A bound on what a (mistaken) environment can make us inspect.
MAX_FDS = 4096
#: The name systemd gives a socket whose unit sets none (old systemd).
UNKNOWN = "unknown"
VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
EV_ADOPTED = events.EV_SOCKET_ADOPTED


@attrs.frozen
class Inherited:
    """One listening socket passed to this process."""

    fd: int
    name: str
    family: int
    type: int
    host: str
    port: int


def parse_environment(environ: MutableMapping[str, str], pid: int,
                      start: int = FIRST_FD) -> Tuple[Tuple[int, str], ...]:
    """
    ``(fd, name)`` of each socket passed to process ``pid``, and remove the
    ``LISTEN_*`` variables from ``environ`` (whether or not they were ours).
    """
    values = {name: environ.pop(name, None) for name in VARIABLES}
    if values["LISTEN_PID"] != str(pid):
        return ()
    try:
        count = int(values["LISTEN_FDS"] or "0")
    except ValueError:
        return ()
    if not 0 < count <= MAX_FDS:
        return ()
    names = (values["LISTEN_FDNAMES"] or "").split(":")
    if len(names) != count:
        names = [UNKNOWN] * count
    return tuple((start + i, names[i] or UNKNOWN) for i in range(count))


def _describe(fd: int, name: str) -> Optional[Inherited]:
    """What socket ``fd`` is, or None if it is neither an IP socket nor a
    UNIX socket in the file system."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError as e:
        _log.error("passed descriptor {fd} ({name}) is unusable: {error}",
                   event=events.EV_SOCKET_ADOPTED, fd=fd, name=name, error=str(e))
        return None
    with sock:
        if sock.family == socket.AF_UNIX:
            return _describe_unix(sock, fd, name)
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            _log.warn("passed socket {fd} ({name}) is not an IP socket; ignored",
                      event=events.EV_SOCKET_ADOPTED, fd=fd, name=name)
            return None
        host, port = sock.getsockname()[:2]
        return Inherited(fd, name, sock.family, sock.type, host, port)


def _describe_unix(sock: socket.socket, fd: int, name: str) -> Optional[Inherited]:
    path = sock.getsockname()
    if not isinstance(path, str) or not path.startswith("/"):
        _log.warn("passed socket {fd} ({name}) is not a UNIX socket in the file system;"
                  " ignored", event=events.EV_SOCKET_ADOPTED, fd=fd, name=name)
        return None
    return Inherited(fd, name, sock.family, sock.type, path, 0)


def _describe_all(passed: Sequence[Tuple[int, str]]) -> Tuple[Inherited, ...]:
    found = []
    for fd, name in passed:
        # Our servers are spawned without them; never let one leak by exec.
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass
        described = _describe(fd, name)
        if described is not None:
            found.append(described)
    return tuple(found)


_captured: Optional[Tuple[Inherited, ...]] = None
#: Descriptors some service adopted.
_claimed: set[int] = set()


def _from_twisted() -> Sequence[Tuple[int, str]]:
    """The sockets Twisted's endpoints module took, if it was imported first."""
    fds, names = twistedprivate.endpoints_inherited_descriptors()
    return tuple(zip(fds, list(names) or [UNKNOWN] * len(fds), strict=False))


def capture(environ: Optional[MutableMapping[str, str]] = None,
            pid: Optional[int] = None, start: int = FIRST_FD) -> Tuple[Inherited, ...]:
    """Read (once per process) the sockets passed to us; later calls return them."""
    global _captured
    if _captured is None:
        env = os.environ if environ is None else environ
        passed = parse_environment(env, os.getpid() if pid is None else pid, start)
        _captured = _describe_all(passed or _from_twisted())
        for each in _captured:
            _log.info("inherited socket {fd} named {name} on {host} port {port}",
                      event=EV_ADOPTED, fd=each.fd, name=each.name,
                      host=each.host, port=each.port)
    return _captured


def inherited() -> Tuple[Inherited, ...]:
    """The captured sockets (none if ``capture`` was not called)."""
    return _captured or ()


def reset() -> None:
    """Forget the captured sockets (tests)."""
    global _captured
    _captured = None
    _claimed.clear()


def _kind(address: ListenAddress) -> int:
    return socket.SOCK_DGRAM if address.protocol == "udp" else socket.SOCK_STREAM


def _same_host(a: str, b: str) -> bool:
    return a.split("%")[0].lower() == b.split("%")[0].lower()


def find(address: ListenAddress, siblings: int,
         passed: Sequence[Inherited]) -> Optional[Inherited]:
    """
    The passed socket that serves ``address`` (one of ``siblings`` addresses
    of its service), by the naming rule in the module docstring.
    """
    unix = address.unix is not None
    usable = [p for p in passed if p.type == _kind(address)
              and (p.family == socket.AF_UNIX) == unix]
    named = [p for p in usable if p.name == address.service_id]
    if named and siblings == 1:
        return named[0]
    for each in named:
        if _same_host(each.host, address.host):
            return each
    if unix:
        return next((p for p in usable if p.host == address.host), None)
    for each in usable:
        if (each.name != address.service_id and address.port != 0
                and each.port == address.port and _same_host(each.host, address.host)):
            return each
    return None


def _siblings(address: ListenAddress) -> int:
    # ListenAddress does not say how many addresses its service has; a name
    # match needs it.  Count the passed sockets named after the service: with
    # one, it serves the service's (first) address.
    return max(1, len([p for p in inherited() if p.name == address.service_id]))


def inherits(address: ListenAddress) -> bool:
    """True when a passed socket serves ``address`` (it must not bind)."""
    return find(address, _siblings(address), inherited()) is not None


def claim(address: ListenAddress) -> Optional[socket.socket]:
    """A non-blocking duplicate of the passed socket serving ``address``, or None."""
    match = find(address, _siblings(address), inherited())
    if match is None:
        return None
    sock = socket.socket(match.family, match.type, fileno=os.dup(match.fd))
    sock.setblocking(False)
    _claimed.add(match.fd)
    _log.info("service {service_id} adopts passed socket {name} ({host} port {port})",
              event=EV_ADOPTED, service_id=address.service_id, name=match.name,
              host=match.host, port=match.port)
    return sock


def unclaimed() -> Tuple[Inherited, ...]:
    """Passed sockets no service adopted."""
    return tuple(p for p in inherited() if p.fd not in _claimed)


def warn_unclaimed() -> int:
    """
    Log each passed socket no service adopted: its clients would wait in its
    backlog forever (the supervisor keeps it open).  Returns how many.
    """
    idle = unclaimed()
    for each in idle:
        _log.warn("passed socket {name} ({host} port {port}) matches no service;"
                  " connections to it will not be served", event=EV_ADOPTED,
                  fd=each.fd, name=each.name, host=each.host, port=each.port,
                  unclaimed=True)
    return len(idle)
