"""
Reading a small file named by configuration: a regular file, bounded in size.

Configuration names files (``include``, ``tls_cert``, banners ...) that an
operator, a package or a typo may point at anything: ``/dev/zero`` reads
forever, a FIFO blocks its reader until someone writes, a log file may be
gigabytes.  ``read_regular_file`` opens without blocking, refuses anything but
a regular file, reads at most ``limit`` bytes and says why it refused as an
``OSError`` whose ``strerror`` reads well after ``cannot read PATH:``.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["MAX_CONFIG_FILE", "read_regular_file", "size_text"]

#: The largest configuration file (or PEM file) superd reads.
MAX_CONFIG_FILE = 4 * 1024 * 1024

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def size_text(size: int) -> str:
    """``4 MiB``, ``512 KiB`` or ``12 bytes``: a limit as a person reads it."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def kind_of(mode: int) -> str:
    """What a non-regular file is, for messages (``a FIFO`` ...)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _open(path: str) -> int:
    if "\x00" in path:
        raise OSError(errno.EINVAL, "the path contains a NUL byte", path)
    try:
        # O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except (UnicodeError, ValueError):
        raise OSError(errno.EINVAL, "the path is not valid text", path) from None


def read_regular_file(path: str, limit: int = MAX_CONFIG_FILE) -> bytes:
    """
    The contents of the regular file at ``path`` (symbolic links followed).

    Raises ``OSError`` if it cannot be opened, is not a regular file (FIFO,
    device, directory ...), or holds more than ``limit`` bytes; never blocks
    on a FIFO and never reads more than ``limit + 1`` bytes.
    """
    fd = _open(path)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file ({kind_of(mode)})", path)
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise OSError(errno.EFBIG, f"larger than {size_text(limit)}", path)
    return b"".join(chunks)
