"""
The table of every attribute superd knows: value count, operators, scope, parser.

Pure data plus small value parsers.  The table mirrors xinetd's
``parse.c:service_attributes`` and ``default_attributes`` (which attributes
exist, how many values each takes, which may appear in ``defaults``);
``draft.py`` applies it line by line.  A parser returns the parsed
value (a tuple of items for cumulative attributes) or raises ``ValueError``.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import attrs

from superd.config import values as v
from superd.config.addrspec import parse_address
from superd.config.model import CPS, AddressSpec, SocketType
from superd.config.servername import configured_name
from superd.config.text import closest
from superd.config.tlsprofile import PROFILES, VERSIONS

__all__ = [
    "ATTRIBUTES",
    "MAX_UNIX_PATH",
    "UNIX_PREFIX",
    "COPIED_FROM_DEFAULTS",
    "FAILURE_FLAGS",
    "FILLED_FROM_DEFAULTS",
    "FLAGS",
    "FOREIGN_ATTRIBUTE",
    "FOREIGN_ATTRIBUTES",
    "STRICT_TEXT",
    "SUCCESS_FLAGS",
    "TYPES",
    "UNKNOWN_ATTRIBUTE",
    "AttributeSpec",
    "lookup",
    "unknown_attribute",
]

#: The warning for an attribute superd does not know (and no known one is
#: near its name).
UNKNOWN_ATTRIBUTE = "unknown attribute, ignored"
#: Attributes of other xinetd builds: ``mdns`` (Howl, removed from xinetd
#: in 2017 but still in its manual).
FOREIGN_ATTRIBUTES = frozenset({"mdns"})
#: The warning for one of ``FOREIGN_ATTRIBUTES``.
FOREIGN_ATTRIBUTE = "an attribute of other xinetd builds that superd does not support; ignored"
#: How those warnings read when ``--strict`` makes them errors.
STRICT_TEXT = {
    UNKNOWN_ATTRIBUTE: "unknown attribute (refused with --strict)",
    FOREIGN_ATTRIBUTE: "an attribute of other xinetd builds that superd does not support"
                       " (refused with --strict)",
}

TYPES = ("INTERNAL", "UNLISTED", "TCPMUX", "TCPMUXPLUS")
FLAGS = (
    "INTERCEPT", "NORETRY", "IDONLY", "NAMEINARGS", "NODELAY", "KEEPALIVE",
    "NOLIBWRAP", "SENSOR", "IPv4", "IPv6", "LABELED", "REUSE",
)  # fmt: skip
SUCCESS_FLAGS = ("PID", "HOST", "USERID", "EXIT", "DURATION", "TRAFFIC")
FAILURE_FLAGS = ("HOST", "USERID", "ATTEMPT")

#: Copied from the defaults *as they stand* when the service block starts;
#: the service's ``+=``/``-=`` then modify that copy, as in xinetd.
COPIED_FROM_DEFAULTS = frozenset({
    "log_on_success", "log_on_failure", "only_from", "no_access", "passenv",
    "banner", "banner_success", "banner_fail",
})  # fmt: skip
#: Filled from the final defaults after every file is read, when the service
#: did not set them.
FILLED_FROM_DEFAULTS = frozenset({
    "instances", "per_source", "cps", "groups", "umask", "max_load", "bind",
    "v6only", "deny_time", "log_type", "log_on_success", "log_on_failure",
    "v6_source_prefix",
})  # fmt: skip

_HOST_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


@attrs.frozen
class AttributeSpec:
    """How one attribute is written and read."""

    name: str
    parse: Callable[[Tuple[str, ...]], Any]
    #: Exact number of values, or None for "any number" (at least ``minimum``).
    count: Optional[int] = 1
    minimum: int = 0
    #: ``+=``/``-=`` allowed, and the attribute may appear several times.
    cumulative: bool = False
    #: ``-=`` allowed (every cumulative attribute except ``env``).
    removable: bool = True
    in_defaults: bool = False
    in_service: bool = True
    #: Set when the attribute exists in xinetd but superd refuses it.
    unsupported: Optional[str] = None
    #: Storage key (``interface`` is stored as ``bind``).
    key: str = attrs.field(default="")

    def __attrs_post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.name)

    @property
    def values_text(self) -> str:
        """How many values, in words, for messages."""
        if self.count is None:
            return f"at least {self.minimum} value" + ("s" if self.minimum != 1 else "")
        return f"{self.count} value" + ("s" if self.count != 1 else "")


def _one(parse: Callable[[str], Any]) -> Callable[[Tuple[str, ...]], Any]:
    return lambda words: parse(words[0])


def _each(parse: Callable[[str], Any]) -> Callable[[Tuple[str, ...]], Tuple[Any, ...]]:
    return lambda words: v.each(parse, words)


def _word(word: str) -> str:
    return word


def _path(word: str) -> str:
    if "\x00" in word:
        raise ValueError("the path contains a NUL byte")
    if not word.startswith("/"):
        raise ValueError(f"expected an absolute path, got {word!r}")
    return word


def _socket_type(word: str) -> SocketType:
    if word in ("raw", "seqpacket"):
        raise ValueError(f"socket_type {word} is not supported (use stream or dgram)")
    if word not in ("stream", "dgram"):
        raise ValueError(f"expected stream or dgram, got {word!r}")
    return SocketType(word)


def _protocol(word: str) -> str:
    if word not in ("tcp", "udp"):
        raise ValueError(f"expected tcp or udp, got {word!r}")
    return word


def _types(words: Tuple[str, ...]) -> frozenset[str]:
    for word in words:
        if word == "RPC":
            raise ValueError("RPC services are not supported")
        if word == "SPECIAL":
            raise ValueError("SPECIAL is internal to xinetd and cannot be configured")
    return v.words_in(words, TYPES, "type")


def _flags(words: Tuple[str, ...]) -> frozenset[str]:
    if "DISABLE" in words:
        raise ValueError("there is no DISABLE flag; write 'disable = yes'")
    return v.words_in(words, FLAGS, "flag")


def _account(word: str) -> str:
    if not re.match(r"^[A-Za-z0-9_.][A-Za-z0-9_.$-]*$", word):
        raise ValueError(f"expected a user or group name or number, got {word!r}")
    return word


def _cps(words: Tuple[str, ...]) -> CPS:
    return CPS(v.integer(words[0], 0), v.integer(words[1], 0))


def _listen_address(word: str) -> str:
    """An IP literal (normalised) or a host name to resolve at load."""
    try:
        return str(ipaddress.ip_address(word))
    except ValueError:
        pass
    labels = word.rstrip(".").split(".")
    if ":" in word or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"expected an IP address or host name, got {word!r}")
    if labels[-1].isdigit():
        raise ValueError(f"{word!r} is not a valid IP address")
    return word


#: Bytes of ``sun_path`` a path may use (108 with the terminating NUL).
MAX_UNIX_PATH = 107
#: How ``bind`` names a UNIX-domain socket.
UNIX_PREFIX = "unix:"


def _unix_path(word: str) -> str:
    """``unix:PATH`` with PATH absolute, normalised and short enough."""
    path = word[len(UNIX_PREFIX):]
    if "\x00" in path:
        raise ValueError("the UNIX socket path contains a NUL byte")
    if path.startswith("@"):
        raise ValueError(f"{word!r}: abstract UNIX sockets are not supported; "
                         "write unix:/absolute/path")
    if not path.startswith("/"):
        raise ValueError(f"expected unix:/absolute/path, got {word!r}")
    if path.endswith("/"):
        raise ValueError(f"{word!r} names a directory, not a socket file")
    path = posixpath.normpath(path)
    size = len(os.fsencode(path))
    if size > MAX_UNIX_PATH:
        raise ValueError(f"the UNIX socket path is {size} bytes long; at most "
                         f"{MAX_UNIX_PATH} fit in sun_path")
    return UNIX_PREFIX + path


def _bind_address(word: str) -> str:
    """What ``bind`` may name: an IP address, a host name or ``unix:PATH``."""
    if word.startswith(UNIX_PREFIX):
        return _unix_path(word)
    return _listen_address(word)


def _owner(word: str) -> Tuple[Optional[str], Optional[str]]:
    """``user``, ``user:group`` or ``:group`` (names or numbers)."""
    user, colon, group = word.partition(":")
    if not user and not group:
        raise ValueError(f"expected user, user:group or :group, got {word!r}")
    if colon and not group:
        raise ValueError(f"expected user:group with a group after the colon, got {word!r}")
    return (_account(user) if user else None), (_account(group) if group else None)


def _addresses(words: Tuple[str, ...]) -> Tuple[AddressSpec, ...]:
    return tuple(spec for specs in v.each(parse_address, words) for spec in specs)


def _redirect(words: Tuple[str, ...]) -> Tuple[str, str]:
    host = _listen_address(words[0])
    if not words[1].isascii() or not (words[1].isdigit() or _HOST_LABEL.match(words[1])):
        raise ValueError(f"expected a port number or tcp service name, got {words[1]!r}")
    if words[1].isdigit():
        v.integer(words[1], 1, 65535)
    return host, words[1]


def _log_flags(words: Tuple[str, ...], allowed: Tuple[str, ...]) -> Tuple[str, ...]:
    return tuple(sorted(v.words_in(words, allowed, "flag")))


def _redis_url(word: str) -> str:
    """A ``redis[s]://`` URL, kept as written (``superd.fleet`` connects to it)."""
    # Pure parsing, no I/O: importing it keeps the config package free of the
    # Redis client, and the file is checked exactly as ``--ban-store`` is.
    from superd.config.storeurl import parse_redis_url

    parse_redis_url(word)
    return word


