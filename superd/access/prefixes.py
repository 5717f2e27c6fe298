"""
Longest-prefix lookup at a cost independent of the number of prefixes.

One dict per prefix length that occurs, probed from the longest length
down: a lookup costs at most one dict probe per *distinct* length (33 for
IPv4, 129 for IPv6), whether the table holds ten networks or a million.
Written here because the stdlib has no prefix table and a radix-tree
dependency would buy nothing at these sizes.
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["IPNetwork", "PrefixTable", "address_int", "family_tables", "network_length",
           "source_key", "unmapped"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def address_int(host: str) -> tuple[int, int] | None:
    """``(version, integer)`` of a canonical address string, else None.

    ``inet_pton`` rather than ``ipaddress``: this runs for every connection
    and is several times faster; both accept only canonical-enough text.
    """
    try:
        if ":" in host:
            return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, host), "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
    except (OSError, ValueError):
        return None


def source_key(host: str, v6_prefix: int) -> str:
    """
    What ``host`` (canonical) is counted and banned as: itself, or, for an
    IPv6 address when ``v6_prefix`` is under 128, its network of that
    length in canonical text (``2001:db8:1:2::/64``).
    """
    if v6_prefix >= 128 or ":" not in host:
        return host
    try:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, host), "big")
    except (OSError, ValueError):
        return host
    shift = 128 - v6_prefix
    return f"{ipaddress.IPv6Address(value >> shift << shift)}/{v6_prefix}"


def network_length(key: str) -> int | None:
    """The prefix length of a ``source_key`` that is a network, else None."""
    if "/" not in key:
        return None
    try:
        return int(key.rsplit("/", 1)[1])
    except ValueError:
        return None


def unmapped(network: IPNetwork) -> IPNetwork:
    """``::ffff:a.b.c.d/n`` (n >= 96) as the IPv4 network it denotes."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((int(mapped), network.prefixlen - 96))
    return network


class PrefixTable:
    """Networks of one address family, each carrying OR-ed integer flags."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._tables: dict[int, dict[int, int]] = {}
        self._lengths: list[tuple[int, int, dict[int, int]]] = []

    def __bool__(self) -> bool:
        return bool(self._tables)

    def add(self, network: IPNetwork, flag: int) -> None:
        """Add ``network`` with ``flag`` (OR-ed into any flags it has)."""
        length = network.prefixlen
        table = self._tables.get(length)
        if table is None:
            table = self._tables[length] = {}
            self._lengths = sorted(
                ((n, self.width - n, t) for n, t in self._tables.items()),
                key=lambda item: -item[0])
        key = int(network.network_address) >> (self.width - length)
        table[key] = table.get(key, 0) | flag

    def best(self, address: int) -> tuple[int, int] | None:
        """``(prefix length, flags)`` of the longest prefix holding ``address``."""
        for length, shift, table in self._lengths:
            flags = table.get(address >> shift)
            if flags:
                return length, flags
        return None


def family_tables() -> dict[int, PrefixTable]:
    """An empty table per IP version (4 and 6)."""
    return {4: PrefixTable(32), 6: PrefixTable(128)}
