"""
The outside world as the configuration loader sees it, injected.

``LoadEnvironment`` bundles every fact loading depends on: file contents,
directory listings, accounts, ``/etc/services``, host names, superd's own
credentials, executability and the builtin table.  Tests build one from
dictionaries; ``LoadEnvironment.system()`` is the real machine.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
from typing import Any, Callable, List, Tuple

import attrs

from superd.config.builtins import is_builtin
from superd.config.model import SocketType

__all__ = ["LoadEnvironment"]


def _read_file(path: str) -> str:
    with open(path, "rb") as handle:
        # surrogateescape: Latin-1 comments and odd bytes in paths survive
        # exactly, as the OS would hand them back.
        return handle.read().decode("utf-8", "surrogateescape")


def _resolve_host(name: str) -> Tuple[str, ...]:
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _getservbyname(name: str, protocol: str) -> int:
    return socket.getservbyname(name, protocol)


@attrs.frozen
class LoadEnvironment:
    """
    Everything ``load_configuration`` asks of the machine.

    Lookups follow the standard library's conventions: ``getpwnam``,
    ``getpwuid`` and ``getgrnam`` return objects with ``pw_name``/``pw_uid``/
    ``pw_gid`` (``gr_name``/``gr_gid``) and raise ``KeyError``;
    ``getservbyname`` and ``resolve_host`` raise ``OSError`` when the name is
    unknown; ``read_file`` and ``list_dir`` raise ``OSError``.
    """

    read_file: Callable[[str], str] = _read_file
    list_dir: Callable[[str], List[str]] = os.listdir
    is_dir: Callable[[str], bool] = os.path.isdir
    is_file: Callable[[str], bool] = os.path.isfile
    getpwnam: Callable[[str], Any] = pwd.getpwnam
    getpwuid: Callable[[int], Any] = pwd.getpwuid
    getgrnam: Callable[[str], Any] = grp.getgrnam
    getservbyname: Callable[[str, str], int] = _getservbyname
    #: Host name -> IP literals (IPv4 and IPv6), in resolver order.
    resolve_host: Callable[[str], Tuple[str, ...]] = _resolve_host
    #: superd's own effective ids (not root: no switching to other accounts).
    euid: int = attrs.field(factory=os.geteuid)
    egid: int = attrs.field(factory=os.getegid)
    is_executable: Callable[[str], bool] = _is_executable
    is_builtin: Callable[[str, SocketType], bool] = is_builtin

    @classmethod
    def system(cls) -> "LoadEnvironment":
        """The real machine: its files, accounts, services, resolver and ids."""
        return cls()
