"""
The names a client certificate carries, and the ``tls_client_names`` rule.

Pure: reads a ``cryptography`` certificate.  A certificate's names are its
subject common names and its subjectAltName entries (DNS names, IP
addresses, e-mail addresses, URIs).  A name is allowed when it equals one of
the configured names, ignoring case (DNS and e-mail names are case
insensitive; IP addresses are compared in their canonical text).
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["certificate_names", "matching_name"]

_SAN_TYPES = (x509.DNSName, x509.RFC822Name, x509.UniformResourceIdentifier)


def _san_names(cert: x509.Certificate) -> Iterable[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    names = [str(n) for t in _SAN_TYPES for n in san.get_values_for_type(t)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


def certificate_names(cert: x509.Certificate) -> Tuple[str, ...]:
    """Subject CNs, then subjectAltName entries, without repeats."""
    common = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(dict.fromkeys([*common, *_san_names(cert)]))


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.casefold()


def matching_name(names: Sequence[str], allowed: Sequence[str]) -> Optional[str]:
    """The first of ``names`` that ``allowed`` lists, or None."""
    wanted = {_canonical(a) for a in allowed}
    for name in names:
        if _canonical(name) in wanted:
            return name
    return None
