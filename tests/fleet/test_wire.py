"""Tests for ``superd.fleet.wire``: the shared-ban keys, values and messages."""

from __future__ import annotations

import math

from superd.fleet.wire import format_expiry, message_label, parse_expiry, parse_message


def test_messages_parse_to_host_expiry_and_service() -> None:
    """``host expiry service``: the service may hold spaces; IPv6 hosts are kept."""
    assert parse_message(b"2001:db8::1 inf trap") == ("2001:db8::1", math.inf, "trap")
    assert parse_message(b"10.0.0.1 inf superd bans") == ("10.0.0.1", math.inf, "superd bans")


def test_malformed_messages_are_none() -> None:
    """Non-canonical or non-IP hosts, bad expiries, short or non-ASCII messages."""
    for message in [b"not-an-ip 99999999999999 x", b"10.0.0.5 soon x", b"10.0.0.5 1",
                    b"\xff\xfe 1 2", b"::ffff:1.2.3.4 inf x"]:
        assert parse_message(message) is None, message


def test_expiry_round_trips_in_milliseconds() -> None:
    """Expiries are stored as integer milliseconds, or ``inf`` for ever."""
    assert format_expiry(math.inf) == "inf"
    assert format_expiry(1_800_000_000.5) == "1800000000500"
    assert parse_expiry("1800000000500") == 1_800_000_000.5
    assert parse_expiry("inf") == math.inf
    assert parse_expiry("-1") is None and parse_expiry("1" * 17) is None


def test_message_service_field_is_printable_and_never_empty() -> None:
    """A ban without a service (added by hand) or with odd characters still
    makes a message the other hosts parse."""
    assert message_label("") == "-"
    assert message_label("tr\nap\u00e9") == "tr_ap_"
    assert parse_message(f"10.0.0.1 inf {message_label('')}".encode()) == (
        "10.0.0.1", math.inf, "-")
