"""
The environment of an external server, as xinetd builds it.

Pure functions of the service, superd's startup environment (captured once
and passed in, never read from ``os.environ`` here) and the connection:

* no ``passenv``: superd's whole startup environment, minus the variables
  that describe superd itself to its supervisor (``LISTEN_FDS``,
  ``NOTIFY_SOCKET`` ...), which would mislead a child;
* ``passenv``: only the listed variables (an empty list: none);
* never superd's own secrets (``SECRET_VARIABLES``: the ban store's
  password), whatever ``passenv`` says;
* then the ``env`` pairs, in order, overriding;
* then the connection: ``REMOTE_HOST`` (numeric, as xinetd), ``REMOTE_ADDR``
  and ``REMOTE_PORT`` (systemd), ``PROTO``, ``TCPREMOTEIP``,
  ``TCPREMOTEPORT``, ``TCPLOCALIP``, ``TCPLOCALPORT`` (UCSPI).  These come
  last so a configured ``env`` can never spoof the peer;
* behind a load balancer (``proxy_protocol``) the peer is the client the
  PROXY header named, and ``PROXY_*`` say the rest (``proxy_environment``);
  any other ``PROXY_*`` variable is removed, so none can pose as the
  header's.

A peer of a UNIX-domain socket has no address: instead of the ``REMOTE_*``
and ``TCP*`` variables it gets UCSPI's UNIX protocol ones, ``PROTO=UNIX``,
``UNIXLOCALPATH`` (the socket), ``UNIXREMOTEEUID``, ``UNIXREMOTEEGID`` and
``UNIXREMOTEPID`` (the connecting process, as the kernel recorded it).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

from superd.config.model import ServiceConfig
from superd.config.storeurl import PASSWORD_VARIABLE
from superd.core.origin import ProxyOrigin
from superd.core.session import Peer, UnixPeer

__all__ = [
    "NO_ADDRESS",
    "SECRET_VARIABLES",
    "SUPERVISOR_VARIABLES",
    "base_environment",
    "datagram_environment",
    "missing_passenv",
    "proxy_environment",
    "stream_environment",
    "unix_variables",
    "wait_stream_environment",
]

#: xinetd's REMOTE_HOST for wait=yes stream services (no peer is known).
NO_ADDRESS = "<no address>"

#: Variables a supervisor sets for superd's own process; a child that saw
#: them would think it had been socket-activated or should notify systemd.
SUPERVISOR_VARIABLES = frozenset({
    "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
    "NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC",
})
#: superd's own secrets: no server it starts ever sees them.
SECRET_VARIABLES = frozenset({PASSWORD_VARIABLE})


def base_environment(service: ServiceConfig,
                     startup: Mapping[str, str]) -> Dict[str, str]:
    """The part of the child's environment that is fixed at load time."""
    if service.passenv is None:
        base = {name: value for name, value in startup.items()
                if name not in SUPERVISOR_VARIABLES and name not in SECRET_VARIABLES}
    else:
        base = {name: startup[name] for name in service.passenv
                if name in startup and name not in SECRET_VARIABLES}
    for name, value in service.env:
        base[name] = value
    return base


def missing_passenv(service: ServiceConfig,
                    startup: Mapping[str, str]) -> Tuple[str, ...]:
    """``passenv`` names absent from the startup environment (xinetd warns)."""
    if service.passenv is None:
        return ()
    return tuple(name for name in service.passenv if name not in startup)


def stream_environment(base: Mapping[str, str], peer: Optional[Peer],
                       local: Optional[Peer],
                       origin: Optional[ProxyOrigin] = None) -> Dict[str, str]:
    """The environment for one accepted TCP connection from ``peer`` (the
    client a PROXY header named, when ``origin`` says what else it said)."""
    if peer is None:
        return {**base, "REMOTE_HOST": NO_ADDRESS}
    if isinstance(peer, UnixPeer):
        return {**base, **unix_variables(peer)}
    host, port = peer.host, str(peer.port)
    env = {**base, "REMOTE_HOST": host, "REMOTE_ADDR": host, "REMOTE_PORT": port,
           "PROTO": "TCP", "TCPREMOTEIP": host, "TCPREMOTEPORT": port}
    if local is not None:
        env["TCPLOCALIP"] = local.host
        env["TCPLOCALPORT"] = str(local.port)
    if origin is not None:
        env = {name: value for name, value in env.items() if not name.startswith("PROXY_")}
        env.update(proxy_environment(origin))
    return env


def proxy_environment(origin: ProxyOrigin) -> Dict[str, str]:
    """
    ``PROXY_VERSION`` (1, 2), ``PROXY_COMMAND`` (PROXY, LOCAL, UNKNOWN),
    ``PROXY_ADDR``/``PROXY_PORT`` (the load balancer itself),
    ``PROXY_DST_ADDR``/``PROXY_DST_PORT`` (where the client connected to
    it), and one ``PROXY_<NAME>`` per v2 TLV (``PROXY_ALPN``,
    ``PROXY_AUTHORITY``, ``PROXY_SSL_CN`` ...).
    """
    env = {"PROXY_VERSION": str(origin.version), "PROXY_COMMAND": origin.command,
           "PROXY_ADDR": origin.proxy.host, "PROXY_PORT": str(origin.proxy.port)}
    if origin.destination is not None:
        env["PROXY_DST_ADDR"] = origin.destination.host
        env["PROXY_DST_PORT"] = str(origin.destination.port)
    for name, value in origin.facts:
        env[f"PROXY_{name}"] = value
    return env


def unix_variables(peer: UnixPeer) -> Dict[str, str]:
    """UCSPI's UNIX protocol variables for a peer of a UNIX-domain socket."""
    return {"PROTO": "UNIX", "UNIXLOCALPATH": peer.path,
            "UNIXREMOTEEUID": str(peer.uid), "UNIXREMOTEEGID": str(peer.gid),
            "UNIXREMOTEPID": str(peer.pid)}


def wait_stream_environment(base: Mapping[str, str]) -> Dict[str, str]:
    """wait=yes TCP: the child accepts itself, so no peer is known."""
    return stream_environment(base, None, None)


def datagram_environment(base: Mapping[str, str],
                         peer: Optional[Peer]) -> Dict[str, str]:
    """wait=yes UDP: REMOTE_* describe the first queued datagram's source."""
    env = dict(base)
    if peer is None:
        env["REMOTE_HOST"] = NO_ADDRESS
    else:
        env.update(_remote(peer))
    return env


def _remote(peer: Peer) -> Dict[str, str]:
    return {
        "REMOTE_HOST": peer.host,
        "REMOTE_ADDR": peer.host,
        "REMOTE_PORT": str(peer.port),
    }
