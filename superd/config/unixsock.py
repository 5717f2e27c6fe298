"""
``bind = unix:PATH`` and what goes with it, checked at load.

A service that listens on a UNIX-domain socket has no port, no IP protocol
and no peer address: its peers are local processes known by their
credentials (``SO_PEERCRED``).  ``check_unix`` refuses what cannot work
there -- a ``port``, address lists, IP flags, datagrams, TLS, sensors --
and resolves ``socket_owner``, ``only_uid`` and ``only_gid`` to numbers
through the injected account lookup, so nothing is looked up at connect
time.  Address settings a service only inherits from ``defaults``
(``only_from``, ``no_access``, ``v6only``, USERID logging) are not errors:
written for IP services, they are left out of a UNIX one.
"""

from __future__ import annotations

from typing import AbstractSet, Any, Dict, Iterable, Optional, Protocol, Tuple

import attrs

from superd.config.attributes import UNIX_PREFIX
from superd.config.draft import Draft
from superd.config.environment import LoadEnvironment
from superd.config.model import SocketType, UnixSocket

__all__ = ["UnixSettings", "check_unix", "unix_overrides"]

#: Attributes only a UNIX socket's service may have.
UNIX_ONLY = ("socket_mode", "socket_owner", "only_uid", "only_gid")

#: Written in the service block, each of these cannot work on a UNIX socket.
_REFUSED: Dict[str, str] = {
    "port": "a UNIX socket has no port; remove this line",
    "protocol": "a UNIX socket has no IP protocol; remove this line",
    "v6only": "v6only does not apply to a UNIX socket",
    "only_from": "address lists do not apply to a UNIX socket's peers;"
                 " use only_uid or only_gid",
    "no_access": "address lists do not apply to a UNIX socket's peers;"
                 " use only_uid or only_gid",
    "libwrap": "hosts.allow and hosts.deny match addresses, which a UNIX socket's"
               " peers do not have",
    # The PROXY protocol (superd.config.proxy) names IP clients: a UNIX
    # socket's peer is known by its credentials, and has no address to send.
    "proxy_protocol": "a PROXY header names an IP client; a UNIX socket's peers are"
                      " known by their credentials",
    "proxy_from": "a PROXY header names an IP client; a UNIX socket's peers are"
                  " known by their credentials",
    "proxy_timeout": "a PROXY header names an IP client; a UNIX socket's peers are"
                     " known by their credentials",
    "redirect_proxy": "a UNIX socket's peer has no IP address to send upstream",
    "v6_source_prefix": "v6_source_prefix counts IPv6 sources; a UNIX socket's peers"
                        " are counted by uid",
}

#: Flags that cannot work on a UNIX socket, and why.
_FLAGS: Tuple[Tuple[AbstractSet[str], str], ...] = (
    (frozenset({"IPv4", "IPv6"}), "IPv4 and IPv6 do not apply to a UNIX socket"),
    (frozenset({"NODELAY", "KEEPALIVE"}),
     "NODELAY and KEEPALIVE are TCP options; a UNIX socket has neither"),
    (frozenset({"IDONLY"}), "IDONLY asks the peer host's ident server; a UNIX peer is"
                            " known by its uid instead (use only_uid)"),
    (frozenset({"SENSOR"}), "a SENSOR bans IP addresses; a UNIX peer has none"),
)


class _Checker(Protocol):
    draft: Draft
    env: LoadEnvironment

    def get(self, key: str, default: Any = None) -> Any: ...

    def error(self, attribute: Optional[str], message: str) -> None: ...

    def warn(self, attribute: Optional[str], message: str) -> None: ...


@attrs.frozen
class UnixSettings:
    """A service's UNIX socket and the credentials its peers must have."""

    socket: UnixSocket
    only_uid: Optional[frozenset[int]] = None
    only_gid: Optional[frozenset[int]] = None


def _written(c: _Checker, attribute: str) -> bool:
    return attribute in c.draft.written


def _unix_words(c: _Checker) -> Tuple[str, ...]:
    return tuple(w for w in c.get("bind", ()) if w.startswith(UNIX_PREFIX))


