"""
Tests for ``superd.net.proxywire``: framing and parsing PROXY protocol
headers (v1 and v2, well-formed and hand-crafted bad ones), v2 TLVs and
their checksum, and the headers ``redirect_proxy`` writes.
"""

from __future__ import annotations

import socket
import struct

import pytest

from superd.core.origin import COMMAND_LOCAL, COMMAND_PROXY, COMMAND_UNKNOWN
from superd.core.session import Peer
from superd.net.proxywire import (
    V1_MAX,
    V2_MAX,
    V2_SIGNATURE,
    HeaderError,
    build_header,
    crc32c,
    header_length,
    parse_header,
)

PROXY = Peer("127.0.0.1", 50000)
ANY = frozenset({1, 2})


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def v2(body: bytes = b"", *, command: int = 1, family: int = 0x11,
       addresses: bytes | None = None) -> bytes:
    """A v2 header: addresses (TCP4 192.0.2.1:1234 -> 198.51.100.7:443 by
    default) then ``body`` (TLVs)."""
    if addresses is None:
        addresses = (socket.inet_aton("192.0.2.1") + socket.inet_aton("198.51.100.7")
                     + struct.pack("!HH", 1234, 443))
    payload = addresses + body
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(payload)) \
        + payload


def with_crc(header: bytes) -> bytes:
    """``header`` (ending in a zeroed CRC32C TLV) with its checksum filled in."""
    return header[:-4] + struct.pack("!I", crc32c(header))


# -- framing --------------------------------------------------------------

def test_v1_length_known_at_crlf() -> None:
    """A v1 header ends at its CRLF; bytes after it are not part of it."""
    line = b"PROXY TCP4 192.0.2.1 198.51.100.7 1234 443\r\n"
    assert header_length(line + b"GET / HTTP/1.0\r\n", ANY) == len(line)


@pytest.mark.parametrize("cut", [1, 5, 6, 20, 43])
def test_v1_split_needs_more(cut: int) -> None:
    """Any prefix of a v1 header short of its CRLF asks for more bytes."""
    line = b"PROXY TCP4 192.0.2.1 198.51.100.7 1234 443\r\n"
    assert header_length(line[:cut], ANY) is None


def test_v2_length_from_its_length_field() -> None:
    """A v2 header is 16 bytes plus its length field; fewer than 16 ask for more."""
    header = v2(tlv(0x01, b"h2"))
    assert header_length(header[:15], ANY) is None
    assert header_length(header[:16], ANY) == len(header)
    assert header_length(header + b"\x16\x03\x01", ANY) == len(header)


def test_oversized_headers_refused_early() -> None:
    """A v1 line without CRLF in 107 bytes, or a v2 length field beyond
    V2_MAX, is refused before the rest is read."""
    with pytest.raises(HeaderError, match="longer than 107"):
        header_length(b"PROXY TCP4 " + b"1" * V1_MAX, ANY)
    big = V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", V2_MAX)
    with pytest.raises(HeaderError, match="at most 4096"):
        header_length(big, ANY)


@pytest.mark.parametrize("data, message", [
    (b"GET / HTTP/1.1\r\n", "no PROXY header"),
    (b"\x16\x03\x01\x02\x00", "no PROXY header"),      # a TLS ClientHello
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "not ended by CRLF"),
    (b"\r\n\r\n\x00\r\nQUIX", "no PROXY header"),
])
def test_not_a_header(data: bytes, message: str) -> None:
    """Bytes that cannot start a header are refused as soon as they arrive."""
    with pytest.raises(HeaderError, match=message):
        header_length(data, ANY)


def test_version_not_accepted() -> None:
    """A service taking v2 only refuses v1, and the other way round."""
    with pytest.raises(HeaderError, match="accepts v2 only"):
        header_length(b"PROX", frozenset({2}))
    with pytest.raises(HeaderError, match="accepts v1 only"):
        header_length(V2_SIGNATURE[:3], frozenset({1}))


# -- parsing v1 -----------------------------------------------------------

def test_v1_tcp4() -> None:
    """TCP4 names the client and where it connected to."""
    header = parse_header(b"PROXY TCP4 192.0.2.1 198.51.100.7 1234 443\r\n", PROXY)
    assert header.client is not None
    assert (header.client.host, header.client.port) == ("192.0.2.1", 1234)
    origin = header.origin
    assert (origin.version, origin.command, origin.proxy) == (1, COMMAND_PROXY, PROXY)
    assert origin.destination == Peer("198.51.100.7", 443)