def _env_name(word: str) -> str:
    if not word or "=" in word or "\x00" in word:
        raise ValueError(f"expected a variable name, got {word!r}")
    return word


def _spec(name: str, parse: Callable[[Tuple[str, ...]], Any], **kw: Any) -> AttributeSpec:
    return AttributeSpec(name, parse, **kw)


def _list(name: str, parse: Callable[[Tuple[str, ...]], Any], minimum: int = 0,
          **kw: Any) -> AttributeSpec:  # fmt: skip
    return AttributeSpec(name, parse, count=None, minimum=minimum, **kw)


def _cumulative(name: str, parse: Callable[[Tuple[str, ...]], Any], **kw: Any) -> AttributeSpec:
    return AttributeSpec(name, parse, count=None, cumulative=True, **kw)


_RPC = "RPC services are not supported"
_RLIMITS = {
    "rlimit_as": _one(v.size),
    "rlimit_data": _one(v.size),
    "rlimit_rss": _one(v.size),
    "rlimit_stack": _one(v.size),
    "rlimit_files": _one(v.size),
    "rlimit_cpu": _one(lambda w: v.size(w, suffixes=False)),
}

_TABLE = (
    _spec("id", _one(_word)),
    _list("type", _types),
    _list("flags", _flags),
    _spec("socket_type", _one(_socket_type)),
    _spec("protocol", _one(_protocol)),
    _spec("wait", _one(v.yes_no)),
    _spec("user", _one(_account)),
    _spec("group", _one(_account)),
    _spec("groups", _one(v.yes_no), in_defaults=True),
    _spec("server", _one(_path)),
    _list("server_args", tuple, minimum=1),
    _spec("port", _one(lambda w: v.integer(w, 0, 65535))),
    _list("bind", _each(_bind_address), minimum=1, in_defaults=True),
    _list("interface", _each(_bind_address), minimum=1, in_defaults=True, key="bind"),
    _spec("v6only", _one(v.yes_no), in_defaults=True),
    _spec("instances", _one(v.limit), in_defaults=True),
    _spec("per_source", _one(v.limit), in_defaults=True),
    _spec("cps", _cps, count=2, in_defaults=True),
    _spec("max_load", _one(v.positive_float), in_defaults=True),
    _list("access_times", _each(v.access_time)),
    _cumulative("only_from", _addresses, in_defaults=True),
    _cumulative("no_access", _addresses, in_defaults=True),
    _list("log_type", v.log_type, minimum=2, in_defaults=True),
    _cumulative("log_on_success", lambda w: _log_flags(w, SUCCESS_FLAGS), in_defaults=True),
    _cumulative("log_on_failure", lambda w: _log_flags(w, FAILURE_FLAGS), in_defaults=True),
    _cumulative("env", _each(v.env_pair), removable=False),
    _cumulative("passenv", _each(_env_name), in_defaults=True),
    _spec("nice", _one(lambda w: v.integer(w, -20, 19))),
    _spec("umask", _one(v.octal_mode), in_defaults=True),
    *(_spec(name, parse) for name, parse in _RLIMITS.items()),
    _spec("redirect", _redirect, count=2),
    _spec("banner", _one(_path), in_defaults=True),
    _spec("banner_success", _one(_path), in_defaults=True),
    _spec("banner_fail", _one(_path), in_defaults=True),
    _spec("disable", _one(v.yes_no)),
    _spec("deny_time", _one(v.deny_time), in_defaults=True),
    _spec("libwrap", _one(_word)),
    _cumulative("disabled", _each(_word), in_defaults=True, in_service=False),
    _cumulative("enabled", _each(_word), in_defaults=True, in_service=False),
    # superd's own, daemon-wide: the shared ban store (superd.fleet).
    _spec("ban_store", _one(_redis_url), in_defaults=True, in_service=False),
    # superd's own, daemon-wide: "no" keeps xinetd's rule that a ban refuses
    # new connections only, leaving the source's open sessions alone.
    _spec("ban_ends_sessions", _one(v.yes_no), in_defaults=True, in_service=False),
    _spec("ban_store_password_file", _one(_path), in_defaults=True, in_service=False),
    # superd's own, daemon-wide: "yes" refuses a configuration with any error
    # as a whole (at start and at reload), as --strict does, instead of
    # running every service nothing is wrong with.
    _spec("all_or_nothing", _one(v.yes_no), in_defaults=True, in_service=False),
    # superd's own: UNIX-domain sockets (bind = unix:PATH) and their peers.
    _spec("socket_mode", _one(v.octal_mode)),
    _spec("socket_owner", _one(_owner)),
    _list("only_uid", _each(_account), minimum=1),
    _list("only_gid", _each(_account), minimum=1),
    _list("rpc_version", tuple, unsupported=_RPC),
    _list("rpc_number", tuple, unsupported=_RPC),
)

