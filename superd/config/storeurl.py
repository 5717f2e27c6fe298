"""
``--ban-store redis[s]://[user@]host[:port][/db][?ca=PATH]``: where the
shared bans live.

Pure parsing.  The key prefix and the pub/sub channel carry the database
number, because Redis pub/sub channels are shared by all databases.
``rediss://`` is Redis over TLS: the server's certificate must name the host
of the URL and chain to the CA(s) in ``ca=PATH`` (default: the system's
trust store).  ``user@`` is a Redis ACL user (``AUTH user password``).

The password is best kept out of the URL (``--ban-store-password-file``,
``ban_store_password_file``, ``SUPERD_BAN_STORE_PASSWORD``): a URL on a
command line is visible to every local user.  ``url_has_password`` says
whether one is there, so the command line can refuse it.
"""

from __future__ import annotations

import urllib.parse

import attrs

__all__ = ["PASSWORD_VARIABLE", "RedisTarget", "parse_redis_url", "url_has_password"]

DEFAULT_PORT = 6379
#: The environment variable that may hold the ban store's password; never
#: passed on to a server superd starts.
PASSWORD_VARIABLE = "SUPERD_BAN_STORE_PASSWORD"
_SCHEMES = ("redis", "rediss")


@attrs.frozen
class RedisTarget:
    """A Redis server, database and the names superd uses in it."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    password: str | None = attrs.field(default=None, repr=False)
    #: The ACL user (None: Redis's ``default`` user).
    username: str | None = None
    #: ``rediss://``: TLS, with the server's certificate verified.
    tls: bool = False
    #: ``?ca=PATH``: the CA(s) the server's certificate must chain to.
    ca_path: str | None = None

    @property
    def key_prefix(self) -> str:
        """Every ban is the key ``<prefix><host>``."""
        return "superd:ban:"

    @property
    def channel(self) -> str:
        """Where new bans are published."""
        return f"superd:bans:{self.db}"

    def describe(self) -> str:
        """``redis://[user@]host:port/db`` without the password, for logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = "" if self.username is None else f"{urllib.parse.quote(self.username)}@"
        return f"redis{'s' if self.tls else ''}://{user}{host}:{self.port}/{self.db}"

    def with_password(self, password: str) -> RedisTarget:
        """The same target, authenticating with ``password``."""
        return attrs.evolve(self, password=password)


def _without_password(text: str) -> str:
    """``text`` with any ``user:password@`` part replaced, for error messages."""
    scheme, sep, rest = text.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return text
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def url_has_password(text: str) -> bool:
    """True if the URL ``text`` carries a password (``user:password@``)."""
    try:
        return urllib.parse.urlsplit(text).password is not None
    except ValueError:
        return False


def _query(parts: urllib.parse.SplitResult, tls: bool) -> str | None:
    if parts.fragment:
        raise ValueError("a redis URL has no #fragment")
    try:
        options = urllib.parse.parse_qs(parts.query, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("redis URL options must be name=value pairs") from None
    unknown = sorted(set(options) - {"ca"})
    if unknown:
        raise ValueError(f"unknown redis URL option {unknown[0]!r} (known: ca)")
    values = options.get("ca", [])
    if len(values) > 1:
        raise ValueError("ca= given twice")
    if values and not tls:
        raise ValueError("ca= is for rediss:// (Redis over TLS)")
    if values and not values[0].startswith("/"):
        raise ValueError(f"ca= needs an absolute path, not {values[0]!r}")
    return values[0] if values else None


def parse_redis_url(text: str) -> RedisTarget:
    """Parse a ``redis://`` or ``rediss://`` URL; raises ValueError saying what is wrong.

    Messages never repeat the password: they reach config errors and logs.
    """
    parts = urllib.parse.urlsplit(text)
    shown = _without_password(text)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"not a redis:// or rediss:// URL: {shown!r}")
    tls = parts.scheme == "rediss"
    ca_path = _query(parts, tls)
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
    username = urllib.parse.unquote(parts.username) if parts.username else None
    if username is not None and not (username.isprintable() and " " not in username):
        raise ValueError("the redis user name must be printable, without spaces")
    return RedisTarget(host, port, int(path), password, username, tls, ca_path)
