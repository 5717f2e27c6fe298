"""
Certificate renewal under the real daemon, without a reload: the files are
replaced as certbot does it (a new directory, then the symbolic link
``live`` renamed over the old one); new connections get the new certificate
(``openssl s_client`` and Python's ``ssl`` see its serial); a pair whose key
does not fit keeps the old certificate and logs an error naming the file;
fixing the files recovers.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from tests.certs import PKI, Issued, make_pki
from tests.integration.harness import Superd, require_program


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(directory)


class Renewals:
    """``live`` -> ``archive-N``: each renewal a new directory and a link swap."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.live = root / "live"
        self.count = 0

    def renew(self, cert: Issued, key: Issued) -> Path:
        self.count += 1
        archive = self.root / f"archive-{self.count}"
        archive.mkdir()
        (archive / "cert.pem").write_bytes(cert.cert_pem)
        (archive / "key.pem").write_bytes(key.key_pem)
        link = self.root / "live.new"
        link.symlink_to(archive.name)
        os.replace(link, self.live)  # atomic: no moment without a live/
        return archive


def serial_of(issued: Issued) -> int:
    return x509.load_pem_x509_certificate(issued.cert_pem).serial_number


def served_serial(port: int, pki: PKI) -> int:
    """The serial of the certificate Python's ssl is served (verified as localhost)."""
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def s_client_serial(port: int, pki: PKI) -> int:
    """The serial of the certificate ``openssl s_client`` is served."""
    command = [require_program("openssl"), "s_client", "-connect", f"127.0.0.1:{port}",
               "-servername", "localhost", "-CAfile", str(pki.ca_path),
               "-verify_return_error"]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=30, check=False)
    pem = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
                    done.stdout, re.S)
    assert pem is not None, done.stderr
    return x509.load_pem_x509_certificate(pem.group()).serial_number


def test_renewal_by_link_swap(superd_factory: Callable[..., Superd],
                              conf_dir: Callable[..., Path], pki: PKI,
                              tmp_path: Path) -> None:
    """Renewed: served at once; half-renewed (a key that does not fit): the old one
    kept and the error logged with the file; completed: the new one served."""
    first, second, third = (pki.issue(f"gen{n}", ["localhost"]) for n in (1, 2, 3))
    renewals = Renewals(tmp_path)
    renewals.renew(first, first)
    conf = conf_dir(echo=(
        f"service echo\n{{\n\tid = techo\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
        f"\twait = no\n\tport = 0\n\tbind = 127.0.0.1\n"
        f"\ttls_cert = {renewals.live}/cert.pem\n\ttls_key = {renewals.live}/key.pem\n}}\n"))
    superd = superd_factory(conf)
    port = superd.port("techo")
    assert served_serial(port, pki) == serial_of(first)

    renewals.renew(second, second)
    loaded = superd.wait_for_event(lambda e: e.get("event") == "tls_reloaded")
    assert loaded["serial"] == f"{serial_of(second):x}"
    assert served_serial(port, pki) == s_client_serial(port, pki) == serial_of(second)

    superd.allow_errors = True  # the half renewal below is an error, on purpose
    after = len(superd.events())
    archive = renewals.renew(third, second)  # the new certificate, the old key
    failed = superd.wait_for_event(lambda e: e.get("event") == "tls_reload_failed",
                                   after=after)
    assert (failed["attribute"], failed["file"]) == ("tls_key", f"{renewals.live}/key.pem")
    assert failed["reason"].startswith("key does not fit the certificate")
    assert served_serial(port, pki) == serial_of(second)

    after = len(superd.events())
    (archive / "key.new").write_bytes(third.key_pem)
    os.replace(archive / "key.new", archive / "key.pem")
    superd.wait_for_event(lambda e: e.get("event") == "tls_reloaded", after=after)
    assert served_serial(port, pki) == s_client_serial(port, pki) == serial_of(third)
    assert [e["event"] for e in superd.errors()] == ["tls_reload_failed"]