ATTRIBUTES: Dict[str, AttributeSpec] = {spec.name: spec for spec in _TABLE}


def lookup(name: str) -> Optional[AttributeSpec]:
    """The spec of attribute ``name``, or None if superd does not know it."""
    return ATTRIBUTES.get(name)


def unknown_attribute(name: str, declared: Iterable[str] = ()) -> Tuple[str, Optional[str]]:
    """
    What to say about attribute ``name`` that neither superd nor (for a
    user's protocol) its ``declared`` attributes know, and the name it was
    meant to be, if any.  A small slip from a known name (``bnid``,
    ``only_form``, ``wiat``) is an error, since the setting meant is
    missing: ``(message, meant)``; anything else is a warning:
    ``(message, None)``.
    """
    if name in FOREIGN_ATTRIBUTES:
        return FOREIGN_ATTRIBUTE, None
    meant = closest(name, (*ATTRIBUTES, *declared))
    if meant is None:
        return UNKNOWN_ATTRIBUTE, None
    spec = ATTRIBUTES.get(meant)
    return f"unknown attribute; did you mean {meant!r}?", spec.key if spec else meant


# -- superd's own: TLS termination, redirect tuning, users' own protocols -----
#
# Syntax is checked here, like every attribute; what needs the outside world
# (reading the PEM files, importing a factory, a user protocol's own
# attributes) is checked at load by ``superd.config.extensions.check_extensions``.

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(word: str) -> str:
        if word not in allowed:
            raise ValueError(f"expected {' or '.join(allowed)}, got {word!r}")
        return word

    return parse


