"""
``only_from`` / ``no_access`` entries: every form xinetd accepts, as values.

Pure.  ``parse_address`` turns one written token into one or more
``AddressSpec`` values, or raises ``ValueError`` with a message a person can
act on.  The forms, tried in this order:

* factorized ``10.0.{1,2}`` (IPv4, braces last): one spec per element;
* CIDR ``10.0.0.0/8``, ``fe80::/10``, ``::/0``, ``::1/128``;
* IPv6 literal ``::1``: exactly that address (/128);
* IPv4 ``a.b.c.d`` with xinetd's trailing-zero wildcard: ``192.168.0.0`` is
  192.168/16 and ``0.0.0.0`` is every IPv4 address (``implicit_wildcard``);
* ``.example.com``: a domain suffix; any other name: a host name.

IPv4-mapped IPv6 forms (``::ffff:10.0.0.1``) become their IPv4 equivalent,
so every later comparison sees one canonical address.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Tuple

from superd.config.model import AddressKind, AddressSpec, IPNetwork

__all__ = ["canonical_network", "parse_address"]

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_OCTET = re.compile(r"^[0-9]{1,3}$")
#: The usual form, a full dotted quad, matched in one step.
_QUAD = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\Z")
_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def canonical_network(network: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 network as the IPv4 network it stands for."""
    mapped = isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED)
    if isinstance(network, ipaddress.IPv6Network) and mapped and network.prefixlen >= 96:
        address = network.network_address.ipv4_mapped
        assert address is not None
        return ipaddress.IPv4Network((address, network.prefixlen - 96))
    return network


def _octets(text: str, written: str) -> Tuple[int, ...]:
    quad = _QUAD.match(text)
    if quad is not None:
        octets = tuple(map(int, quad.groups()))
        if max(octets) > 255:
            raise ValueError(f"{written!r}: each IPv4 number must be 0-255")
        return octets
    parts = text.split(".")
    values = []
    too_big = False
    for part in parts:
        # What the pattern [0-9]{1,3} allows: isdigit alone admits other
        # scripts' digits, which int() would read.
        if not (0 < len(part) <= 3 and part.isascii() and part.isdigit()):
            raise ValueError(f"{written!r} is not a valid IPv4 address")
        value = int(part)
        too_big = too_big or value > 255
        values.append(value)
    if too_big:
        raise ValueError(f"{written!r}: each IPv4 number must be 0-255")
    return tuple(values)


def _network(octets: Tuple[int, ...], prefixlen: int) -> ipaddress.IPv4Network:
    # Built from the integer: a long list is parsed many times faster than
    # through ipaddress's own string parsing, which checks it all again.
    value = 0
    for octet in octets:
        value = value << 8 | octet
    return ipaddress.IPv4Network((value << 8 * (4 - len(octets)), prefixlen))


def _factorized(text: str) -> Tuple[AddressSpec, ...]:
    head, _, tail = text.partition("{")
    if not tail.endswith("}") or "{" in tail or "}" in tail[:-1]:
        raise ValueError(f"{text!r}: the {{...}} part must come last, as in 10.0.{{1,2}}")
    if not head.endswith("."):
        raise ValueError(f"{text!r}: expected an IPv4 prefix ending in '.' before '{{'")
    prefix = _octets(head[:-1], text)
    if len(prefix) > 3:
        raise ValueError(f"{text!r}: too many numbers for an IPv4 address")
    elements = tail[:-1].split(",")
    if not all(e.strip() for e in elements):
        raise ValueError(f"{text!r}: empty element inside {{...}}")
    specs = []
    for element in elements:
        element = element.strip()
        if not _OCTET.match(element) or int(element) > 255:
            raise ValueError(f"{text!r}: {element!r} is not a number from 0 to 255")
        octets = (*prefix, int(element))
        specs.append(AddressSpec(text, AddressKind.NETWORK, _network(octets, 8 * len(octets))))
    return tuple(specs)


def _cidr(text: str) -> AddressSpec:
    address, _, length = text.partition("/")
    if not length.isdigit() or not address:
        raise ValueError(f"{text!r}: expected ADDRESS/PREFIX, as in 10.0.0.0/8 or fe80::/10")
    invalid = ValueError(f"{text!r} is not a valid network (ADDRESS/PREFIX)")
    if ":" not in address:
        octets = _octets(address, text)
        if len(octets) != 4:
            raise ValueError(f"{text!r}: write all four numbers of the address before '/'")
        prefixlen = int(length) if length.isascii() else 33
        # ipaddress refuses leading zeros (an octal reading is ambiguous).
        if prefixlen > 32 or any(len(p) > 1 and p[0] == "0" for p in address.split(".")):
            raise invalid
        value = octets[0] << 24 | octets[1] << 16 | octets[2] << 8 | octets[3]
        host_bits = (1 << (32 - prefixlen)) - 1
        return AddressSpec(text, AddressKind.NETWORK,
                           ipaddress.IPv4Network((value & ~host_bits, prefixlen)))
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise invalid from None
    return AddressSpec(text, AddressKind.NETWORK, canonical_network(network))


def _ipv6(text: str) -> AddressSpec:
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid IPv6 address") from None
    if address.scope_id is not None:
        raise ValueError(f"{text!r}: scoped (%zone) addresses are not supported")
    network = canonical_network(ipaddress.IPv6Network((address, 128)))
    return AddressSpec(text, AddressKind.NETWORK, network)


def _ipv4(text: str) -> AddressSpec:
    octets = _octets(text, text)
    if len(octets) > 4:
        raise ValueError(f"{text!r} is not a valid IPv4 address")
    if len(octets) != 4:
        raise ValueError(
            f"{text!r}: write all four numbers, or a prefix such as "
            f"{'.'.join(map(str, octets + (0,) * (4 - len(octets))))}/{8 * len(octets)}"
        )
    significant = 4
    while significant and not octets[significant - 1]:
        significant -= 1
    prefixlen = 8 * significant
    return AddressSpec(
        text, AddressKind.NETWORK, _network(octets, prefixlen), implicit_wildcard=prefixlen < 32
    )


def _name(text: str) -> AddressSpec:
    domain = text.startswith(".")
    name = text[1:] if domain else text
    name = name[:-1] if name.endswith(".") else name
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{text!r} is not an address, network, host name or .domain "
            "(forms: 10.0.0.1, 10.0.0.0/8, 10.0.{1,2}, ::1, fe80::/10, host.example.com, "
            ".example.com)"
        )
    if labels[-1].isdigit():
        raise ValueError(f"{text!r} is not a valid IPv4 address or host name")
    kind = AddressKind.DOMAIN if domain else AddressKind.HOST
    return AddressSpec(text, kind, name=name.lower())


def parse_address(text: str) -> Tuple[AddressSpec, ...]:
    """One ``only_from``/``no_access`` token as one or more specs (ValueError if junk)."""
    if not text:
        raise ValueError("empty address")
    if "{" in text or "}" in text:
        return _factorized(text)
    if "," in text:
        raise ValueError(f"{text!r} has a comma outside {{...}}; separate entries with spaces")
    if "/" in text:
        return (_cidr(text),)
    if ":" in text:
        return (_ipv6(text),)
    if text[0].isdigit() and text.replace(".", "").isdigit():
        return (_ipv4(text),)
    return (_name(text),)
