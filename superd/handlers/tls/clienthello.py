"""
The server name a TLS client asks for, read from the first bytes it sends.

Pure.  ``read_client_hello(data)`` parses the TLS records a connection
starts with (RFC 8446 section 5.1; the ClientHello may span several
handshake records, at most ``MAX_RECORDS``) up to the end of the ClientHello
(section 4.1.2) and returns its ``server_name`` extension's host name (RFC
6066 section 3), or, while bytes are missing, how many there must be before
it is worth asking again.  Anything that is not a well-formed ClientHello
raises ``HelloError``; a ClientHello longer than ``MAX_HELLO`` bytes is one.

Written here because neither OpenSSL (through pyOpenSSL) nor Twisted reads
a ClientHello without answering it, and superd must choose the service --
and run its access checks -- before anything is answered.
"""

from __future__ import annotations

import struct
from typing import Optional

import attrs

__all__ = ["MAX_HELLO", "MAX_RECORDS", "ClientHello", "HelloError", "Incomplete",
           "read_client_hello"]

#: The largest ClientHello read (large post-quantum key shares take about 2 KiB).
MAX_HELLO = 16 * 1024
#: The most records a ClientHello may be split into (clients use one).
MAX_RECORDS = 16

_HANDSHAKE = 22
_CLIENT_HELLO = 1
_SERVER_NAME = 0
_HOST_NAME = 0
_RECORD_HEADER = 5
_EXTENSION = struct.Struct("!HH")
_MAX_RECORD = 1 << 14


class HelloError(ValueError):
    """The bytes are not a well-formed TLS ClientHello."""


@attrs.frozen
class Incomplete:
    """More bytes are needed: at least ``need`` in all."""

    need: int


@attrs.frozen
class ClientHello:
    """What routing needs from a ClientHello."""

    #: The ``server_name`` host name as sent (not yet checked), or None.
    server_name: Optional[bytes]
    #: The record layer's version bytes, for an alert the client will read.
    record_version: bytes
    #: How many bytes the ClientHello's records took.
    size: int


class _Reader:
    """Bounds-checked reads from one ClientHello body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, count: int, what: str) -> bytes:
        if self.at + count > len(self.data):
            raise HelloError(f"ClientHello ends inside its {what}")
        chunk = self.data[self.at:self.at + count]
        self.at += count
        return chunk

    def number(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, size: int, what: str) -> bytes:
        return self.take(self.number(size, what), what)

    @property
    def left(self) -> int:
        return len(self.data) - self.at


def _handshake_bytes(data: bytes) -> tuple[bytes, bytes, int] | Incomplete:
    """The ClientHello message (header and body), the first record's version
    and the bytes its records took; ``Incomplete`` until every record has
    arrived."""
    message, at, version = b"", 0, b""
    for _ in range(MAX_RECORDS):
        if len(data) < at + _RECORD_HEADER:
            return Incomplete(at + _RECORD_HEADER)
        kind, major, length = data[at], data[at + 1], int.from_bytes(data[at + 3:at + 5], "big")
        if kind != _HANDSHAKE or major != 3:
            raise HelloError("not a TLS handshake record")
        if length == 0 or length > _MAX_RECORD:
            raise HelloError(f"a handshake record of {length} bytes")
        version = version or data[at + 1:at + 3]
        if len(data) < at + _RECORD_HEADER + length:
            return Incomplete(at + _RECORD_HEADER + length)
        message += data[at + _RECORD_HEADER:at + _RECORD_HEADER + length]
        at += _RECORD_HEADER + length
        if len(message) >= 4:
            if message[0] != _CLIENT_HELLO:
                raise HelloError("the first handshake message is not a ClientHello")
            size = int.from_bytes(message[1:4], "big")
            if size > MAX_HELLO:
                raise HelloError(f"a ClientHello of {size} bytes")
            if len(message) >= 4 + size:
                if len(message) > 4 + size:
                    raise HelloError("more after the ClientHello in its records")
                return message[4:], version, at
    raise HelloError(f"a ClientHello in more than {MAX_RECORDS} records")


def _server_name(extension: bytes) -> Optional[bytes]:
    names = _Reader(extension)
    entries = _Reader(names.vector(2, "server_name list"))
    if names.left:
        raise HelloError("bytes after the server_name list")
    found = None
    while entries.left:
        kind = entries.number(1, "server_name entry")
        name = entries.vector(2, "server_name entry")
        if kind == _HOST_NAME:
            if found is not None:
                raise HelloError("two host names in server_name")
            found = name
    if found is not None and not found:
        raise HelloError("an empty host name in server_name")
    return found


def _parse_body(body: bytes) -> Optional[bytes]:
    hello = _Reader(body)
    hello.take(2 + 32, "version and random")
    if len(hello.vector(1, "session id")) > 32:
        raise HelloError("a session id longer than 32 bytes")
    suites = hello.vector(2, "cipher suites")
    if not suites or len(suites) % 2:
        raise HelloError("a malformed cipher suite list")
    if not hello.vector(1, "compression methods"):
        raise HelloError("no compression method")
    if not hello.left:
        return None  # no extensions at all (SSL 3.0-era clients)
    extensions = hello.vector(2, "extensions")
    if hello.left:
        raise HelloError("bytes after the extensions")
    return _extensions(extensions)


def _extensions(data: bytes) -> Optional[bytes]:
    """The host name of the server_name extension among ``data``'s."""
    # Indexes rather than _Reader calls: a browser sends some twenty
    # extensions, and this runs for every connection to a shared port.
    at, end, seen, name = 0, len(data), set(), None
    while at < end:
        if at + 4 > end:
            raise HelloError("ClientHello ends inside its extensions")
        kind, length = _EXTENSION.unpack_from(data, at)
        at += 4
        if at + length > end:
            raise HelloError("ClientHello ends inside its extensions")
        if kind in seen:
            raise HelloError(f"extension {kind} twice")
        seen.add(kind)
        if kind == _SERVER_NAME:
            name = _server_name(data[at:at + length])
        at += length
    return name


def read_client_hello(data: bytes) -> ClientHello | Incomplete:
    """The ClientHello at the start of ``data``, or how many bytes it needs."""
    found = _handshake_bytes(data)
    if isinstance(found, Incomplete):
        return found
    body, version, size = found
    return ClientHello(_parse_body(body), version, size)
