"""Tests for ``superd.access.prefixes``: what a source counts and is banned as."""

from __future__ import annotations

import pytest

from superd.access.prefixes import network_length, source_key


@pytest.mark.parametrize("host, prefix, key", [
    ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
    ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
    ("2001:db8:1:2:3:4:5:6", 56, "2001:db8:1::/56"),
    ("2001:db8:1:2ff:3:4:5:6", 56, "2001:db8:1:200::/56"),
    ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"),
    ("::1", 64, "::/64"),
    ("192.0.2.1", 64, "192.0.2.1"),     # IPv4 sources are never widened
    ("not-an-address:", 64, "not-an-address:"),
])
def test_source_key(host: str, prefix: int, key: str) -> None:
    """IPv6 addresses become their canonical network; the rest stay as they are."""
    assert source_key(host, prefix) == key


def test_network_length() -> None:
    """Only network keys have a length."""
    assert network_length("2001:db8::/64") == 64
    assert network_length("2001:db8::1") is None
    assert network_length("x/y") is None
