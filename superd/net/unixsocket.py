"""
UNIX-domain listening sockets in the file system: made safely, given their
mode and owner, and removed when superd is done with them.

``bind_unix`` makes the listening socket of a ``bind = unix:PATH`` service:

1. whatever is at the path is looked at, never followed: nothing, fine; a
   socket nobody listens on (a connection to it is refused: left behind by
   a process that died) is removed; a socket some process listens on, or
   anything that is not a socket (a regular file, a directory, a symbolic
   link), is left untouched and the bind refused;
2. the socket is bound, its file given ``socket_mode`` and
   ``socket_owner``, and only then made to listen: no client can connect
   before the file has its final permissions;
3. the file's identity (device, inode and change time: a file made at the
   same path later may get the same inode) is remembered, and ``release``
   removes the file only while it is still the one superd made -- never a
   file another process has put there since, nor one systemd made and
   passed (``superd.net.activation``).

Which files superd made is process-wide state, kept here, because a socket
outlives the listener that bound it: a reload that keeps a service moves
the bound socket to the new listener, and the file stays where it is.
"""

from __future__ import annotations

import errno
import os
import posixpath
import socket
import stat
from typing import Dict, Optional, Tuple

from twisted.logger import Logger

from superd.config.model import UnixSocket
from superd.core.files import kind_of
from superd.net.address import ListenAddress
from superd.observe.events import EV_SOCKET_FILE_ERROR, EV_STALE_SOCKET

__all__ = ["SocketFileError", "apply_permissions", "bind_unix", "made", "reapply_permissions",
           "release", "reset", "touched"]

_log = Logger(namespace="superd.listen")

#: Path -> identity (``_identity``) of each socket file this process made.
_made: Dict[str, Tuple[int, int, int]] = {}


class SocketFileError(Exception):
    """The socket file cannot be made; ``reason`` says why, for a person."""

    def __init__(self, reason: str, code: Optional[int] = None) -> None:
        self.reason = reason
        self.errno = code
        super().__init__(reason)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return kind_of(mode)


def _in_use(path: str) -> bool:
    """Whether a process listens on the socket file at ``path``: a connection
    (of the socket's own type, which the kernel does not tell) is accepted."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            probe.setblocking(False)
            try:
                probe.connect(path)
            except BlockingIOError:
                return True  # its accept queue is full: it is alive
            except ConnectionRefusedError:
                return False
            except OSError as e:
                if e.errno == errno.EPROTOTYPE:
                    continue
                raise SocketFileError(f"cannot tell whether {path} is in use:"
                                      f" {e.strerror}", e.errno) from e
            return True
    return False


def _clear(path: str) -> None:
    """Make room at ``path``: remove a stale socket file, refuse anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise SocketFileError(f"cannot inspect {path}: {e.strerror}", e.errno) from e
    if not stat.S_ISSOCK(mode):
        raise SocketFileError(f"{path} exists and is {_kind(mode)}, not a socket; superd"
                              " replaces only a stale socket file", errno.EEXIST)
    if _in_use(path):
        raise SocketFileError(f"another process listens on {path}", errno.EADDRINUSE)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise SocketFileError(f"cannot remove the stale socket {path}: {e.strerror}",
                              e.errno) from e
    _log.info("removed the stale socket file {path}", event=EV_STALE_SOCKET, path=path)


def _identity(path: str) -> Tuple[int, int, int]:
    status = os.lstat(path)
    return status.st_dev, status.st_ino, status.st_ctime_ns


def apply_permissions(unix: UnixSocket) -> None:
    """Give the socket file ``socket_mode`` and ``socket_owner``; raises ``OSError``."""
    if unix.uid is not None or unix.gid is not None:
        owner = -1 if unix.uid is None else unix.uid
        group = -1 if unix.gid is None else unix.gid
        os.chown(unix.path, owner, group, follow_symlinks=False)
    os.chmod(unix.path, unix.mode)


def reapply_permissions(address: ListenAddress) -> None:
    """
    A reload kept the UNIX socket of ``address`` with
    perhaps another ``socket_mode``/``socket_owner``: give them to its file,
    if superd made it (systemd's keeps its unit's).  A failure is logged;
    the socket keeps serving.
    """
    unix = address.unix
    if unix is None or not made(unix.path):
        return
    try:
        apply_permissions(unix)
        touched(unix.path)
    except OSError as e:
        _log.warn("service {service_id}: cannot set the mode or owner of {path}: {error}",
                  event=EV_SOCKET_FILE_ERROR, service_id=address.service_id,
                  path=unix.path, error=e.strerror or str(e))


def _bind(sock: socket.socket, path: str) -> None:
    try:
        sock.bind(path)
    except FileNotFoundError as e:
        raise SocketFileError(f"the directory {posixpath.dirname(path)} does not exist",
                              e.errno) from e
    except OSError as e:
        raise SocketFileError(e.strerror or str(e), e.errno) from e


def bind_unix(unix: UnixSocket, backlog: int) -> socket.socket:
    """
    A listening, non-blocking socket on ``unix.path`` with the file's mode
    and owner set (see the module docstring); raises ``SocketFileError``.
    """
    _clear(unix.path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _bind(sock, unix.path)
    except SocketFileError:
        sock.close()
        raise
    try:
        _permit(unix)
        identity = _identity(unix.path)
        sock.listen(backlog)
        sock.setblocking(False)
    except (OSError, SocketFileError) as e:
        sock.close()
        _unlink_quietly(unix.path)
        if isinstance(e, SocketFileError):
            raise
        raise SocketFileError(e.strerror or str(e), e.errno) from e
    _made[unix.path] = identity
    return sock


def _permit(unix: UnixSocket) -> None:
    try:
        apply_permissions(unix)
    except OSError as e:
        owner = "-" if unix.uid is None else unix.uid
        group = "-" if unix.gid is None else unix.gid
        raise SocketFileError(f"cannot give {unix.path} mode {unix.mode:04o} and owner"
                              f" {owner}:{group}: {e.strerror or e}", e.errno) from e


def touched(path: str) -> None:
    """superd changed the inode of its socket file at ``path`` (chmod): note
    its new change time, so that ``release`` still knows the file."""
    if path in _made:
        try:
            _made[path] = _identity(path)
        except OSError:
            pass


def made(path: str) -> bool:
    """Whether the socket file at ``path`` is one this process made (and has
    not released)."""
    return path in _made


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def release(path: str) -> None:
    """
    superd is done with the socket it made at ``path``: remove its file,
    unless something else has taken the path since.  A failure (privileges
    dropped since the bind) is logged: the next start replaces the stale file.
    """
    identity = _made.pop(path, None)
    if identity is None:
        return
    try:
        if _identity(path) == identity:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        _log.warn("cannot remove the socket file {path}: {error}", event=EV_SOCKET_FILE_ERROR,
                  path=path, error=e.strerror or str(e))


def reset() -> None:
    """Forget which files this process made (tests)."""
    _made.clear()
