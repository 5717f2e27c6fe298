"""
A pure parser for hosts_access(5) files (``/etc/hosts.allow``, ``hosts.deny``).

Supported: daemon lists and client lists separated by blanks or commas,
``ALL``, ``EXCEPT`` (right-nested, in both lists), ``LOCAL``, ``KNOWN``,
``UNKNOWN``, ``PARANOID``, ``.domain`` suffixes, ``n.n.n.`` address
prefixes, ``net/mask`` and ``net/len``, ``[ipv6]`` and ``[ipv6]/len``,
``*``/``?`` wildcards, exact addresses and host names; backslash line
continuation and ``#`` comment lines; the options ``ALLOW`` and ``DENY``.

Not supported, each handled as the safe choice: ``user@host`` client
patterns, ``daemon@host`` daemon patterns, ``@netgroup`` and ``/file``
patterns are *unknown* (a deny rule holding them denies, an allow rule does
not allow).  The ``twist`` option (serve a shell command instead) makes its
rule deny; every other option (``spawn``, ``severity``, ``banners`` ...) is
ignored with a warning.

A line that cannot be parsed becomes a ``BrokenRule``: the matcher denies
every daemon its daemon list names (all daemons if that list cannot be read
either).  ``parse_hosts`` never raises; ``check_hosts`` turns broken lines
into a ``ConfigError``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

import attrs

from superd.access.prefixes import IPNetwork, unmapped
from superd.config.errors import ConfigError, Problem
from superd.core.session import canonical_host

__all__ = [
    "BrokenRule",
    "HostsFile",
    "Pattern",
    "PatternList",
    "Rule",
    "check_hosts",
    "parse_hosts",
]

#: Pattern kinds.
ALL, LOCAL, KNOWN, UNKNOWN, PARANOID = "all", "local", "known", "unknown", "paranoid"
ADDRESS, NETWORK, PREFIX, DOMAIN, NAME, WILDCARD = (
    "address", "network", "prefix", "domain", "name", "wildcard")
UNSUPPORTED = "unsupported"
_KEYWORDS = {"ALL": ALL, "LOCAL": LOCAL, "KNOWN": KNOWN, "UNKNOWN": UNKNOWN,
             "PARANOID": PARANOID}
_IGNORED_OPTIONS = frozenset({
    "spawn", "severity", "banners", "setenv", "umask", "user", "nice",
    "keepalive", "linger", "rfc931"})
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$")
_PREFIX = re.compile(r"^(\d{1,3}\.){1,3}$")


class ParseError(ValueError):
    """One line cannot be understood (message for the operator)."""


@attrs.frozen
class Pattern:
    """One daemon or client pattern; ``value`` depends on ``kind``."""

    text: str
    kind: str
    value: object = None


@attrs.frozen
class PatternList:
    """``items EXCEPT except_``: matches an item unless ``except_`` matches."""

    items: tuple[Pattern, ...]
    except_: PatternList | None = None


@attrs.frozen
class Rule:
    """``daemons : clients [: options]`` and whether a match allows."""

    line: int
    daemons: PatternList
    clients: PatternList
    allow: bool


@attrs.frozen
class BrokenRule:
    """A line that could not be parsed; denies the daemons it names."""

    line: int
    message: str
    #: None when the daemon list itself could not be read (all daemons).
    daemons: PatternList | None = None


@attrs.frozen
class HostsFile:
    """One parsed file: rules in order, broken lines, and warnings."""

    name: str
    rules: tuple[Rule, ...] = ()
    broken: tuple[BrokenRule, ...] = ()
    warnings: tuple[tuple[int, str], ...] = ()


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Join backslash-continued lines; skip blank and ``#`` lines."""
    pending: list[str] = []
    start = 0
    # Lines end at "\n" only, as tcpd's fgets sees them.
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending.append(raw[:-1])
            continue
        pending.append(raw)
        line, pending = " ".join(pending), []
        if line.strip() and not line.lstrip().startswith("#"):
            yield start, line
    if pending:
        line = " ".join(pending)
        if line.strip() and not line.lstrip().startswith("#"):
            yield start, line


def _fields(line: str) -> list[str]:
    """Split on ``:`` outside ``[...]``; ``\\:`` is a literal colon."""
    fields, current, depth, i = [], [], 0, 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and line[i + 1:i + 2] == ":":
            current.append(":")
            i += 2
            continue
        depth += ch == "["
        depth -= ch == "]" and depth > 0
        if ch == ":" and depth == 0:
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    fields.append("".join(current))
    return fields


def _tokens(field: str) -> list[str]:
    return [t for t in re.split(r"[\s,]+", field) if t]


def _pattern_list(tokens: list[str],
                  parse_one: Callable[[str], Pattern]) -> PatternList:
    """Build the right-nested ``EXCEPT`` structure of a token list."""
    if not tokens:
        raise ParseError("empty list")
    upper = [t.upper() for t in tokens]
    if "EXCEPT" not in upper:
        return PatternList(tuple(parse_one(t) for t in tokens))
    cut = upper.index("EXCEPT")
    if cut == 0 or cut == len(tokens) - 1:
        raise ParseError("EXCEPT needs a list on each side")
    head = PatternList(tuple(parse_one(t) for t in tokens[:cut]))
    return attrs.evolve(head, except_=_pattern_list(tokens[cut + 1:], parse_one))


