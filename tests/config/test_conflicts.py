"""Tests for ``superd.config.conflicts``: duplicate listeners are errors naming both."""

from __future__ import annotations

import pytest

from superd.config.errors import ConfigError
from superd.config.load import load_configuration
from superd.config.model import Configuration
from tests.certs import PKI
from tests.config.fakes import errors_of, fake_environment, load_text

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


# -- TLS services sharing a port by server name (tls_sni) --------------------------

def _tls(name: str, pki: PKI, *, sni: str | None = None, **extra: str) -> str:
    tls = {"tls_cert": str(pki.server.cert_path), "tls_key": str(pki.server.key_path)}
    if sni is not None:
        tls["tls_sni"] = sni
    return _echo(name, bind="127.0.0.1", **tls, **extra)


def _load_tls(text: str, pki: PKI) -> Configuration:
    files = {F: text, str(pki.server.cert_path): pki.server.cert_pem.decode(),
             str(pki.server.key_path): pki.server.key_pem.decode()}
    return load_configuration(F, environment=fake_environment(files), isolate=False)


def _tls_errors(text: str, pki: PKI) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        _load_tls(text, pki)
    return [str(problem) for problem in raised.value.problems]


def test_tls_services_share_a_port_by_server_name(pki: PKI) -> None:
    """Distinct tls_sni names and one default (no tls_sni) share one address and port."""
    text = (_tls("echo", pki, sni="a.example.com *.b.example.com", id="a")
            + _tls("daytime", pki, sni="B.example.com.", id="b")
            + _tls("chargen", pki, id="fallback"))
    services = _load_tls(text, pki).services
    assert [s.extensions.tls.sni for s in services if s.extensions.tls] == [
        ("a.example.com", "*.b.example.com"), ("b.example.com",), ()]


def test_sharing_errors_say_which_rule(pki: PKI) -> None:
    """A name routed twice, two defaults, a plain service, another bind: one error each."""
    base = _tls("echo", pki, sni="a.example.com", id="a")
    assert _tls_errors(base + _tls("daytime", pki, sni="x.example.com a.example.com",
                                   id="b"), pki) == [
        f"{F}:22: service daytime: tls_sni: a.example.com on tcp port 7000 on 127.0.0.1 is"
        f" already routed to service echo ({F}:1)"]
    two_defaults = _tls("daytime", pki, id="b") + base + _tls("chargen", pki, id="c")
    assert _tls_errors(two_defaults, pki) == [
        f"{F}:30: service chargen: bind: tcp port 7000 on 127.0.0.1 already has a default"
        f" service, service daytime ({F}:1) (no tls_sni); give one of them tls_sni"]
    plain = base + _echo("daytime", bind="127.0.0.1")
    assert _tls_errors(plain, pki) == [
        f"{F}:19: service daytime: bind: tcp port 7000 on 127.0.0.1 is routed by tls_sni"
        f" with service echo ({F}:1): only TLS services may share a port"]
    wildcard = base + _tls("daytime", pki, id="b").replace("bind = 127.0.0.1", "flags = IPv4")
    assert _tls_errors(wildcard, pki) == [
        f"{F}:18: service daytime: port: tcp port 7000 on * overlaps 127.0.0.1 of service"
        f" echo ({F}:1): services sharing a TLS port need the same bind"]
    options = base + _tls("daytime", pki, sni="b.example.com", id="b", flags="KEEPALIVE")
    assert _tls_errors(options, pki) == [
        f"{F}:19: service daytime: bind: tcp port 7000 on 127.0.0.1 is shared with service"
        f" echo ({F}:1), whose v6only or flags (IPv4, IPv6, NODELAY, KEEPALIVE) differ"]


def test_server_name_routing_and_proxy_headers_do_not_mix(pki: PKI) -> None:
    """The router reads the ClientHello as the port's first bytes, so neither
    a routed service nor its port's default may expect a PROXY header first."""
    proxied = {"proxy_protocol": "v2", "proxy_from": "127.0.0.1"}
    routed = _tls("echo", pki, sni="a.example.com", id="a", **proxied)
    problems = _tls_errors(routed, pki)
    assert len(problems) == 1
    assert problems[0].startswith(f"{F}:")
    assert "service echo: proxy_protocol: tls_sni" in problems[0]
    default_proxied = _tls("echo", pki, sni="a.example.com", id="a") + _tls(
        "daytime", pki, id="b", **proxied)
    problems = _tls_errors(default_proxied, pki)
    assert len(problems) == 1
    assert "service daytime: proxy_protocol: tcp port 7000 on 127.0.0.1 is routed by" \
        " tls_sni" in problems[0]
    assert problems[0].endswith("service daytime expects a PROXY header before it")


def test_tls_without_server_names_does_not_share(pki: PKI) -> None:
    """Two TLS services without tls_sni clash as any two services do; so do equal ids."""
    assert _tls_errors(_tls("echo", pki) + _tls("daytime", pki), pki) == [
        f"{F}:17: service daytime: bind: tcp port 7000 on 127.0.0.1 is already used by"
        f" service echo ({F}:1)"]
    same_id = _tls("echo", pki, sni="a.example.com") + _tls("echo", pki, sni="b.example.com")
    assert _tls_errors(same_id, pki)[0].endswith(
        f"id echo is not unique: service echo ({F}:1) already listens on tcp port 7000 on"
        " 127.0.0.1")


@pytest.mark.parametrize(("value", "message"), [
    ("1.2.3.4", "expected a host name or *.domain, got '1.2.3.4': an IP address (clients"
                " never send one as a server name)"),
    ("bad_-.example..com", "expected a host name or *.domain, got 'bad_-.example..com':"
                           " 'bad_-' is not a host name label"),
    ("a..example.com", "got 'a..example.com': an empty label"),
    ("*.com", "'*.com': a wildcard needs a domain of two labels or more"),
    ("ex\u00e4mple.com", "'ex\u00e4mple.com' is not ASCII: write an internationalised name"
                         " in its xn-- form"),
    ("a." * 127 + "com", "expected a host name or *.domain, got"),
    ("a.example.com A.example.com", "a.example.com is listed twice"),
    ("*", "'*' is not a name: the port's default service is the one without tls_sni"),
])
def test_bad_server_names(pki: PKI, value: str, message: str) -> None:
    """tls_sni names are host names, bounded and checked at load, with FILE:LINE."""
    errors = _tls_errors(_tls("echo", pki, sni=value), pki)
    assert len(errors) == 1 and errors[0].startswith(f"{F}:10: service echo: tls_sni: ")
    assert message in errors[0]


def test_server_names_need_tls() -> None:
    """tls_sni alone is a TLS attribute without a certificate: an error."""
    assert errors_of(_echo(tls_sni="a.example.com")) == [
        f"{F}:7: service echo: tls_sni: missing tls_cert: TLS needs both tls_cert and tls_key",
        f"{F}:7: service echo: tls_sni: missing tls_key: TLS needs both tls_cert and tls_key"]
