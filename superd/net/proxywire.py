"""
The PROXY protocol's wire format, versions 1 and 2 (pure: no I/O).

A load balancer (HAProxy ``send-proxy``/``send-proxy-v2``, and most cloud
ones) opens each connection with a header naming the client it accepted.
Reading it is split in two:

* ``header_length`` frames it: given the bytes received so far, how long
  the header is, whether more are needed, or why these bytes cannot start
  one.  Written here because the socket reader (``superd.net.proxyreader``)
  must know the length *before* it takes the bytes off the socket, so
  that whatever follows the header stays queued in the kernel for the
  server a socket may be handed to; Twisted's parsers (``feed``) only
  split a buffer already read.
* ``parse_header`` reads a complete header with Twisted's own parsers
  (``V1Parser.parse``, ``V2Parser.parse``, through
  ``superd.core.twistedprivate.parse_proxy_header``), then checks what they leave
  unchecked -- v1 address and port syntax, the address family, v2
  datagram headers on a stream -- and reads the v2 TLVs they skip (ALPN,
  authority, TLS details, a CRC32C checksum).

``build_header`` writes one, for ``redirect_proxy``.

Sizes are bounded: a v1 header is at most 107 bytes (the specification's
limit), a v2 header at most ``V2_MAX`` (its addresses and TLVs).
"""

from __future__ import annotations

import ipaddress
import re
import struct
from typing import AbstractSet, Dict, Iterator, List, Optional, Tuple

import attrs
from twisted.internet.address import IPv4Address, IPv6Address

from superd.core.origin import COMMAND_LOCAL, COMMAND_PROXY, COMMAND_UNKNOWN, ProxyOrigin
from superd.core.session import Peer
from superd.core.twistedprivate import parse_proxy_header

__all__ = [
    "V1_MAX",
    "V2_MAX",
    "V2_SIGNATURE",
    "Header",
    "HeaderError",
    "build_header",
    "header_length",
    "parse_header",
]

#: The longest v1 header, CRLF included (the specification's bound).
V1_MAX = 107
#: The longest v2 header superd reads: 16 bytes, addresses and TLVs.  Load
#: balancers send a few hundred bytes at most; the format allows 64 KiB.
V2_MAX = 4096
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_START = b"PROXY "
_PORT = re.compile(rb"^(?:0|[1-9][0-9]{0,4})$")
#: Address block sizes per v2 family (high nibble of byte 13).
_ADDRESS_SIZE = {0x00: 0, 0x10: 12, 0x20: 36, 0x30: 216}
_DGRAM = 0x02

ClientAddress = IPv4Address | IPv6Address


class HeaderError(Exception):
    """Bytes that are not an acceptable PROXY header; the message says why."""


def _starts(data: bytes, prefix: bytes) -> bool:
    """``data`` is a prefix of ``prefix``'s start, or starts with it."""
    n = min(len(data), len(prefix))
    return data[:n] == prefix[:n]


def header_length(data: bytes, versions: AbstractSet[int]) -> Optional[int]:
    """
    The length of the header ``data`` starts with, or None while more bytes
    are needed to know it.  Raises ``HeaderError`` when ``data`` cannot
    start a header of one of ``versions`` (1, 2), or it would be too long.
    """
    if not data:
        return None
    if _starts(data, V2_SIGNATURE):
        if 2 not in versions:
            raise HeaderError("a v2 header, but the service accepts v1 only")
        if len(data) < 16:
            return None
        total = 16 + int.from_bytes(data[14:16], "big")
        if total > V2_MAX:
            raise HeaderError(f"a v2 header of {total} bytes (at most {V2_MAX})")
        return total
    if _starts(data, _V1_START):
        if 1 not in versions:
            raise HeaderError("a v1 header, but the service accepts v2 only")
        end = data.find(b"\n", 0, V1_MAX)
        if end < 0:
            if len(data) >= V1_MAX:
                raise HeaderError(f"a v1 header longer than {V1_MAX} bytes")
            return None
        if data[end - 1:end] != b"\r":
            raise HeaderError("a v1 header not ended by CRLF")
        return end + 1
    raise HeaderError("no PROXY header")


