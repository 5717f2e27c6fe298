"""
Test certificates made on the fly with ``cryptography``: a CA, a server
certificate for ``localhost``/127.0.0.1, a client certificate signed by the
CA, a "wrong" client certificate signed by another CA, and more server
certificates from the CA on demand (``PKI.issue``).
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Optional, Sequence, Union

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Issued", "PKI", "make_pki"]


@attrs.frozen
class Issued:
    """One certificate and its key, as PEM, and where they were written."""

    cert_pem: bytes
    key_pem: bytes
    cert_path: Path
    key_path: Path


PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, key: PrivateKey, issuer: Optional[x509.Certificate],
           issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
           sans: Sequence[x509.GeneralName] = (), server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject))
               .issuer_name(issuer.subject if issuer else _name(subject))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@attrs.frozen
class PKI:
    """Everything the TLS tests need, written under one directory."""

    ca_path: Path
    ca_pem: bytes
    server: Issued
    client: Issued
    wrong_client: Issued
    directory: Path
    ca_cert: x509.Certificate = attrs.field(repr=False)
    ca_key: ec.EllipticCurvePrivateKey = attrs.field(repr=False)

    def issue(self, name: str, dns_names: Sequence[str] = (), *, rsa_key: bool = False,
              directory: Optional[Path] = None) -> Issued:
        """
        A server certificate signed by the CA, with subject CN ``dns_names[0]``
        (or ``name``) and those names as subjectAltNames, written as
        ``NAME.pem``/``NAME.key`` to ``directory`` (default: the PKI's);
        RSA 2048 with ``rsa_key`` (static-RSA suites need one), else P-256.
        """
        key: PrivateKey = rsa.generate_private_key(65537, 2048) if rsa_key else _key()
        names = list(dns_names) or [name]
        cert = _issue(names[0], key, self.ca_cert, self.ca_key, server=True,
                      sans=[x509.DNSName(n) for n in names])
        return _write(directory or self.directory, name, cert, key)


def _write(directory: Path, name: str, cert: x509.Certificate, key: PrivateKey) -> Issued:
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(_pem_key(key))
    return Issued(cert_pem, _pem_key(key), cert_path, key_path)


def make_pki(directory: Path, client_cn: str = "client1", ca_cn: str = "superd test CA") -> PKI:
    """A CA, a localhost server, a good and a wrong client, written to ``directory``."""
    ca_key, other_key = _key(), _key()
    ca = _issue(ca_cn, ca_key, None, ca_key, ca=True)
    other_ca = _issue("some other CA", other_key, None, other_key, ca=True)
    server_key, client_key, wrong_key = _key(), _key(), _key()
    server = _issue("localhost", server_key, ca, ca_key, server=True, sans=[
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = _issue(client_cn, client_key, ca, ca_key,
                    sans=[x509.RFC822Name(f"{client_cn}@example.org")])
    wrong = _issue(client_cn, wrong_key, other_ca, other_key)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    (directory / "ca.pem").write_bytes(ca_pem)
    return PKI(directory / "ca.pem", ca_pem, _write(directory, "server", server, server_key),
               _write(directory, "client", client, client_key),
               _write(directory, "wrong", wrong, wrong_key), directory, ca, ca_key)
