"""Tests for ``superd.config.conflicts``: duplicate listeners are errors naming both."""

from __future__ import annotations

from tests.config.fakes import errors_of, load_text

F = "/etc/superd/test.conf"


def _echo(name: str = "echo", **extra: str) -> str:
    attributes = {"type": "INTERNAL UNLISTED", "socket_type": "stream", "wait": "no",
                  "port": "7000", **extra}  # fmt: skip
    body = "".join(f" {k} = {v}\n" for k, v in attributes.items())
    return f"service {name}\n{{\n{body}}}\n"


def test_same_id_same_address_is_not_unique() -> None:
    """The same id twice on a clashing address is reported as not unique."""
    assert errors_of(_echo(bind="127.0.0.1") + _echo(bind="127.0.0.1")) == [
        f"{F}:15: service echo: bind: id echo is not unique: service echo ({F}:1) already "
        "listens on tcp port 7000 on 127.0.0.1"
    ]


def test_different_services_on_the_same_port_name_both() -> None:
    """Two services on one port and address: the later is an error naming the earlier."""
    text = _echo(bind="127.0.0.1") + _echo("daytime", bind="127.0.0.1")
    assert errors_of(text) == [
        f"{F}:15: service daytime: bind: tcp port 7000 on 127.0.0.1 is already used by "
        f"service echo ({F}:1)"
    ]


def test_wildcard_clashes_with_a_specific_address_of_its_family() -> None:
    """An unbound (dual-stack) service clashes with any bound one on the same port."""
    assert errors_of(_echo() + _echo("daytime", bind="::1")) == [
        f"{F}:14: service daytime: bind: tcp port 7000 on ::1 is already used by "
        f"service echo ({F}:1)"
    ]
    assert errors_of(_echo("daytime", bind="127.0.0.1") + _echo()) == [
        f"{F}:14: service echo: port: tcp port 7000 on * is already used by service daytime ({F}:1)"
    ]


def test_no_clash_across_families_protocols_addresses_or_port_zero() -> None:
    """Different bind addresses (the seed's two ssh), tcp vs udp, IPv4 vs v6only, port 0."""
    assert len(load_text(_echo(bind="127.0.0.1") + _echo(bind="127.0.0.2")).services) == 2
    udp = _echo("daytime", socket_type="dgram", wait="yes")
    assert len(load_text(_echo() + udp).services) == 2
    v4 = _echo(flags="IPv4")
    v6 = _echo("daytime", flags="IPv6", v6only="yes")
    assert len(load_text(v4 + v6).services) == 2
    assert len(load_text(_echo(port="0") + _echo("daytime", port="0")).services) == 2


def test_mapped_bind_clashes_with_its_ipv4_address() -> None:
    """``::ffff:127.0.0.1`` and ``127.0.0.1`` are the same listening address."""
    text = _echo(bind="127.0.0.1") + _echo("daytime", bind="::ffff:127.0.0.1")
    assert len(errors_of(text)) == 1