@attrs.frozen
class Header:
    """A parsed header: the client to admit (None: keep the proxy's address)
    and what else it said."""

    client: Optional[ClientAddress]
    origin: ProxyOrigin


def parse_header(header: bytes, proxy: Peer) -> Header:
    """The complete header ``header`` received from ``proxy``; raises ``HeaderError``."""
    try:
        if header.startswith(V2_SIGNATURE):
            return _v2(header, proxy)
        return _v1(header, proxy)
    except (ValueError, struct.error) as e:
        raise HeaderError(f"malformed v{1 if header[:1] == b'P' else 2} header"
                          f" ({getattr(e, 'kind', type(e).__name__)})") from e


def _address(address: object, version: int) -> ClientAddress:
    """A parser's address, checked: a literal of the family the header said."""
    if not isinstance(address, (IPv4Address, IPv6Address)):
        raise ValueError("not an IP address")
    parsed = ipaddress.ip_address(address.host)
    if parsed.version != version:
        raise ValueError("address of the wrong family")
    return address


def _peer(address: ClientAddress) -> Peer:
    return Peer.from_address((address.host, address.port))


def _v1(header: bytes, proxy: Peer) -> Header:
    line = header[:-2]
    # Twisted's parser wants a field after UNKNOWN; the specification
    # allows (and HAProxy sends) the bare ``PROXY UNKNOWN``.
    if line == b"PROXY UNKNOWN" or line.startswith(b"PROXY UNKNOWN "):
        return Header(None, ProxyOrigin(1, COMMAND_UNKNOWN, proxy))
    info = parse_proxy_header(line, 1)
    fields = line.split(b" ")
    if len(fields) != 6 or not all(_PORT.match(port) for port in fields[4:]) \
            or int(fields[4]) > 65535 or int(fields[5]) > 65535:
        raise ValueError("bad ports or extra fields")
    version = 4 if fields[1] == b"TCP4" else 6
    client = _address(info.source, version)
    destination = _address(info.destination, version)
    return Header(client, ProxyOrigin(1, COMMAND_PROXY, proxy, _peer(destination)))


def _v2(header: bytes, proxy: Peer) -> Header:
    info = parse_proxy_header(header, 2)
    local = header[12] & 0x0F == 0
    family, transport = header[13] & 0xF0, header[13] & 0x0F
    start = 16 + _ADDRESS_SIZE.get(family, 0)
    if local:
        # The receiver ignores a LOCAL header's address block, which
        # health checks often leave out whatever family they name.
        facts = _facts(_tlvs(header, start)) if start <= len(header) else ()
        return Header(None, ProxyOrigin(2, COMMAND_LOCAL, proxy, facts=facts))
    facts = _facts(_tlvs(header, start))
    if transport == _DGRAM:
        raise ValueError("a datagram header on a stream connection")
    if not isinstance(info.source, (IPv4Address, IPv6Address)):
        return Header(None, ProxyOrigin(2, COMMAND_UNKNOWN, proxy, facts=facts))
    version = 4 if family == 0x10 else 6
    client = _address(info.source, version)
    destination = _address(info.destination, version)
    return Header(client, ProxyOrigin(2, COMMAND_PROXY, proxy, _peer(destination), facts))


# -- v2 TLVs ---------------------------------------------------------------

_CRC32C = 0x03
_NOOP = 0x04
_SSL = 0x20
#: Text TLVs and the names their values take (``PROXY_<name>``).
_TEXT = {0x01: "ALPN", 0x02: "AUTHORITY", 0x05: "UNIQUE_ID", 0x30: "NETNS"}
_SSL_TEXT = {0x21: "SSL_VERSION", 0x22: "SSL_CN", 0x23: "SSL_CIPHER",
             0x24: "SSL_SIG_ALG", 0x25: "SSL_KEY_ALG"}
