"""
Tests of ``superd.handlers.tls.clienthello``: the server name read from real
ClientHellos (Python's ``ssl``, TLS 1.2 and 1.3, with and without SNI),
however the bytes arrive and however the records are split, and nothing but
``HelloError`` or an answer from any bytes at all.
"""

from __future__ import annotations

import ssl
import struct
from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superd.handlers.tls.clienthello import (
    MAX_HELLO,
    MAX_RECORDS,
    ClientHello,
    HelloError,
    Incomplete,
    read_client_hello,
)


def client_hello(server_name: Optional[str], maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
                 ) -> bytes:
    """The first flight of Python's TLS client (one record holding the ClientHello)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = maximum
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def split_records(hello: bytes, sizes: list[int]) -> bytes:
    """The same handshake message re-framed in records of the given sizes."""
    version, message = hello[1:3], hello[5:]
    out, at = b"", 0
    for size in [*sizes, len(message)]:
        chunk = message[at:at + size]
        if chunk:
            out += b"\x16" + version + struct.pack("!H", len(chunk)) + chunk
        at += size
    return out


@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_server_name_of_real_clients(maximum: ssl.TLSVersion) -> None:
    """The name Python's client sends; None without one; the record's version kept."""
    hello = client_hello("b.Example.com", maximum)
    found = read_client_hello(hello)
    assert found == ClientHello(b"b.Example.com", hello[1:3], len(hello))
    assert read_client_hello(client_hello(None, maximum)) == ClientHello(
        None, hello[1:3], len(client_hello(None, maximum)))


def test_every_prefix_asks_for_more_and_names_the_bytes_needed() -> None:
    """Byte by byte, each prefix is Incomplete with a need beyond what is there."""
    hello = client_hello("a.example.com")
    for end in range(len(hello)):
        found = read_client_hello(hello[:end])
        assert isinstance(found, Incomplete) and end < found.need <= len(hello)
    assert isinstance(read_client_hello(hello + b"\x17\x03\x03"), ClientHello)


def test_a_hello_split_over_records() -> None:
    """A ClientHello fragmented over several handshake records is read whole."""
    hello = client_hello("a.example.com")
    assert read_client_hello(split_records(hello, [1, 3, 40, 100])).server_name == (
        b"a.example.com")
    with pytest.raises(HelloError, match=f"more than {MAX_RECORDS} records"):
        read_client_hello(split_records(hello, [1] * (MAX_RECORDS + 1)))


@pytest.mark.parametrize(("data", "message"), [
    (b"GET / HTTP/1.1\r\n\r\n", "not a TLS handshake record"),
    (b"\x16\x03\x01\x00\x00", "a handshake record of 0 bytes"),
    (b"\x16\x03\x01\x48\x01", "a handshake record of 18433 bytes"),
    (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "not a ClientHello"),
    (b"\x16\x03\x01\x00\x04\x01\x00\x40\x01", f"a ClientHello of {MAX_HELLO + 1} bytes"),
    (b"\x16\x03\x01\x00\x06\x01\x00\x00\x02\x03\x03", "ends inside its version and random"),
])
def test_what_is_not_a_client_hello(data: bytes, message: str) -> None:
    """Plain text, empty or oversized records and messages, truncation: HelloError."""
    with pytest.raises(HelloError, match=message):
        read_client_hello(data)


def server_name_extension(name: bytes) -> bytes:
    """A server_name extension carrying one host name."""
    entry = b"\x00" + struct.pack("!H", len(name)) + name
    return struct.pack("!HHH", 0, len(entry) + 2, len(entry)) + entry


def test_a_server_name_extension_twice_or_empty_is_malformed() -> None:
    """Duplicate extensions and an empty host name are refused, not guessed at."""
    named, unnamed = client_hello("a.example.com")[9:], client_hello(None)[9:]
    with pytest.raises(HelloError, match="extension 0 twice"):
        read_client_hello(frame(with_extension(named, server_name_extension(b"x"))))
    with pytest.raises(HelloError, match="an empty host name"):
        read_client_hello(frame(with_extension(unnamed, server_name_extension(b""))))
    added = read_client_hello(frame(with_extension(unnamed, server_name_extension(b"x.y"))))
    assert isinstance(added, ClientHello) and added.server_name == b"x.y"


def with_extension(body: bytes, extension: bytes) -> bytes:
    """``body`` (a ClientHello body) with ``extension`` appended to its extensions."""
    at = 2 + 32
    at += 1 + body[at]
    at += 2 + struct.unpack("!H", body[at:at + 2])[0]
    at += 1 + body[at]
    length = struct.unpack("!H", body[at:at + 2])[0]
    return body[:at] + struct.pack("!H", length + len(extension)) + body[at + 2:] + extension


def frame(body: bytes) -> bytes:
    message = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(message)) + message


@given(st.binary(max_size=600))
def test_any_bytes_give_an_answer_or_hello_error(data: bytes) -> None:
    """Whatever a client sends, the reader answers or raises HelloError, nothing else."""
    try:
        found = read_client_hello(data)
    except HelloError:
        return
    assert isinstance(found, (ClientHello, Incomplete))
    if isinstance(found, Incomplete):
        assert found.need > len(data)


@given(st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=8))
def test_damaged_real_hellos_never_crash(at: int, junk: bytes) -> None:
    """A real ClientHello with bytes overwritten anywhere: an answer or HelloError."""
    hello = bytearray(client_hello("a.example.com"))
    at %= len(hello)
    hello[at:at + len(junk)] = junk
    try:
        read_client_hello(bytes(hello))
    except HelloError:
        pass
