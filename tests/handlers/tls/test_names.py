"""Tests of ``superd.handlers.tls.names``: which names a certificate carries, and matching."""

from __future__ import annotations

from cryptography import x509

from superd.handlers.tls.names import certificate_names, matching_name
from tests.certs import PKI


def test_names_are_cn_then_san(pki: PKI) -> None:
    """The server certificate names its CN, then DNS and IP subjectAltNames, once each."""
    cert = x509.load_pem_x509_certificate(pki.server.cert_pem)
    assert certificate_names(cert) == ("localhost", "127.0.0.1")
    client = x509.load_pem_x509_certificate(pki.client.cert_pem)
    assert certificate_names(client) == ("client1", "client1@example.org")


def test_matching_ignores_case_and_ip_spelling() -> None:
    """DNS names match case-insensitively; IPv6 addresses match in any spelling."""
    assert matching_name(["Client1"], ["client1"]) == "Client1"
    assert matching_name(["2001:db8::1"], ["2001:0db8:0:0::1"]) == "2001:db8::1"
    assert matching_name(["client2"], ["client1", "admin"]) is None