def test_v1_tcp6_canonical() -> None:
    """TCP6 addresses end up canonical (compressed) in the origin."""
    header = parse_header(b"PROXY TCP6 2001:DB8:0:0::1 2001:db8::2 65535 0\r\n", PROXY)
    assert header.client is not None and header.client.port == 65535
    assert header.origin.destination == Peer("2001:db8::2", 0)


@pytest.mark.parametrize("line", [b"PROXY UNKNOWN\r\n",
                                  b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"])
def test_v1_unknown_keeps_proxy(line: bytes) -> None:
    """UNKNOWN (with or without the optional fields) names no client."""
    header = parse_header(line, PROXY)
    assert header.client is None
    assert header.origin.command == COMMAND_UNKNOWN


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 192.0.2.1 198.51.100.7 1234\r\n",          # a port missing
    b"PROXY TCP4 192.0.2.1 198.51.100.7 1234 443 9\r\n",    # a field too many
    b"PROXY TCP4 192.0.2.1 198.51.100.7 65536 443\r\n",     # port out of range
    b"PROXY TCP4 192.0.2.1 198.51.100.7 +1 443\r\n",        # not plain digits
    b"PROXY TCP4 192.0.2.1 198.51.100.7 01 443\r\n",        # leading zero
    b"PROXY TCP4 192.0.2.1 198.51.100.7 1_0 443\r\n",       # int() would take it
    b"PROXY TCP4 2001:db8::1 198.51.100.7 1 443\r\n",       # family mismatch
    b"PROXY TCP6 192.0.2.1 2001:db8::1 1 443\r\n",
    b"PROXY TCP4 192.0.2.999 198.51.100.7 1 443\r\n",       # not an address
    b"PROXY TCP4 example.org 198.51.100.7 1 443\r\n",
    b"PROXY TCP5 192.0.2.1 198.51.100.7 1 443\r\n",         # unknown protocol
    b"PROXY  TCP4 192.0.2.1 198.51.100.7 1 443\r\n",        # two spaces
    b"PROXY TCP4 \xff\xfe 198.51.100.7 1 443\r\n",          # not text
    b"PROXY TCP4 192.0.2.1\x00 198.51.100.7 1 443\r\n",
])
def test_v1_malformed(line: bytes) -> None:
    """Hand-crafted bad v1 headers are refused, never half-read."""
    with pytest.raises(HeaderError, match="malformed v1 header"):
        parse_header(line, PROXY)


# -- parsing v2 -----------------------------------------------------------

def test_v2_tcp4() -> None:
    """A v2 PROXY header over TCP4 names the client."""
    header = parse_header(v2(), PROXY)
    assert header.client is not None
    assert (header.client.host, header.client.port) == ("192.0.2.1", 1234)
    assert header.origin.version == 2
    assert header.origin.destination == Peer("198.51.100.7", 443)


def test_v2_tcp6_mapped_is_ipv4() -> None:
    """An IPv4-mapped IPv6 client is the IPv4 peer it denotes, as for sockets."""
    addresses = (socket.inet_pton(socket.AF_INET6, "::ffff:192.0.2.9")
                 + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 1, 2))
    header = parse_header(v2(family=0x21, addresses=addresses), PROXY)
    assert header.client is not None
    assert header.origin.destination == Peer("2001:db8::1", 2)
    assert Peer.from_address(header.client) == Peer("192.0.2.9", 1)


@pytest.mark.parametrize("family", [0x00, 0x31, 0x10])
def test_v2_no_ip_client_keeps_proxy(family: int) -> None:
    """UNSPEC, UNIX-socket and unspecified-transport clients name no IP
    address: the proxy stays the peer."""
    addresses = {0x00: b"", 0x31: b"/a".ljust(108, b"\0") + b"/b".ljust(108, b"\0"),
                 0x10: b"\0" * 12}[family]
    header = parse_header(v2(family=family, addresses=addresses), PROXY)
    assert header.client is None
    assert header.origin.command == COMMAND_UNKNOWN


def test_v2_local_with_or_without_addresses() -> None:
    """LOCAL (a health check) names no client, whatever address block it has."""
    for header in (v2(command=0, family=0x00, addresses=b""),
                   v2(command=0, family=0x11, addresses=b"")):
        parsed = parse_header(header, PROXY)
        assert (parsed.client, parsed.origin.command) == (None, COMMAND_LOCAL)


