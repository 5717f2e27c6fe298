"""
Tests for superd.net.unixsocket: a UNIX socket file made with its mode and
owner before it listens, a stale file replaced, anything else refused and
left untouched, and only superd's own file removed at the end.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from superd.config.model import Location, SocketType, UnixSocket
from superd.net import unixsocket
from superd.net.address import ListenAddress
from superd.net.unixsocket import SocketFileError, bind_unix, made, reapply_permissions, release

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    yield
    unixsocket.reset()


def _listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    return sock


def _stale(path: Path, kind: int = socket.SOCK_STREAM) -> None:
    """A socket file whose socket is gone, as a killed process leaves it."""
    sock = socket.socket(socket.AF_UNIX, kind)
    sock.bind(str(path))
    sock.close()


def test_the_socket_listens_with_its_mode_before_anyone_connects(tmp_path: Path) -> None:
    """bind_unix returns a listening non-blocking socket whose file has
    socket_mode whatever the umask."""
    path = tmp_path / "s.sock"
    old = os.umask(0o077)
    try:
        sock = bind_unix(UnixSocket(str(path), 0o640), 5)
    finally:
        os.umask(old)
    with sock:
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        assert not sock.getblocking()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
    assert made(str(path))


@root_only
def test_the_owner_is_given_before_listening(tmp_path: Path) -> None:
    """socket_owner chowns the file (uid and gid; a missing half is kept)."""
    path = tmp_path / "s.sock"
    bind_unix(UnixSocket(str(path), 0o600, 65534, 65534), 5).close()
    status = path.lstat()
    assert (status.st_uid, status.st_gid) == (65534, 65534)
    release(str(path))
    bind_unix(UnixSocket(str(path), 0o600, None, 65534), 5).close()
    assert (path.lstat().st_uid, path.lstat().st_gid) == (os.geteuid(), 65534)


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    """A socket file nobody listens on (stream or datagram) is removed and
    bound again: a client reaches the new socket."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        path = tmp_path / f"stale-{kind}.sock"
        _stale(path, kind)
        with bind_unix(UnixSocket(str(path)), 5), socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))


def test_a_socket_in_use_is_refused(tmp_path: Path) -> None:
    """A socket file some process listens on stays, and the bind is refused."""
    path = tmp_path / "live.sock"
    with _listener(path):
        before = path.lstat().st_ino
        with pytest.raises(SocketFileError) as caught:
            bind_unix(UnixSocket(str(path)), 5)
        assert caught.value.reason == f"another process listens on {path}"
        assert caught.value.errno == errno.EADDRINUSE
        assert path.lstat().st_ino == before
    assert not made(str(path))


def test_a_datagram_socket_in_use_is_refused(tmp_path: Path) -> None:
    """The connect test tries the other socket types: a live datagram socket counts."""
    path = tmp_path / "dgram.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as live:
        live.bind(str(path))
        with pytest.raises(SocketFileError, match="another process listens"):
            bind_unix(UnixSocket(str(path)), 5)


@pytest.mark.parametrize("what", ["regular file", "directory", "symbolic link", "fifo"])
def test_anything_but_a_socket_is_refused_and_untouched(tmp_path: Path, what: str) -> None:
    """A regular file, a directory, a symbolic link (even to a stale socket)
    or a FIFO at the path: refused with what it is, left as it was."""
    path = tmp_path / "thing"
    if what == "regular file":
        path.write_text("precious\n")
    elif what == "directory":
        path.mkdir()
    elif what == "symbolic link":
        _stale(tmp_path / "target.sock")
        path.symlink_to(tmp_path / "target.sock")
    else:
        os.mkfifo(path)
    before = path.lstat()
    with pytest.raises(SocketFileError) as caught:
        bind_unix(UnixSocket(str(path)), 5)
    assert caught.value.reason == (f"{path} exists and is a {what.replace('fifo', 'FIFO')},"
                                   " not a socket; superd replaces only a stale socket file")
    after = path.lstat()
    assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (
        before.st_ino, before.st_mode, before.st_mtime_ns)
    if what == "regular file":
        assert path.read_text() == "precious\n"


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    """The parent directory is not created; the error says which is missing."""
    path = tmp_path / "nowhere" / "s.sock"
    with pytest.raises(SocketFileError) as caught:
        bind_unix(UnixSocket(str(path)), 5)
    assert caught.value.reason == f"the directory {tmp_path / 'nowhere'} does not exist"


def test_release_removes_only_the_file_superd_made(tmp_path: Path) -> None:
    """release() removes superd's file once; a file another process put at
    the path since (same name, another inode) stays, and so does a path
    superd never made."""
    path = tmp_path / "s.sock"
    bind_unix(UnixSocket(str(path)), 5).close()
    release(str(path))
    assert not path.exists()
    bind_unix(UnixSocket(str(path)), 5).close()
    with _listener(tmp_path / "theirs.sock"):
        os.rename(tmp_path / "theirs.sock", path)  # another process's socket took the path
        release(str(path))
        assert stat.S_ISSOCK(path.lstat().st_mode)
    other = tmp_path / "never.sock"
    _stale(other)
    release(str(other))
    assert other.exists()


def test_reapply_permissions_only_to_superd_s_file(tmp_path: Path) -> None:
    """A reload's new socket_mode reaches a file superd made, not one it adopted."""
    path = tmp_path / "s.sock"
    bind_unix(UnixSocket(str(path), 0o600), 5).close()
    address = ListenAddress("svc", "svc", str(path), 0, SocketType.STREAM, Location("f", 1),
                            unix=UnixSocket(str(path), 0o666))
    reapply_permissions(address)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666
    other = tmp_path / "systemd.sock"
    with _listener(other):
        os.chmod(other, 0o600)
        reapply_permissions(attrs.evolve(address, host=str(other),
                                         unix=UnixSocket(str(other), 0o666)))
        assert stat.S_IMODE(other.stat().st_mode) == 0o600
    release(str(path))
    assert not path.exists()  # the change of mode is superd's own


@contextlib.contextmanager
def not_root() -> Iterator[None]:
    """Run the body without root's rights (as nobody) when the tests run as root."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_an_owner_superd_cannot_give_is_named(tmp_path: Path) -> None:
    """Not root, chown to another user fails: the error says what was asked,
    and no file is left behind."""
    # A directory nobody can reach (pytest's own are root's, mode 0700).
    where = Path(tempfile.mkdtemp(prefix="superd-notroot-"))
    where.chmod(0o777)
    path = where / "s.sock"
    try:
        with not_root(), pytest.raises(SocketFileError) as caught:
            bind_unix(UnixSocket(str(path), 0o600, 0, 0), 5)
    finally:
        shutil.rmtree(where)
    assert caught.value.reason == (f"cannot give {path} mode 0600 and owner 0:0:"
                                   " Operation not permitted")
    assert not path.exists()
