"""
The ``tls_*`` and ``redirect_tls*`` attributes, checked at load.

Pure apart from the injected ``read_file``: the PEM files are read here, so
a missing file, a key that does not fit its certificate or a cipher string
that selects nothing is a configuration error with the file and line of the
attribute to fix -- at start and on every reload -- never a failure at the
first connection.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from superd.config.model import TLSSettings, UpstreamTLS
from superd.config.tlscontext import TLSSetupError, load_certificates, server_context

__all__ = ["ErrorReporter", "tls_settings", "upstream_tls"]

#: ``error(attribute, message)`` records a configuration problem.
ErrorReporter = Callable[[str, str], None]
ReadFile = Callable[[str], str]

_TLS_NAMES = ("tls_cert", "tls_key", "tls_min_version", "tls_ciphers", "tls_client_ca",
              "tls_verify_client", "tls_client_names", "tls_handshake_timeout")


def _read_pem(values: Mapping[str, Any], attribute: str, read_file: ReadFile,
              error: ErrorReporter) -> Optional[bytes]:
    path = values.get(attribute)
    if path is None:
        return None
    try:
        return read_file(path).encode("utf-8", "surrogateescape")
    except OSError as e:
        error(attribute, f"cannot read {path}: {e.strerror or e}")
        return None


def _pair(values: Mapping[str, Any], error: ErrorReporter) -> bool:
    written = [name for name in _TLS_NAMES if name in values]
    if not written:
        return False
    for needed in ("tls_cert", "tls_key"):
        if needed not in values:
            error(written[0], f"missing {needed}: TLS needs both tls_cert and tls_key")
    return "tls_cert" in values and "tls_key" in values


def tls_settings(values: Mapping[str, Any], read_file: ReadFile,
                 error: ErrorReporter) -> Optional[TLSSettings]:
    """The service's TLS termination, or None if it has no ``tls_*`` attribute."""
    if not _pair(values, error):
        return None
    pems = {name: _read_pem(values, name, read_file, error)
            for name in ("tls_cert", "tls_key", "tls_client_ca")}
    cert, key = pems["tls_cert"], pems["tls_key"]
    if cert is None or key is None or ("tls_client_ca" in values and pems["tls_client_ca"] is None):
        return None
    settings = TLSSettings(
        cert_pem=cert, key_pem=key,
        min_version=values.get("tls_min_version", "1.2"),
        ciphers=values.get("tls_ciphers"), client_ca_pem=pems["tls_client_ca"],
        verify_client=values.get("tls_verify_client", "none"),
        client_names=tuple(values.get("tls_client_names", ())),
        handshake_timeout=values.get("tls_handshake_timeout", 10.0),
    )
    try:
        server_context(settings)
    except TLSSetupError as e:
        error(e.attribute, str(e))
        return None
    return settings


def upstream_tls(values: Mapping[str, Any], read_file: ReadFile,
                 error: ErrorReporter) -> Optional[UpstreamTLS]:
    """``redirect_tls = yes`` and its name and CA, or None."""
    if not values.get("redirect_tls", False):
        for attribute in ("redirect_tls_name", "redirect_tls_ca"):
            if attribute in values:
                error(attribute, f"{attribute} needs redirect_tls = yes")
        return None
    if "redirect" not in values:
        error("redirect_tls", "redirect_tls needs redirect = host port")
    name: Optional[str] = values.get("redirect_tls_name")
    if name is None:
        error("redirect_tls", "missing redirect_tls_name: the name the upstream "
                              "certificate must carry")
        return None
    ca = _read_pem(values, "redirect_tls_ca", read_file, error)
    if ca is not None:
        try:
            load_certificates(ca, "redirect_tls_ca")
        except TLSSetupError as e:
            error(e.attribute, str(e))
            return None
    elif "redirect_tls_ca" in values:
        return None
    return UpstreamTLS(name=name, ca_pem=ca)
