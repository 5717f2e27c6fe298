"""
``redirect_tls = yes``: the relay speaks TLS to its upstream (superd's own
TLS echo with a certificate for ``localhost``) and verifies the upstream's
certificate name with service_identity; a name mismatch relays nothing.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from tests.integration.harness import Superd
from tests.integration.test_redirect import recv_all, relay_block
from tests.integration.test_tls import tls_echo
from tests.tls.certs import make_pki


def test_relay_to_tls_upstream(superd_factory: Callable[..., Superd],
                               conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """Plain client -> relay -> TLS upstream verified as localhost; a wrong name fails."""
    pki = make_pki(tmp_path)
    upstream = superd_factory(conf_dir(echo=tls_echo(pki)))
    port = upstream.port("techo")
    good = relay_block(port, extra=f"\tredirect_tls = yes\n\tredirect_tls_name = localhost\n"
                                    f"\tredirect_tls_ca = {pki.ca_path}\n")
    bad = relay_block(port, name="badname", extra=(
        f"\tredirect_tls = yes\n\tredirect_tls_name = not-localhost.example\n"
        f"\tredirect_tls_ca = {pki.ca_path}\n"))
    relay = superd_factory(conf_dir(good=good, bad=bad))
    with socket.create_connection(("127.0.0.1", relay.port("relay")), timeout=10) as sock:
        sock.sendall(b"through tls\n")
        got = b""
        while len(got) < 12:
            chunk = sock.recv(100)
            if not chunk:
                break
            got += chunk
    assert got == b"through tls\n"
    with socket.create_connection(("127.0.0.1", relay.port("badname")), timeout=10) as sock:
        sock.settimeout(10)
        sock.sendall(b"secret\n")
        assert recv_all(sock) == b""
    # The relay refused the upstream's certificate: the upstream saw a failed handshake.
    upstream.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("FAIL: techo tls"))
    starts = [x for x in upstream.xinetd_lines() if x.startswith("START: techo")]
    assert len(starts) == 1
