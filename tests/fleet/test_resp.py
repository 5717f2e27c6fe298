"""superd.fleet.resp: commands encode as RESP arrays; replies parse strictly and boundedly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superd.fleet.resp import ProtocolError, RedisError, RespParser, encode


def parse_all(data: bytes, **bounds: int) -> list[object]:
    parser = RespParser(**bounds)
    parser.feed(data)
    replies: list[object] = []
    while True:
        complete, reply = parser.next_reply()
        if not complete:
            return replies
        replies.append(reply)


def test_encode_command() -> None:
    """Every argument is a bulk string; ints and text are encoded as text."""
    assert encode("SET", b"k", 12) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"


def test_every_reply_type() -> None:
    """Simple, error, integer, bulk, nil and nested arrays decode to Python values."""
    data = (b"+OK\r\n-ERR no\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n"
            b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$0\r\n\r\n")
    assert parse_all(data) == [b"OK", RedisError("ERR no"), 42, b"abc", None, None,
                               [b"0", [b"a", b""]]]


def test_incomplete_reply_waits_for_more() -> None:
    """A reply split anywhere is returned once complete, and only once."""
    parser = RespParser()
    whole = b"*2\r\n$5\r\nhello\r\n:7\r\n"
    for i in range(len(whole) - 1):
        parser.feed(whole[i:i + 1])
        assert parser.next_reply() == (False, None)
    parser.feed(whole[-1:])
    assert parser.next_reply() == (True, [b"hello", 7])
    assert parser.next_reply() == (False, None)


@pytest.mark.parametrize("garbage", [
    b"HTTP/1.1 200 OK\r\n",          # not RESP at all
    b":12a\r\n",                     # bad integer
    b"$3\r\nabcd\r\n",               # bulk not terminated where it says
    b"$99999999\r\n",                # bulk too long
    b"*5000\r\n",                    # array too long
    b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",  # nested too deep
    b"+" + b"x" * 2000,              # line without end
])
def test_garbage_is_a_protocol_error(garbage: bytes) -> None:
    """Anything that is not bounded RESP raises ProtocolError (the caller drops the link)."""
    with pytest.raises(ProtocolError):
        parse_all(garbage)


def test_buffer_is_bounded() -> None:
    """A reply that never ends cannot grow the buffer past its bound."""
    parser = RespParser(max_buffer=1000)
    parser.feed(b"$900\r\n" + b"a" * 500)
    with pytest.raises(ProtocolError):
        parser.feed(b"a" * 600)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    """Random input gives replies, waits, or ProtocolError -- nothing else."""
    try:
        parse_all(data)
    except ProtocolError:
        pass