def _factory_path(word: str) -> str:
    if not _FACTORY.match(word):
        raise ValueError(f"expected package.module:callable, got {word!r}")
    return word


#: Attributes whose parsed values ``superd.config.extensions`` turns into
#: ``ServiceConfig.extensions``.
EXTENSION_ATTRIBUTES: Tuple[str, ...] = (
    "tls_cert", "tls_key", "tls_profile", "tls_min_version", "tls_ciphers",
    "tls_client_ca", "tls_verify_client", "tls_client_names", "tls_handshake_timeout",
    "tls_sni", "redirect_tls", "redirect_tls_name", "redirect_tls_ca", "redirect_tls_profile",
    "redirect_timeout", "factory", "plugin",
)  # fmt: skip

ATTRIBUTES.update({spec.name: spec for spec in (
    _spec("tls_cert", _one(_path)),
    _spec("tls_key", _one(_path)),
    _spec("tls_profile", _one(_choice(*PROFILES))),
    _spec("tls_min_version", _one(_choice(*VERSIONS))),
    _spec("tls_ciphers", _one(_word)),
    _spec("tls_client_ca", _one(_path)),
    _spec("tls_verify_client", _one(_choice("none", "optional", "require"))),
    _list("tls_client_names", tuple, minimum=1),
    _spec("tls_handshake_timeout", _one(v.positive_float)),
    _list("tls_sni", _each(configured_name), minimum=1),
    _spec("redirect_tls", _one(v.yes_no)),
    _spec("redirect_tls_name", _one(_word)),
    _spec("redirect_tls_ca", _one(_path)),
    _spec("redirect_tls_profile", _one(_choice(*PROFILES))),
    _spec("redirect_timeout", _one(v.positive_float)),
    _spec("factory", _one(_factory_path)),
    _spec("plugin", _one(_word)),
)})  # fmt: skip


