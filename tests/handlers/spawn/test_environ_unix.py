"""Tests for superd.handlers.spawn.environ with UNIX peers: UCSPI's UNIX protocol variables."""

from __future__ import annotations

from superd.core.session import Peer, UnixPeer
from superd.handlers.spawn.environ import stream_environment, unix_variables

PEER = UnixPeer.of(1000, 100, 4242, (100, 27), "/run/app.sock")


def test_unix_peer_gets_ucspi_unix_variables_and_no_address() -> None:
    """PROTO=UNIX, the socket's path and the peer's effective uid, gid and
    pid; no REMOTE_* or TCP* variable, which would claim an IP address."""
    env = stream_environment({"PATH": "/bin"}, PEER, Peer("/run/app.sock", 0))
    assert env == {"PATH": "/bin", "PROTO": "UNIX", "UNIXLOCALPATH": "/run/app.sock",
                   "UNIXREMOTEEUID": "1000", "UNIXREMOTEEGID": "100",
                   "UNIXREMOTEPID": "4242"}


def test_the_configured_env_cannot_spoof_the_peer() -> None:
    """The connection's variables come last, over same-named ``env`` values."""
    base = {"UNIXREMOTEEUID": "0", "PROTO": "TCP"}
    env = stream_environment(base, PEER, None)
    assert env["UNIXREMOTEEUID"] == "1000" and env["PROTO"] == "UNIX"
    assert unix_variables(PEER)["UNIXREMOTEPID"] == "4242"
