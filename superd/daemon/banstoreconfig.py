"""
The shared ban store's settings, as the daemon starts: its URL, its
password and the CA its TLS certificate must chain to.

The password never travels on a command line, where every local user reads
it (``ps``, ``/proc/PID/cmdline``), as does every server superd starts.  It
comes, first found wins, from:

1. ``--ban-store-password-file FILE``;
2. the environment variable ``SUPERD_BAN_STORE_PASSWORD`` (removed from
   superd's environment once read, and never passed to a server);
3. ``ban_store_password_file = FILE`` in the configuration's defaults;
4. the URL of ``ban_store`` in the configuration file (whose permissions
   are the administrator's; a URL given with ``--ban-store`` may not carry
   one at all: the command line refuses it).

Files are read once, at start: a regular file of at most ``MAX_SECRET``
bytes, one trailing newline ignored.  A password file that others may read
is accepted with a warning.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, MutableMapping
from typing import Optional

import attrs

from superd.config.storeurl import PASSWORD_VARIABLE, RedisTarget, parse_redis_url

__all__ = ["MAX_SECRET", "BanStoreSettings", "read_small_file", "settings_for"]

#: The largest password file read.
MAX_SECRET = 4096
#: The largest CA file read.
MAX_CA = 1024 * 1024


@attrs.frozen
class BanStoreSettings:
    """Where the shared bans live and how to reach them safely."""

    target: RedisTarget
    #: PEM of the CA(s) for ``rediss://`` with ``?ca=``; None: the system's.
    ca_pem: Optional[bytes] = attrs.field(default=None, repr=False)


def read_small_file(path: str, limit: int) -> tuple[bytes, int]:
    """The bytes and mode of the regular file ``path``; raises ValueError
    (a FIFO, a device or a file over ``limit`` bytes is refused, unread)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file")
        data = os.read(fd, limit + 1)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return data, info.st_mode


def _password_from_file(path: str, warn: Callable[[str], None]) -> str:
    data, mode = read_small_file(path, MAX_SECRET)
    if data.endswith(b"\n"):
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    try:
        password = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"the password in {path} is not UTF-8") from None
    if not password:
        raise ValueError(f"{path} is empty")
    if mode & 0o077:
        warn(f"the ban store password file {path} can be read by other users"
             " (chmod 600 it)")
    return password


def _password(option_file: Optional[str], config_file: Optional[str],
              environ: MutableMapping[str, str],
              warn: Callable[[str], None]) -> Optional[str]:
    from_environment = environ.pop(PASSWORD_VARIABLE, None)
    if option_file:
        return _password_from_file(option_file, warn)
    if from_environment:
        return from_environment
    if config_file:
        return _password_from_file(config_file, warn)
    return None


def _ca(target: RedisTarget) -> Optional[bytes]:
    if target.ca_path is None:
        return None
    # Imported here: TLS is only needed for rediss:// (and ``twistd --help``
    # stays cheap).
    from superd.config.tlscontext import TLSSetupError, load_certificates

    pem, _ = read_small_file(target.ca_path, MAX_CA)
    try:
        load_certificates(pem, "ca")
    except TLSSetupError as e:
        raise ValueError(f"ca={target.ca_path}: {e}") from None
    return pem


def settings_for(url: Optional[str], *, option_password_file: Optional[str] = None,
                 config_password_file: Optional[str] = None,
                 environ: MutableMapping[str, str],
                 warn: Callable[[str], None]) -> Optional[BanStoreSettings]:
    """The ban store of ``url`` (None: no shared bans) with its password and
    CA; raises ValueError saying what is wrong (never with the password).
    The password variable is taken out of ``environ`` whatever happens."""
    password = _password(option_password_file, config_password_file, environ, warn)
    if not url:
        return None
    target = parse_redis_url(url)
    if password is not None:
        target = target.with_password(password)
    if target.username is not None and target.password is None:
        raise ValueError(f"the ban store {target.describe()} names a user but no password"
                         f" is given (--ban-store-password-file, {PASSWORD_VARIABLE}"
                         " or ban_store_password_file)")
    return BanStoreSettings(target, _ca(target))
