"""
Tests of ``superd.config.tlscontext``: what each ``tls_profile`` (and
``redirect_tls_profile``) lets a peer negotiate -- TLS versions and TLS 1.2
suites -- shown by in-memory handshakes against a client (or server) that
offers exactly one version and one suite.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest
from OpenSSL import SSL
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory

from superd.config.model import TLSSettings, UpstreamTLS
from superd.config.tlscontext import TLSSetupError, client_options, server_context
from tests.certs import PKI, Issued

_PROTOCOLS = {"1.0": SSL.TLS1_VERSION, "1.1": SSL.TLS1_1_VERSION,
              "1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}


@pytest.fixture(scope="module")
def rsa_server(pki: PKI) -> Issued:
    """An RSA certificate for localhost: static-RSA suites need one."""
    return pki.issue("rsa-localhost", ["localhost"], rsa_key=True)


def peer_context(version: str, suite: Optional[str], rsa_server: Optional[Issued] = None,
                 ) -> SSL.Context:
    """A context that speaks only ``version`` and (below 1.3) only ``suite``."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(_PROTOCOLS[version])
    context.set_max_proto_version(_PROTOCOLS[version])
    if suite is not None:
        context.set_cipher_list(f"{suite}:@SECLEVEL=0".encode())
    if rsa_server is not None:
        context.use_certificate_chain_file(str(rsa_server.cert_path))
        context.use_privatekey_file(str(rsa_server.key_path))
    return context


def handshake(client: SSL.Connection, server: SSL.Connection) -> Optional[tuple[str, str]]:
    """Run a memory-BIO handshake; (version, suite), or None if it failed."""
    client.set_connect_state()
    server.set_accept_state()
    for _ in range(20):
        for side, other in ((client, server), (server, client)):
            try:
                side.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error:
                return None
            try:
                data = side.bio_read(65536)
            except SSL.WantReadError:
                continue
            other.bio_write(data)
        try:
            client.do_handshake()
            server.do_handshake()
        except (SSL.WantReadError, SSL.Error):
            continue
        return client.get_protocol_version_name(), client.get_cipher_name()
    return None


def served(rsa_server: Issued, version: str, suite: Optional[str] = None,
           **settings: Any) -> Optional[tuple[str, str]]:
    """What a client offering ``version``/``suite`` negotiates with superd's RSA service."""
    context = server_context(TLSSettings(cert_pem=rsa_server.cert_pem,
                                         key_pem=rsa_server.key_pem, **settings))
    client = SSL.Connection(peer_context(version, suite), None)
    return handshake(client, SSL.Connection(context, None))


def upstream(pki: PKI, rsa_server: Issued, profile: str, version: str,
             suite: Optional[str] = None) -> Optional[tuple[str, str]]:
    """What superd's redirect client negotiates with an upstream offering only that."""
    creator = client_options(UpstreamTLS("localhost", pki.ca_pem, profile))
    protocol = TLSMemoryBIOFactory(creator, True, Factory.forProtocol(Protocol))
    client = creator.clientConnectionForTLS(protocol.buildProtocol(None))
    server = SSL.Connection(peer_context(version, suite, rsa_server), None)
    return handshake(client, server)


@pytest.mark.parametrize(("version", "suite", "agreed"), [
    ("1.3", None, True),
    ("1.2", "ECDHE-RSA-AES128-GCM-SHA256", True),
    ("1.2", "ECDHE-RSA-CHACHA20-POLY1305", True),
    ("1.2", "AES128-SHA", False),             # static RSA, CBC
    ("1.2", "AES128-GCM-SHA256", False),      # static RSA
    ("1.2", "ECDHE-RSA-AES128-SHA256", False),  # CBC
    ("1.1", "ECDHE-RSA-AES128-SHA", False),
    ("1.0", "ECDHE-RSA-AES128-SHA", False),
])
def test_intermediate_by_default(rsa_server: Issued, version: str, suite: Optional[str],
                                 agreed: bool) -> None:
    """The default: TLS 1.3, and TLS 1.2 with forward-secret AEAD suites only."""
    assert (served(rsa_server, version, suite) is not None) is agreed


@pytest.mark.parametrize(("version", "suite", "agreed"), [
    ("1.3", None, True),
    ("1.2", "ECDHE-RSA-AES128-GCM-SHA256", False),
])
def test_modern_is_tls13_only(rsa_server: Issued, version: str, suite: Optional[str],
                              agreed: bool) -> None:
    """tls_profile = modern: nothing below TLS 1.3."""
    result = served(rsa_server, version, suite, profile="modern", min_version="1.3")
    assert (result is not None) is agreed


@pytest.mark.parametrize(("version", "suite"), [
    ("1.3", None), ("1.2", "AES128-SHA"), ("1.2", "ECDHE-RSA-AES256-SHA384"),
    ("1.1", "ECDHE-RSA-AES128-SHA"), ("1.0", "AES256-SHA")])
def test_old_serves_legacy_clients(rsa_server: Issued, version: str, suite: Optional[str]) -> None:
    """tls_profile = old: TLS 1.0 and 1.1, CBC and static-RSA suites."""
    assert served(rsa_server, version, suite, profile="old", min_version="1.0") is not None


def test_explicit_ciphers_win(rsa_server: Issued) -> None:
    """tls_ciphers replaces the profile's list; one that selects nothing is refused."""
    only = "ECDHE-RSA-AES256-GCM-SHA384"
    assert served(rsa_server, "1.2", only, ciphers=only) == ("TLSv1.2", only)
    assert served(rsa_server, "1.2", "ECDHE-RSA-AES128-GCM-SHA256", ciphers=only) is None
    with pytest.raises(TLSSetupError, match="no cipher matches 'NOPE'"):
        served(rsa_server, "1.2", only, ciphers="NOPE")


@pytest.mark.parametrize(("profile", "version", "suite", "agreed"), [
    ("intermediate", "1.3", None, True),
    ("intermediate", "1.2", "ECDHE-RSA-AES128-GCM-SHA256", True),
    ("intermediate", "1.2", "AES128-SHA", False),
    ("intermediate", "1.0", "AES128-SHA", False),
    ("old", "1.2", "AES128-SHA", True),
    ("old", "1.0", "AES128-SHA", True),
    ("modern", "1.3", None, True),
    ("modern", "1.2", "ECDHE-RSA-AES128-GCM-SHA256", False),
])
def test_upstream_profiles(pki: PKI, rsa_server: Issued, profile: str, version: str,
                           suite: Optional[str], agreed: bool) -> None:
    """A redirect upstream is offered what redirect_tls_profile says."""
    assert (upstream(pki, rsa_server, profile, version, suite) is not None) is agreed