# -- issue 17: servers confined without systemd -------------------------------
#
# Syntax here; which combinations can work is checked at load by
# ``superd.config.sandbox`` (pure) and, for what depends on the host (root,
# cgroup controllers, helper programs), when the service is built.

SANDBOX_ATTRIBUTES: Tuple[str, ...] = (
    "no_new_privileges", "private_tmp", "read_only_paths", "memory_max", "tasks_max",
)  # fmt: skip


def _positive_size(word: str) -> int:
    value = v.size(word, unlimited=False)
    if value <= 0:
        raise ValueError(f"expected a size > 0, got {word!r}")
    return value


ATTRIBUTES.update({spec.name: spec for spec in (
    _spec("no_new_privileges", _one(v.yes_no)),
    _spec("private_tmp", _one(v.yes_no)),
    _list("read_only_paths", _each(_path), minimum=1),
    _spec("memory_max", _one(_positive_size)),
    _spec("tasks_max", _one(lambda w: v.integer(w, 1))),
)})  # fmt: skip


# -- issue 17: PROXY protocol both ways, IPv6 sources by prefix ---------------
#
# Which combinations make sense is checked at load by ``superd.config.proxy``.

ATTRIBUTES.update({spec.name: spec for spec in (
    _spec("proxy_protocol", _one(_choice("v1", "v2", "any"))),
    _list("proxy_from", _addresses, minimum=1),
    _spec("proxy_timeout", _one(v.positive_float)),
    _spec("redirect_proxy", _one(_choice("v1", "v2"))),
    _spec("v6_source_prefix", _one(lambda w: v.integer(w, 1, 128)), in_defaults=True),
)})  # fmt: skip
