"""
pyOpenSSL contexts built from validated TLS settings.

``server_context`` is used twice: at load, to prove the certificate, key,
CA and cipher string work together (any error becomes a configuration
error), and when the service is assembled.  Twisted's ``CertificateOptions``
does the work; superd adds the client-verification mode, which
``CertificateOptions`` cannot express as "optional", and sets the cipher
list of ``tls_profile`` (``superd.config.tlsprofile``) on the context
itself, for the server and for ``redirect_tls`` upstreams alike.
"""

from __future__ import annotations

from typing import Any, List, Optional

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from zope.interface import implementer

from superd.config.model import TLSSettings, UpstreamTLS
from superd.config.tlsprofile import PROFILES, cipher_string
from superd.core import twistedprivate

__all__ = [
    "ServerConnectionCreator",
    "TLSSetupError",
    "error_text",
    "client_options",
    "load_certificates",
    "server_context",
]

_VERSIONS = {"1.0": ssl.TLSVersion.TLSv1_0, "1.1": ssl.TLSVersion.TLSv1_1,
             "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_VERIFY = {
    "none": SSL.VERIFY_NONE,
    "optional": SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE,
    "require": SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT | SSL.VERIFY_CLIENT_ONCE,
}


class TLSSetupError(ValueError):
    """A TLS setting cannot be used; ``attribute`` names the one to fix."""

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute


def load_certificates(pem: bytes, attribute: str) -> List[x509.Certificate]:
    """Every certificate in a PEM text, in order; at least one."""
    try:
        found = x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            raise TLSSetupError(attribute, "no PEM certificate in the file") from None
        raise TLSSetupError(attribute, f"unreadable certificate: {e}") from None
    return found


def _private_key(pem: bytes) -> Any:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise TLSSetupError("tls_key", f"unreadable private key: {e}") from None


def _trust(pem: bytes, attribute: str) -> Any:
    cas = load_certificates(pem, attribute)
    return ssl.trustRootFromCertificates(
        [ssl.Certificate(crypto.X509.from_cryptography(c)) for c in cas])


def error_text(error: BaseException) -> str:
    """A readable one-line reason for an OpenSSL (or other) error."""
    args = error.args[0] if error.args else None
    if isinstance(args, list) and args and isinstance(args[0], tuple):
        return "; ".join(str(item[-1]) for item in args)
    return str(error) or type(error).__name__


def _version_floor(min_version: str) -> dict[str, ssl.TLSVersion]:
    """CertificateOptions' keyword for the oldest version offered (Twisted's
    own floor is TLS 1.2: going below it is spelled "insecurely")."""
    version = _VERSIONS[min_version]
    if version < ssl.TLSVersion.TLSv1_2:
        return {"insecurelyLowerMinimumTo": version}
    return {"raiseMinimumTo": version}


def _set_ciphers(context: SSL.Context, profile: str, ciphers: Optional[str]) -> None:
    """
    The TLS 1.2 cipher list of ``profile`` (or ``ciphers``), set on the
    context itself: Twisted's ``AcceptableCiphers`` expands a string into
    suite names, which drops an ``@SECLEVEL`` directive.
    """
    text = cipher_string(profile, ciphers)
    if text is None:
        return  # TLS 1.3 only: its suites are not chosen by this list
    try:  # OpenSSL itself says whether the string selects anything
        context.set_cipher_list(text.encode("ascii", "replace"))
    except SSL.Error:
        raise TLSSetupError("tls_ciphers", f"no cipher matches {ciphers!r}") from None


def _options(settings: TLSSettings) -> ssl.CertificateOptions:
    # Any: Twisted's hints say pyOpenSSL X509, which pyOpenSSL 26 deprecates
    # in favour of the cryptography objects its Context takes directly.
    chain: List[Any] = list(load_certificates(settings.cert_pem, "tls_cert"))
    trust = None
    if settings.verify_client != "none":
        if settings.client_ca_pem is None:
            raise TLSSetupError("tls_verify_client",
                                f"tls_verify_client = {settings.verify_client} needs tls_client_ca")
        trust = _trust(settings.client_ca_pem, "tls_client_ca")
    return ssl.CertificateOptions(
        privateKey=_private_key(settings.key_pem), certificate=chain[0],
        extraCertChain=chain[1:], trustRoot=trust, **_version_floor(settings.min_version),
    )


def server_context(settings: TLSSettings) -> SSL.Context:
    """A server context for ``settings``; raises ``TLSSetupError``."""
    if settings.client_names and settings.verify_client == "none":
        raise TLSSetupError("tls_client_names",
                            "tls_client_names needs tls_verify_client = require or optional")
    options = _options(settings)
    try:
        context = options.getContext()
    except SSL.Error as e:
        message = f"key does not fit the certificate: {error_text(e)}"
        raise TLSSetupError("tls_key", message) from None
    _set_ciphers(context, settings.profile, settings.ciphers)
    # CertificateOptions knows "required" or "off"; "optional" asks for a
    # certificate, verifies one if sent, and lets clients without one in.
    context.set_verify(_VERIFY[settings.verify_client])
    return context


@implementer(IOpenSSLServerConnectionCreator)
class ServerConnectionCreator:
    """
    Makes each server ``SSL.Connection`` from one shared context, with the
    Twisted protocol as its app data (for logging from OpenSSL callbacks).
    """

    def __init__(self, context: SSL.Context) -> None:
        self.context = context

    def serverConnectionForTLS(self, protocol: object) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        connection.set_app_data(protocol)
        return connection


def client_options(upstream: UpstreamTLS) -> IOpenSSLClientConnectionCreator:
    """
    Client TLS for a redirect upstream: its certificate must name
    ``upstream.name``; the versions and TLS 1.2 suites offered are those of
    ``redirect_tls_profile``.  What ``optionsForClientTLS`` builds, with the
    context's cipher list set as the server side sets it.
    """
    if upstream.ca_pem is not None:
        trust = _trust(upstream.ca_pem, "redirect_tls_ca")
    else:
        trust = ssl.platformTrust()
    profile = PROFILES[upstream.profile]
    options = ssl.CertificateOptions(trustRoot=trust, **_version_floor(profile.min_version))
    _set_ciphers(options.getContext(), profile.name, None)
    return twistedprivate.client_connection_creator(options, upstream.name)