def _daemon(token: str) -> Pattern:
    if token.upper() == "ALL":
        return Pattern(token, ALL)
    if "@" in token:
        return Pattern(token, UNSUPPORTED, "daemon@host patterns")
    if any(c in token for c in "[]/"):
        raise ParseError(f"bad daemon name {token!r}")
    return Pattern(token, NAME, token.lower())


def _network(token: str) -> IPNetwork:
    """``a.b.c.d/m.m.m.m``, ``a.b.c.d/len``, ``[v6]`` or ``[v6]/len``."""
    text, bracketed = token, token.startswith("[")
    if bracketed:
        close = token.find("]")
        rest = token[close + 1:] if close >= 0 else ""
        if close < 0 or (rest and not rest.startswith("/")):
            raise ParseError(f"bad IPv6 pattern {token!r}")
        text = token[1:close] + rest
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise ParseError(f"bad network {token!r}: {e}") from None
    if bracketed and network.version != 6:
        raise ParseError(f"not an IPv6 address: {token!r}")
    return network


def _client(token: str) -> Pattern:
    keyword = _KEYWORDS.get(token.upper())
    if keyword is not None:
        return Pattern(token, keyword)
    if token.startswith("@"):
        return Pattern(token, UNSUPPORTED, "NIS netgroups")
    if "@" in token:
        return Pattern(token, UNSUPPORTED, "user@host patterns")
    if token.startswith("/"):
        return Pattern(token, UNSUPPORTED, "pattern files")
    if "*" in token or "?" in token:
        return Pattern(token, WILDCARD, token.lower())
    if token.startswith("[") or "/" in token:
        network = _network(token)
        if network.prefixlen == network.max_prefixlen:
            return Pattern(token, ADDRESS, canonical_host(str(network[0])))
        return Pattern(token, NETWORK, unmapped(network))
    return _plain_client(token)


def _plain_client(token: str) -> Pattern:
    if _PREFIX.match(token):
        return Pattern(token, PREFIX, token)
    if token.startswith("."):
        if not _HOSTNAME.match(token[1:]):
            raise ParseError(f"bad domain {token!r}")
        return Pattern(token, DOMAIN, token.lower().strip("."))
    try:
        return Pattern(token, ADDRESS,
                       canonical_host(str(ipaddress.ip_address(token))))
    except ValueError:
        pass
    if not _HOSTNAME.match(token):
        raise ParseError(f"bad host pattern {token!r}")
    return Pattern(token, NAME, token.lower().rstrip("."))


def _options(fields: list[str], default_allow: bool,
             warnings: list[str]) -> bool:
    """The rule's effect after its options (``ALLOW``/``DENY``/``twist``)."""
    allow = default_allow
    for field in fields:
        words = field.strip().split(None, 1)
        if not words:
            continue
        keyword = words[0].split("=", 1)[0].strip().lower()
        if keyword in ("allow", "deny"):
            allow = keyword == "allow"
        elif keyword == "twist":
            allow = False
            warnings.append("option 'twist' is not run; the rule denies")
        elif keyword in _IGNORED_OPTIONS:
            warnings.append(f"option {keyword!r} is ignored")
        else:
            warnings.append(f"unknown option {keyword!r} is ignored")
    return allow


def _rule(number: int, line: str, default_allow: bool,
          warnings: list[str]) -> Rule | BrokenRule:
    fields = _fields(line)
    daemons: PatternList | None = None
    try:
        daemons = _pattern_list(_tokens(fields[0]), _daemon)
        if len(fields) < 2:
            raise ParseError("missing ':' between daemon list and client list")
        clients = _pattern_list(_tokens(fields[1]), _client)
    except ParseError as e:
        return BrokenRule(number, str(e), daemons)
    allow = _options(fields[2:], default_allow, warnings)
    return Rule(number, daemons, clients, allow)


def parse_hosts(name: str, text: str, *, default_allow: bool) -> HostsFile:
    """
    Parse one file; ``default_allow`` is the meaning of a match without an
    ``ALLOW``/``DENY`` option (True for hosts.allow, False for hosts.deny).
    """
    rules: list[Rule] = []
    broken: list[BrokenRule] = []
    warnings: list[tuple[int, str]] = []
    for number, line in _logical_lines(text):
        found: list[str] = []
        rule = _rule(number, line, default_allow, found)
        warnings.extend((number, w) for w in found)
        if isinstance(rule, BrokenRule):
            broken.append(rule)
        else:
            rules.append(rule)
    return HostsFile(name, tuple(rules), tuple(broken), tuple(warnings))


def check_hosts(name: str, text: str, *, default_allow: bool) -> HostsFile:
    """Like ``parse_hosts``, but raise ``ConfigError`` for broken lines."""
    parsed = parse_hosts(name, text, default_allow=default_allow)
    if parsed.broken:
        raise ConfigError(Problem(name, b.line, None, None, b.message)
                          for b in parsed.broken)
    return parsed
