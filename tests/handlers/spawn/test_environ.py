"""Tests for superd.handlers.spawn.environ: the child environment (as xinetd builds it)."""

from __future__ import annotations

from superd.core.origin import COMMAND_PROXY, ProxyOrigin
from superd.core.session import Peer
from superd.handlers.spawn.environ import (
    NO_ADDRESS,
    base_environment,
    datagram_environment,
    missing_passenv,
    stream_environment,
    wait_stream_environment,
)
from tests.handlers.spawn.helpers import external_service

STARTUP = {"PATH": "/bin", "HOME": "/root", "LANG": "C", "LISTEN_FDS": "1",
           "NOTIFY_SOCKET": "/run/systemd/notify"}


def test_no_passenv_passes_startup_environment() -> None:
    """Without passenv the child gets superd's whole startup environment,
    except the variables that describe superd to its supervisor."""
    env = base_environment(external_service(), STARTUP)
    assert env == {"PATH": "/bin", "HOME": "/root", "LANG": "C"}


def test_passenv_selects_only_listed() -> None:
    """passenv passes only the named variables that exist."""
    service = external_service(passenv=("LANG", "TZ"))
    assert base_environment(service, STARTUP) == {"LANG": "C"}
    assert missing_passenv(service, STARTUP) == ("TZ",)


def test_empty_passenv_means_empty_base() -> None:
    """``passenv =`` with no names gives an empty base environment."""
    assert base_environment(external_service(passenv=()), STARTUP) == {}


def test_passenv_may_name_supervisor_variables() -> None:
    """An explicit passenv is obeyed even for supervisor variables."""
    service = external_service(passenv=("LISTEN_FDS",))
    assert base_environment(service, STARTUP) == {"LISTEN_FDS": "1"}


def test_env_pairs_override_in_order() -> None:
    """env pairs are applied in order after the base and override it."""
    service = external_service(env=(("LANG", "fr_FR"), ("X", "1"), ("X", "2")))
    env = base_environment(service, STARTUP)
    assert env["LANG"] == "fr_FR" and env["X"] == "2"


def test_stream_environment_peer_variables() -> None:
    """A TCP connection adds REMOTE_* and the UCSPI variables."""
    env = stream_environment({"PATH": "/bin"}, Peer("192.0.2.7", 40000),
                             Peer("127.0.0.1", 2222))
    assert env == {
        "PATH": "/bin", "REMOTE_HOST": "192.0.2.7", "REMOTE_ADDR": "192.0.2.7",
        "REMOTE_PORT": "40000", "PROTO": "TCP", "TCPREMOTEIP": "192.0.2.7",
        "TCPREMOTEPORT": "40000", "TCPLOCALIP": "127.0.0.1",
        "TCPLOCALPORT": "2222",
    }


def test_peer_variables_cannot_be_spoofed_by_env() -> None:
    """A configured env REMOTE_HOST is overridden by the real peer."""
    base = base_environment(external_service(env=(("REMOTE_HOST", "evil"),)), {})
    env = stream_environment(base, Peer("::1", 5), None)
    assert env["REMOTE_HOST"] == "::1" and "TCPLOCALIP" not in env


def test_wait_stream_has_no_address() -> None:
    """wait=yes TCP: REMOTE_HOST is ``<no address>`` and no peer variables."""
    env = wait_stream_environment({"A": "b"})
    assert env == {"A": "b", "REMOTE_HOST": NO_ADDRESS}


def test_datagram_environment() -> None:
    """wait=yes UDP: REMOTE_* name the first datagram's source."""
    env = datagram_environment({}, Peer("127.0.0.2", 69))
    assert env == {"REMOTE_HOST": "127.0.0.2", "REMOTE_ADDR": "127.0.0.2",
                   "REMOTE_PORT": "69"}
    assert datagram_environment({}, None) == {"REMOTE_HOST": NO_ADDRESS}


def test_proxied_connection_environment() -> None:
    """Behind a load balancer: REMOTE_* and TCPREMOTE* name the client the
    header named; PROXY_* say the rest (the balancer, where the client
    connected, each TLV); a PROXY_* variable from elsewhere cannot pose as
    the header's."""
    origin = ProxyOrigin(2, COMMAND_PROXY, Peer("127.0.0.1", 40000), Peer("192.0.2.80", 443),
                         (("ALPN", "h2"), ("SSL", "1"), ("SSL_CN", "client.example")))
    base = {"PATH": "/bin", "PROXY_SSL_CN": "forged", "PROXY_AUTHORITY": "forged"}
    env = stream_environment(base, Peer("203.0.113.9", 5555), Peer("127.0.0.1", 8080), origin)
    assert env == {
        "PATH": "/bin", "REMOTE_HOST": "203.0.113.9", "REMOTE_ADDR": "203.0.113.9",
        "REMOTE_PORT": "5555", "PROTO": "TCP", "TCPREMOTEIP": "203.0.113.9",
        "TCPREMOTEPORT": "5555", "TCPLOCALIP": "127.0.0.1", "TCPLOCALPORT": "8080",
        "PROXY_VERSION": "2", "PROXY_COMMAND": "PROXY", "PROXY_ADDR": "127.0.0.1",
        "PROXY_PORT": "40000", "PROXY_DST_ADDR": "192.0.2.80", "PROXY_DST_PORT": "443",
        "PROXY_ALPN": "h2", "PROXY_SSL": "1", "PROXY_SSL_CN": "client.example",
    }


def test_unproxied_environment_has_no_proxy_variables() -> None:
    """Without a PROXY header nothing PROXY_* is added (nor removed)."""
    env = stream_environment({"PROXY_X": "mine"}, Peer("10.0.0.1", 1), None)
    assert env["PROXY_X"] == "mine"
    assert [name for name in env if name.startswith("PROXY_")] == ["PROXY_X"]


def test_the_ban_store_password_never_reaches_a_server() -> None:
    """superd's own secret is left out, with no passenv and even when passenv names it."""
    startup = {**STARTUP, "SUPERD_BAN_STORE_PASSWORD": "s3cret"}
    assert "SUPERD_BAN_STORE_PASSWORD" not in base_environment(external_service(), startup)
    service = external_service(passenv=("SUPERD_BAN_STORE_PASSWORD", "LANG"))
    assert base_environment(service, startup) == {"LANG": "C"}
