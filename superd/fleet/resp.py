"""
RESP2, the Redis wire protocol: encode commands, parse replies strictly.

Pure functions, no I/O.  The parser is incremental (``RespParser.feed`` then
``next_reply``) and bounded: a bulk string longer than ``max_bulk``, an array
longer than ``max_items``, nesting deeper than ``MAX_DEPTH``, or more than
``max_buffer`` unparsed bytes is a ``ProtocolError``, as is any byte that is
not RESP -- a misbehaving or hostile server can make the connection drop,
never make superd's memory grow.
"""

from __future__ import annotations

from typing import Optional, Union

__all__ = ["ProtocolError", "RedisError", "Reply", "RespParser", "encode"]

#: What a reply decodes to: simple/bulk strings are bytes, errors are
#: RedisError values, nil is None, arrays are lists.
Reply = Union[bytes, int, None, "RedisError", list["Reply"]]

MAX_DEPTH = 4
MAX_LINE = 1024


class ProtocolError(Exception):
    """The server sent something that is not (bounded) RESP."""


class RedisError(Exception):
    """An error reply (``-ERR ...``): the command failed, the connection is fine."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RedisError) and other.args == self.args

    def __hash__(self) -> int:
        return hash(self.args)


def encode(*args: Union[bytes, str, int]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Incomplete(Exception):
    """Not enough bytes yet."""


class RespParser:
    """Incremental, bounded RESP2 reply parser."""

    # Defaults fit superd's replies (SCAN/MGET of at most 1,024 short keys);
    # a parse restarts from the reply's start when more bytes arrive, so the
    # bounds also bound that work.
    def __init__(self, max_bulk: int = 64 * 1024, max_items: int = 1024,
                 max_buffer: int = 256 * 1024) -> None:
        self._buffer = bytearray()
        #: Where the next reply starts: parsed bytes are dropped once per
        #: ``feed``, not once per reply (a burst of small replies would
        #: otherwise move the rest of the buffer once per reply).
        self._start = 0
        self._max_bulk = max_bulk
        self._max_items = max_items
        self._max_buffer = max_buffer

    def feed(self, data: bytes) -> None:
        """Add received bytes; raises ProtocolError past the buffer bound."""
        del self._buffer[:self._start]
        self._start = 0
        self._buffer += data
        if len(self._buffer) > self._max_buffer:
            raise ProtocolError(f"more than {self._max_buffer} bytes unparsed")

    def next_reply(self) -> tuple[bool, Reply]:
        """``(True, reply)`` for the next complete reply, ``(False, None)`` if none yet."""
        try:
            reply, end = self._parse(self._start, 0)
        except _Incomplete:
            return False, None
        self._start = end
        return True, reply

    def _line(self, start: int) -> tuple[bytes, int]:
        end = self._buffer.find(b"\r\n", start, start + MAX_LINE)
        if end < 0:
            if len(self._buffer) - start >= MAX_LINE:
                raise ProtocolError("line too long")
            raise _Incomplete()
        return bytes(self._buffer[start:end]), end + 2

    def _int(self, text: bytes) -> int:
        if not text or not (text.isdigit() or (text[:1] == b"-" and text[1:].isdigit())):
            raise ProtocolError(f"bad integer {text[:40]!r}")
        return int(text)

    def _parse(self, start: int, depth: int) -> tuple[Reply, int]:
        if start >= len(self._buffer):
            raise _Incomplete()
        kind = self._buffer[start:start + 1]
        line, after = self._line(start + 1)
        if kind == b"+":
            return line, after
        if kind == b"-":
            return RedisError(line.decode("utf-8", "replace")), after
        if kind == b":":
            return self._int(line), after
        if kind == b"$":
            return self._bulk(self._int(line), after)
        if kind == b"*":
            return self._array(self._int(line), after, depth)
        raise ProtocolError(f"unknown reply type {bytes(kind)!r}")

    def _bulk(self, length: int, start: int) -> tuple[Optional[bytes], int]:
        if length == -1:
            return None, start
        if not 0 <= length <= self._max_bulk:
            raise ProtocolError(f"bulk length {length} out of bounds")
        end = start + length
        if len(self._buffer) < end + 2:
            raise _Incomplete()
        if self._buffer[end:end + 2] != b"\r\n":
            raise ProtocolError("bulk string not terminated by CRLF")
        return bytes(self._buffer[start:end]), end + 2

    def _array(self, count: int, start: int, depth: int) -> tuple[Reply, int]:
        if count == -1:
            return None, start
        if not 0 <= count <= self._max_items or depth >= MAX_DEPTH:
            raise ProtocolError(f"array of {count} at depth {depth} out of bounds")
        items: list[Reply] = []
        for _ in range(count):
            item, start = self._parse(start, depth + 1)
            items.append(item)
        return items, start
