"""
The one service configuration both daemons run in a benchmark.

The text is xinetd syntax and is rendered twice from the same service list,
once per port range, so superd and xinetd serve exactly the same services
with exactly the same attributes.  Everything xinetd insists on (``type =
UNLISTED``, ``port``, ``bind``, ``user`` for external servers, ``cps = 0 0``
so its default 50/s limit does not shut a service down mid-measurement) is
spelled out, which superd accepts as well.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = [
    "LIST_SIZE",
    "REDIRECT_UPSTREAMS",
    "SUPERD_BASE",
    "UDP_ECHO_OFFSET",
    "XINETD_BASE",
    "Service",
    "address_lists",
    "bench_services",
    "render",
    "udp_echo",
]

SUPERD_BASE = 28000
XINETD_BASE = 27000
LIST_SIZE = 10_000
# Where the redirect services relay to: bench/upstream.c (daemons.UPSTREAM_PORTS).
REDIRECT_UPSTREAMS = {"line": 26006, "stream": 26007}
# The UDP echo builtin the latency figure floods (issue 13).
UDP_ECHO_OFFSET = 13


@dataclass(frozen=True)
class Service:
    """One service block: its name, its port offset and its attributes."""

    name: str
    offset: int
    attrs: tuple[tuple[str, str], ...]
    # Extra lines appended verbatim (``only_from += ...``), for long lists.
    extra: tuple[str, ...] = field(default=())

    @property
    def ident(self) -> str:
        for key, value in self.attrs:
            if key == "id":
                return value
        return self.name

    @property
    def udp(self) -> bool:
        """A datagram service: bound, not listening (readiness reads /proc/net/udp)."""
        return ("socket_type", "dgram") in self.attrs

    def port(self, base: int) -> int:
        return base + self.offset


def _builtin(name: str, offset: int, ident: str | None = None) -> Service:
    attrs = [("type", "INTERNAL UNLISTED"), ("socket_type", "stream"), ("wait", "no")]
    if ident:
        attrs.insert(0, ("id", ident))
    return Service(name, offset, tuple(attrs))


def _external(ident: str, offset: int, server: str, user: str) -> Service:
    attrs = (
        ("type", "UNLISTED"),
        ("socket_type", "stream"),
        ("wait", "no"),
        ("user", user),
        ("server", server),
    )
    return Service(ident, offset, attrs)


def address_lists(size: int = LIST_SIZE) -> tuple[list[str], list[str]]:
    """``only_from`` and ``no_access`` values of ``size`` distinct entries each.

    only_from mixes host addresses and CIDR blocks that never match the
    client, and ends with the one entry that admits 127.0.0.1, so a linear
    scan (xinetd) walks the whole list; no_access never matches (host
    addresses only, none ending in .0).
    """
    only: list[str] = []
    for i in range(size - 1):
        a, b = divmod(i, 250)
        net = f"{10 + a // 250}.{a % 250}.{b}"  # 10.x.y below 62,500 entries, then 11.x.y ...
        only.append(f"{net}.{1 + i % 200}" if i % 2 else f"{net}.0/24")
    only.append("127.0.0.1")
    deny = [str(ipaddress.IPv4Address(_deny_address(i))) for i in range(size)]
    return only, deny


def _deny_address(i: int) -> int:
    """192.168.0.0 + 3i, moved off a trailing .0 (which xinetd's syntax reads as a
    whole network) to 3i + 1, which no other entry uses."""
    address = 0xC0A80000 + i * 3
    return address + 1 if address % 256 == 0 else address


def _list_lines(attribute: str, values: list[str], per_line: int = 100) -> list[str]:
    return [
        f"{attribute} += " + " ".join(values[i : i + per_line])
        for i in range(0, len(values), per_line)
    ]


def bench_services(list_size: int = LIST_SIZE, tinycat: str = "/bin/cat") -> list[Service]:
    """Every service any figure needs, at fixed port offsets.

    ``tinycat`` is the path of the built bench/tinycat.c (the spawn-tiny service).
    """
    only, deny = address_lists(list_size)
    lists = _builtin("daytime", 7, ident="daytime-lists")
    lists = Service(
        lists.name,
        lists.offset,
        lists.attrs,
        tuple(_list_lines("only_from", only) + _list_lines("no_access", deny)),
    )
    sensor = Service(
        "bench-sensor",
        8,
        (
            ("type", "INTERNAL UNLISTED"),
            ("flags", "SENSOR"),
            ("socket_type", "stream"),
            ("wait", "no"),
            ("deny_time", "10"),
        ),
    )
    return [
        _builtin("echo", 1),
        _logged_echo(9),
        _builtin("daytime", 2),
        _builtin("chargen", 3),
        _builtin("discard", 4),
        _external("spawn-cat", 5, "/bin/cat", "root"),
        _external("spawn-cat-nobody", 6, "/bin/cat", "nobody"),
        _external("spawn-tiny", 12, tinycat, "root"),
        udp_echo(UDP_ECHO_OFFSET),
        lists,
        sensor,
        _redirect("redirect-line", 10, REDIRECT_UPSTREAMS["line"]),
        _redirect("redirect-stream", 11, REDIRECT_UPSTREAMS["stream"]),
    ]


def udp_echo(offset: int) -> Service:
    """The UDP echo builtin (``wait = yes``, as xinetd requires for datagrams)."""
    attrs = (
        ("id", "echo-udp"),
        ("type", "INTERNAL UNLISTED"),
        ("socket_type", "dgram"),
        ("protocol", "udp"),
        ("wait", "yes"),
    )
    return Service("echo", offset, attrs)


def _redirect(ident: str, offset: int, upstream: int) -> Service:
    """A ``redirect`` service (xinetd forks a relay per connection; it needs ``user``)."""
    attrs = (
        ("type", "UNLISTED"),
        ("socket_type", "stream"),
        ("wait", "no"),
        ("user", "root"),
        ("redirect", f"127.0.0.1 {upstream}"),
    )
    return Service(ident, offset, attrs)


def _logged_echo(offset: int) -> Service:
    """Echo with an xinetd FILE service log (issue 5: logging must not dominate)."""
    echo = _builtin("echo", offset, ident="echo-logged")
    attrs = (
        *echo.attrs,
        ("log_type", "FILE {log_dir}/service.log"),
        ("log_on_success", "HOST PID EXIT DURATION"),
        ("log_on_failure", "HOST"),
    )
    return Service(echo.name, offset, attrs)


def render(services: list[Service], base: int, log_dir: str, bind: str = "127.0.0.1") -> str:
    """The configuration text with every port at ``base + offset``."""
    blocks = []
    for svc in services:
        lines = [f"service {svc.name}", "{"]
        for key, value in svc.attrs:
            lines.append(f"\t{key} = {value.format(log_dir=log_dir)}")
        lines += [f"\tport = {svc.port(base)}", f"\tbind = {bind}", "\tcps = 0 0"]
        lines += [f"\t{line}" for line in svc.extra]
        lines.append("}")
        blocks.append("\n".join(lines))
    return "# generated by bench/run; do not edit\n\n" + "\n\n".join(blocks) + "\n"
