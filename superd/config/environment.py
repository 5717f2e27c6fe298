"""
The outside world as the configuration loader sees it, injected.

``LoadEnvironment`` bundles every fact loading depends on: file contents,
directory listings, accounts, ``/etc/services``, host names, superd's own
credentials, executability and the builtin table.  Tests build one from
dictionaries; ``LoadEnvironment.system()`` is the real machine.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import socket
import stat
from typing import Any, Callable, List, Optional, Tuple

import attrs

from superd.config.builtins import is_builtin
from superd.config.model import SocketType
from superd.core.files import MAX_CONFIG_FILE, kind_of, read_regular_file

__all__ = ["LoadEnvironment"]


def decode(data: bytes) -> str:
    """A file's bytes as text: surrogateescape keeps bytes that are not UTF-8
    exactly (``superd.config.text`` finds and shows them)."""
    return data.decode("utf-8", "surrogateescape")


def _read_file(path: str) -> str:
    return decode(read_regular_file(path, MAX_CONFIG_FILE))


def _why_not_file(path: str) -> Optional[str]:
    try:
        mode = os.stat(path).st_mode
    except ValueError:
        return "the name is not a valid path"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop"
        if error.errno == errno.ENOENT and os.path.islink(path):
            return "broken symbolic link"
        return error.strerror or str(error)
    return None if stat.S_ISREG(mode) else f"not a regular file ({kind_of(mode)})"


def _resolve_host(name: str) -> Tuple[str, ...]:
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _getservbyname(name: str, protocol: str) -> int:
    try:
        return socket.getservbyname(name, protocol)
    except (UnicodeError, ValueError):
        # A name no /etc/services line can hold (not UTF-8, a NUL byte).
        raise OSError(f"{name!r} cannot be an /etc/services name") from None


@attrs.frozen
class LoadEnvironment:
    """
    Everything ``load_configuration`` asks of the machine.

    Lookups follow the standard library's conventions: ``getpwnam``,
    ``getpwuid`` and ``getgrnam`` return objects with ``pw_name``/``pw_uid``/
    ``pw_gid`` (``gr_name``/``gr_gid``) and raise ``KeyError``;
    ``getservbyname`` and ``resolve_host`` raise ``OSError`` when the name is
    unknown; ``read_file`` and ``list_dir`` raise ``OSError``.  ``read_file``
    reads only regular files of at most 4 MiB, without blocking;
    ``why_not_file`` says why ``includedir`` skips an entry (None: it reads it).
    """

    read_file: Callable[[str], str] = _read_file
    list_dir: Callable[[str], List[str]] = os.listdir
    is_dir: Callable[[str], bool] = os.path.isdir
    why_not_file: Callable[[str], Optional[str]] = _why_not_file
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
