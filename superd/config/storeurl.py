"""
``--ban-store redis://[:password@]host[:port][/db]``: where the shared bans live.

Pure parsing.  The key prefix and the pub/sub channel carry the database
number, because Redis pub/sub channels are shared by all databases.
"""

from __future__ import annotations

import urllib.parse

import attrs

__all__ = ["RedisTarget", "parse_redis_url"]

DEFAULT_PORT = 6379


@attrs.frozen
class RedisTarget:
    """A Redis server, database and the names superd uses in it."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    password: str | None = attrs.field(default=None, repr=False)

    @property
    def key_prefix(self) -> str:
        """Every ban is the key ``<prefix><host>``."""
        return "superd:ban:"

    @property
    def channel(self) -> str:
        """Where new bans are published."""
        return f"superd:bans:{self.db}"

    def describe(self) -> str:
        """``redis://host:port/db`` without the password, for logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"


def _without_password(text: str) -> str:
    """``text`` with any ``user:password@`` part replaced, for error messages."""
    scheme, sep, rest = text.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return text
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def parse_redis_url(text: str) -> RedisTarget:
    """Parse a ``redis://`` URL; raises ValueError saying what is wrong.

    Messages never repeat the password: they reach config errors and logs.
    """
    parts = urllib.parse.urlsplit(text)
    shown = _without_password(text)
    if parts.scheme != "redis":
        raise ValueError(f"not a redis:// URL: {shown!r}")
    if parts.query or parts.fragment:
        raise ValueError("redis URL options are not supported")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {shown!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as e:
        raise ValueError(f"bad port in {shown!r}") from e
    path = parts.path.strip("/") or "0"
    if not path.isdigit() or int(path) > 1000:
        raise ValueError(f"bad database number {path!r}")
    password = urllib.parse.unquote(parts.password) if parts.password else None
    return RedisTarget(host, port, int(path), password)