def check_unix(c: _Checker, socket_type: SocketType) -> Optional[UnixSettings]:
    """
    The service's UNIX socket settings, or None when it listens on IP (then
    the UNIX-only attributes are refused).  Problems go to ``c.error``; the
    result is meaningless once one was reported.
    """
    words = _unix_words(c)
    if not words:
        for attribute in UNIX_ONLY:
            if _written(c, attribute):
                c.error(attribute, f"{attribute} needs bind = unix:/path/to/socket")
        return None
    _check_bind(c, words)
    _check_combinations(c, socket_type)
    mode = c.get("socket_mode", 0o666)
    uid, gid = _owner(c)
    socket = UnixSocket(words[0][len(UNIX_PREFIX):], mode, uid, gid)
    return UnixSettings(socket, _ids(c, "only_uid", "user"), _ids(c, "only_gid", "group"))


def _check_bind(c: _Checker, words: Tuple[str, ...]) -> None:
    if len(c.get("bind", ())) > 1:
        c.error("bind", "a UNIX socket is the service's only address: write one"
                        " unix:PATH and nothing else in bind")
    if not _written(c, "bind"):
        c.error("bind", "a unix: path in the defaults would be bound by every service;"
                        " write it in the service")


def _check_combinations(c: _Checker, socket_type: SocketType) -> None:
    if socket_type is not SocketType.STREAM:
        c.error("socket_type", "a UNIX socket serves socket_type = stream only"
                               " (a datagram carries no peer credentials)")
    for attribute, message in _REFUSED.items():
        if _written(c, attribute):
            c.error(attribute, message)
    flags = c.get("flags", frozenset())
    for refused, message in _FLAGS:
        if flags & refused:
            c.error("flags", message)
    types = c.get("type", frozenset())
    if types & {"TCPMUX", "TCPMUXPLUS"}:
        c.error("type", "tcpmux clients have no socket of their own; remove bind")
    elif "INTERNAL" in types and c.draft.name == "tcpmux":
        c.error("bind", "tcpmux is not served on a UNIX socket")
    tls = sorted(name for name in c.draft.written if name.startswith("tls_"))
    if tls:
        c.error(tls[0], "TLS is not offered on a UNIX socket (its peers are local;"
                        " restrict them with socket_mode and only_uid)")
    for attribute in ("log_on_success", "log_on_failure"):
        if _written(c, attribute) and "USERID" in c.get(attribute, ()):
            c.warn(attribute, "USERID asks the peer host's ident server; a UNIX peer has"
                              " none, and its uid is logged instead")


def _number(c: _Checker, attribute: str, word: str, kind: str) -> Optional[int]:
    """A user (``kind`` "user") or group id, by number or by name."""
    if word.isdigit():
        return int(word)
    try:
        if kind == "user":
            return int(c.env.getpwnam(word).pw_uid)
        return int(c.env.getgrnam(word).gr_gid)
    except KeyError:
        c.error(attribute, f"unknown {kind} {word!r}")
        return None


def _ids(c: _Checker, attribute: str, kind: str) -> Optional[frozenset[int]]:
    words: Optional[Iterable[str]] = c.get(attribute)
    if words is None:
        return None
    found = (_number(c, attribute, word, kind) for word in words)
    return frozenset(i for i in found if i is not None)


def _owner(c: _Checker) -> Tuple[Optional[int], Optional[int]]:
    """``socket_owner`` as (uid, gid); a user alone brings its primary group
    (a uid without an account leaves the group as it is), as systemd's
    ``SocketUser=``."""
    written = c.get("socket_owner")
    if written is None:
        return None, None
    user, group = written
    uid = gid = None
    if user is not None:
        uid = _number(c, "socket_owner", user, "user")
        if group is None and uid is not None:
            gid = _primary_group(c, uid)
    if group is not None:
        gid = _number(c, "socket_owner", group, "group")
    if c.env.euid != 0 and uid is not None and uid != c.env.euid:
        c.error("socket_owner", f"superd runs as uid {c.env.euid}, not root, so it cannot"
                                f" give the socket to {user!r} (uid {uid})")
    return uid, gid


def _primary_group(c: _Checker, uid: int) -> Optional[int]:
    try:
        return int(c.env.getpwuid(uid).pw_gid)
    except KeyError:
        return None


def unix_overrides(settings: UnixSettings) -> Dict[str, Any]:
    """The ``ServiceConfig`` fields a UNIX socket sets: no port, no IP address,
    and no address rules inherited from the defaults."""
    return {
        "unix": settings.socket, "only_uid": settings.only_uid,
        "only_gid": settings.only_gid, "protocol": "unix", "port": None, "bind": (),
        "v6only": None, "only_from": None, "no_access": (),
    }