def test_v2_tlvs_become_facts() -> None:
    """ALPN, authority, unique id, the SSL TLV's flags and sub-TLVs, and
    unknown types (in hex) become facts; NOOP is skipped."""
    ssl = bytes([0x07]) + struct.pack("!I", 0) + tlv(0x21, b"TLSv1.3") \
        + tlv(0x22, b"client.example") + tlv(0x23, b"TLS_AES_128_GCM_SHA256") \
        + tlv(0x24, b"SHA256") + tlv(0x25, b"EC256")
    body = tlv(0x01, b"h2") + tlv(0x02, b"www.example.org") + tlv(0x04, b"\0\0") \
        + tlv(0x05, b"abc-123") + tlv(0x20, ssl) + tlv(0xEA, b"\x01vpce-1")
    facts = dict(parse_header(v2(body), PROXY).origin.facts)
    assert facts == {
        "ALPN": "h2", "AUTHORITY": "www.example.org", "UNIQUE_ID": "abc-123",
        "SSL": "1", "SSL_CERT_CONN": "1", "SSL_CERT_SESS": "1", "SSL_VERIFY": "0",
        "SSL_VERSION": "TLSv1.3", "SSL_CN": "client.example",
        "SSL_CIPHER": "TLS_AES_128_GCM_SHA256", "SSL_SIG_ALG": "SHA256",
        "SSL_KEY_ALG": "EC256", "TLV_EA": "01767063652d31",
    }


def test_v2_text_facts_are_safe() -> None:
    """A TLV's controls and NUL bytes never reach an environment value."""
    facts = dict(parse_header(v2(tlv(0x02, b"evil\0\nname\x1b[31m")), PROXY).origin.facts)
    assert facts == {"AUTHORITY": "evil??name?[31m"}


def test_crc32c_known_value() -> None:
    """CRC-32C of "123456789" is the standard check value."""
    assert crc32c(b"123456789") == 0xE3069283


def test_v2_checksum_checked() -> None:
    """A correct CRC32C TLV passes; one flipped byte anywhere is refused."""
    header = with_crc(v2(tlv(0x01, b"h2") + tlv(0x03, b"\0\0\0\0")))
    assert dict(parse_header(header, PROXY).origin.facts) == {"ALPN": "h2"}
    damaged = header[:20] + bytes([header[20] ^ 1]) + header[21:]
    with pytest.raises(HeaderError, match="malformed v2 header"):
        parse_header(damaged, PROXY)


@pytest.mark.parametrize("header", [
    v2(tlv(0x01, b"h2")[:-1]),                        # a TLV runs past the end
    v2(b"\x01\x00"),                                  # a truncated TLV head
    v2(tlv(0x20, b"\x01\0\0")),                       # a short SSL TLV
    v2(family=0x12),                                  # datagram on a stream
    v2(family=0x11, addresses=b"\0" * 8),             # address block too short
    v2(family=0x41),                                  # unknown family
    v2(command=2),                                    # unknown command
    V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\0" * 12,  # version 1 in a v2 frame
])
def test_v2_malformed(header: bytes) -> None:
    """Hand-crafted bad v2 headers are refused."""
    with pytest.raises(HeaderError, match="malformed v2 header"):
        parse_header(header, PROXY)


# -- writing --------------------------------------------------------------

@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("client, destination", [
    (Peer("192.0.2.1", 1234), Peer("127.0.0.1", 7)),
    (Peer("2001:db8::1", 1234), Peer("::1", 7)),
    (Peer("2001:db8::1", 1234), Peer("127.0.0.1", 7)),   # mixed: IPv4 is mapped
])
def test_build_header_reads_back(version: int, client: Peer, destination: Peer) -> None:
    """What redirect_proxy writes is what a receiver reads back."""
    data = build_header(version, client, destination)
    assert header_length(data + b"rest", ANY) == len(data)
    origin = parse_header(data, PROXY).origin
    assert (origin.version, origin.command) == (version, COMMAND_PROXY)
    header = parse_header(data, PROXY)
    assert header.client is not None
    assert Peer.from_address(header.client) == client
    assert origin.destination == destination


def test_build_v1_text() -> None:
    """The v1 line is the specification's, byte for byte."""
    assert build_header(1, Peer("192.0.2.1", 1234), Peer("127.0.0.1", 7)) == \
        b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 7\r\n"