#: Bits of the SSL TLV's ``client`` field.
_SSL_CLIENT = ((0x01, "SSL"), (0x02, "SSL_CERT_CONN"), (0x04, "SSL_CERT_SESS"))
_MAX_TEXT = 255


def _records(data: bytes, start: int) -> Iterator[Tuple[int, int, bytes]]:
    """``(type, offset, value)`` of each TLV from ``start``; raises ``ValueError``
    for one that runs past the end."""
    at = start
    while at < len(data):
        if at + 3 > len(data):
            raise ValueError("truncated TLV")
        kind, size = data[at], int.from_bytes(data[at + 1:at + 3], "big")
        end = at + 3 + size
        if end > len(data):
            raise ValueError("TLV longer than the header")
        yield kind, at + 3, data[at + 3:end]
        at = end


def _tlvs(header: bytes, start: int) -> List[Tuple[int, bytes]]:
    if start > len(header):
        raise ValueError("address block longer than the header")
    found = []
    for kind, offset, value in _records(header, start):
        if kind == _CRC32C:
            zeroed = header[:offset] + b"\0\0\0\0" + header[offset + 4:]
            if len(value) != 4 or int.from_bytes(value, "big") != crc32c(zeroed):
                raise ValueError("CRC32C mismatch")
        elif kind != _NOOP:
            found.append((kind, value))
    return found


def _text(value: bytes) -> str:
    """A peer's bytes as environment-safe text: no controls, no NUL, bounded."""
    text = value[:_MAX_TEXT].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def _facts(tlvs: List[Tuple[int, bytes]]) -> Tuple[Tuple[str, str], ...]:
    facts: Dict[str, str] = {}
    for kind, value in tlvs:
        if kind in _TEXT:
            facts[_TEXT[kind]] = _text(value)
        elif kind == _SSL:
            facts.update(_ssl_facts(value))
        else:
            facts[f"TLV_{kind:02X}"] = value[:_MAX_TEXT].hex()
    return tuple(facts.items())


def _ssl_facts(value: bytes) -> Dict[str, str]:
    if len(value) < 5:
        raise ValueError("short SSL TLV")
    client, verify = value[0], int.from_bytes(value[1:5], "big")
    facts = {name: "1" for bit, name in _SSL_CLIENT if client & bit}
    facts["SSL_VERIFY"] = str(verify)
    for kind, _, sub in _records(value, 5):
        if kind in _SSL_TEXT:
            facts[_SSL_TEXT[kind]] = _text(sub)
    return facts


def _crc32c_table() -> Tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as the v2 checksum TLV carries it.  Hand-written:
    the standard library has only the other CRC-32, and the headers are small."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- writing ---------------------------------------------------------------

def _as_v6(host: str) -> ipaddress.IPv6Address:
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(f"::ffff:{address}")
    return address


def build_header(version: int, client: Peer, destination: Peer) -> bytes:
    """
    The header a load balancer would send for ``client`` connecting to
    ``destination``.  Both addresses must share a family; when they do not
    (an IPv6 client relayed from an IPv4 address), IPv4 is written as
    IPv4-mapped IPv6, as HAProxy does.
    """
    v4 = ":" not in client.host and ":" not in destination.host
    if v4:
        src: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(client.host)
        dst: ipaddress.IPv4Address | ipaddress.IPv6Address = \
            ipaddress.IPv4Address(destination.host)
    else:
        src, dst = _as_v6(client.host), _as_v6(destination.host)
    if version == 1:
        family = b"TCP4" if v4 else b"TCP6"
        return b"PROXY %s %s %s %d %d\r\n" % (family, str(src).encode(), str(dst).encode(),
                                              client.port, destination.port)
    addresses = src.packed + dst.packed + struct.pack("!HH", client.port, destination.port)
    family_byte = 0x11 if v4 else 0x21
    return V2_SIGNATURE + bytes([0x21, family_byte]) + struct.pack("!H", len(addresses)) \
        + addresses
