"""Tests for ``superd.config.addrspec``: every only_from/no_access form xinetd accepts."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superd.config.addrspec import parse_address
from superd.config.model import AddressKind, AddressSpec


def _networks(text: str) -> list[str]:
    return [str(spec.network) for spec in parse_address(text)]


@pytest.mark.parametrize(
    ("text", "network", "implicit"),
    [
        ("127.0.0.1", "127.0.0.1/32", False),
        ("128.138.12.0", "128.138.12.0/24", True),
        ("192.168.0.0", "192.168.0.0/16", True),
        ("10.0.0.0", "10.0.0.0/8", True),
        ("10.0.1.0", "10.0.1.0/24", True),
        ("0.0.0.0", "0.0.0.0/0", True),
    ],
)
def test_ipv4_trailing_zero_wildcard(text: str, network: str, implicit: bool) -> None:
    """Trailing zero octets widen the mask, as xinetd does, and are flagged."""
    (spec,) = parse_address(text)
    assert (str(spec.network), spec.implicit_wildcard) == (network, implicit)


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("1.2.3.0/24", "1.2.3.0/24"),
        ("10.0.0.5/24", "10.0.0.0/24"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("fe80::/10", "fe80::/10"),
        ("::/0", "::/0"),
        ("::1/128", "::1/128"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
    ],
)
def test_cidr(text: str, network: str) -> None:
    """CIDR works for IPv4 and IPv6, including ::/0 and /128 (xinetd bugs fixed)."""
    (spec,) = parse_address(text)
    assert str(spec.network) == network
    assert not spec.implicit_wildcard


def test_ipv6_literal_is_exact_and_mapped_is_ipv4() -> None:
    """An IPv6 literal is one /128; a v4-mapped literal becomes the IPv4 address."""
    assert _networks("::1") == ["::1/128"]
    assert _networks("::") == ["::/128"]
    assert _networks("::ffff:10.1.2.3") == ["10.1.2.3/32"]


def test_factorized_yields_one_spec_per_element() -> None:
    """``128.138.{1,2,3}`` is three /24s; ``10.0.0.{5,1}`` is two /32s."""
    assert _networks("128.138.{1,2,3}") == ["128.138.1.0/24", "128.138.2.0/24", "128.138.3.0/24"]
    assert _networks("10.0.0.{5,1}") == ["10.0.0.5/32", "10.0.0.1/32"]
    assert _networks("10.{1}") == ["10.1.0.0/16"]
    assert {s.text for s in parse_address("10.0.{1,2}")} == {"10.0.{1,2}"}


def test_host_names_and_domains_are_lowercased() -> None:
    """Names become HOST specs and ``.domain`` becomes DOMAIN, case-folded."""
    assert parse_address("Host.Example.COM") == (
        AddressSpec("Host.Example.COM", AddressKind.HOST, name="host.example.com"),
    )
    assert parse_address(".Example.com") == (
        AddressSpec(".Example.com", AddressKind.DOMAIN, name="example.com"),
    )
    assert parse_address("localhost")[0].kind is AddressKind.HOST


def test_fully_qualified_names_drop_the_root_dot() -> None:
    """``host.example.com.`` and ``.example.com.`` name what the resolver
    returns (no trailing dot), so they can match."""
    assert parse_address("Host.Example.com.")[0].name == "host.example.com"
    assert parse_address(".example.com.")[0] == AddressSpec(
        ".example.com.", AddressKind.DOMAIN, name="example.com")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty address"),
        ("1.2.3", "'1.2.3': write all four numbers, or a prefix such as 1.2.3.0/24"),
        ("300.1.1.1", "'300.1.1.1': each IPv4 number must be 0-255"),
        ("1.2.3.4.5", "'1.2.3.4.5' is not a valid IPv4 address"),
        ("10.0.{1,}", "'10.0.{1,}': empty element inside {...}"),
        ("10.{1,2}.0", "'10.{1,2}.0': the {...} part must come last, as in 10.0.{1,2}"),
        ("{1,2}", "'{1,2}': expected an IPv4 prefix ending in '.' before '{'"),
        ("10,0", "'10,0' has a comma outside {...}; separate entries with spaces"),
        ("1.2.3.4/33", "'1.2.3.4/33' is not a valid network (ADDRESS/PREFIX)"),
        ("10/8", "'10/8': write all four numbers of the address before '/'"),
        ("fe80::1%eth0", "'fe80::1%eth0': scoped (%zone) addresses are not supported"),
        ("1.2.3.4.example", None),
        ("bad_host!", "'bad_host!' is not an address"),
        ("a..b", "'a..b' is not an address"),
    ],
)
def test_junk_raises_value_error_with_the_token(text: str, message: str | None) -> None:
    """Bad entries raise ValueError naming what was written."""
    if message is None:  # a name whose last label is not all digits is a host name
        assert parse_address(text)[0].kind is AddressKind.HOST
        return
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_address(text)


@given(st.text(max_size=60))
def test_random_text_raises_only_value_error(text: str) -> None:
    """Whatever the text, parse_address returns specs or raises ValueError."""
    try:
        specs = parse_address(text)
    except ValueError:
        return
    assert specs


@given(st.text(alphabet="0123456789.:/{},abcdef", max_size=40))
def test_address_like_text_raises_only_value_error(text: str) -> None:
    """Text made of address characters parses or raises ValueError, never worse."""
    try:
        specs = parse_address(text)
    except ValueError:
        return
    for spec in specs:
        if spec.network is not None:
            assert isinstance(spec.network, (ipaddress.IPv4Network, ipaddress.IPv6Network))


_octet_text = st.one_of(st.integers(0, 299).map(str), st.from_regex(r"\A0[0-9]{1,2}\Z"))


@given(st.lists(_octet_text, min_size=4, max_size=4), st.integers(0, 40))
def test_ipv4_cidr_agrees_with_ipaddress(octets: list[str], prefixlen: int) -> None:
    """An IPv4 ``ADDRESS/PREFIX`` means what ``ipaddress.ip_network(strict=False)``
    says, and is refused where it refuses (octet above 255, leading zero,
    prefix above 32), though superd computes it from the integers."""
    text = ".".join(octets) + f"/{prefixlen}"
    try:
        expected = ipaddress.ip_network(text, strict=False)
    except ValueError:
        with pytest.raises(ValueError, match=re.escape(repr(text))):
            parse_address(text)
        return
    (spec,) = parse_address(text)
    assert spec.network == expected
    assert str(spec.network) == str(expected)


@given(st.lists(st.integers(0, 255), min_size=4, max_size=4))
def test_ipv4_address_agrees_with_ipaddress(octets: list[int]) -> None:
    """A dotted quad is the network of its significant octets (xinetd's
    trailing-zero wildcard), the same value ``ipaddress`` builds from text."""
    significant = max((i + 1 for i, o in enumerate(octets) if o), default=0)
    text = ".".join(map(str, octets))
    (spec,) = parse_address(text)
    assert spec.network == ipaddress.ip_network(f"{text}/{8 * significant}")
    assert spec.implicit_wildcard is (significant < 4)


def test_ipv4_leading_zeros_read_as_decimal_outside_cidr() -> None:
    """A plain address reads ``010`` as ten, as before; only the CIDR form
    refuses leading zeros, as ``ipaddress`` does."""
    assert _networks("010.0.0.1") == ["10.0.0.1/32"]
    with pytest.raises(ValueError, match="is not a valid network"):
        parse_address("010.0.0.0/8")
