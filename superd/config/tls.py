"""
The ``tls_*`` and ``redirect_tls*`` attributes, checked at load.

Pure apart from the injected ``read_file``: the PEM files are read here, so
a missing file, a key that does not fit its certificate, a cipher string
that selects nothing or a ``tls_min_version``/``tls_ciphers`` that contradicts
``tls_profile`` is a configuration error with the file and line of the
attribute to fix -- at start and on every reload -- never a failure at the
first connection.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Tuple

from cryptography import x509
from cryptography.x509.oid import NameOID

from superd.config.model import TLSSettings, UpstreamTLS
from superd.config.tlscontext import TLSSetupError, load_certificates, server_context
from superd.config.tlsprofile import DEFAULT_PROFILE, PROFILES, VERSIONS

__all__ = ["ErrorReporter", "tls_settings", "upstream_tls"]

#: ``error(attribute, message)`` records a configuration problem.
ErrorReporter = Callable[[str, str], None]
ReadFile = Callable[[str], str]

_TLS_NAMES = ("tls_cert", "tls_key", "tls_profile", "tls_min_version", "tls_ciphers",
              "tls_client_ca", "tls_verify_client", "tls_client_names",
              "tls_handshake_timeout", "tls_sni")


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


def _min_version(values: Mapping[str, Any], error: ErrorReporter) -> Optional[str]:
    """``tls_min_version`` if it fits ``tls_profile``, else the profile's floor."""
    profile = PROFILES[values.get("tls_profile", DEFAULT_PROFILE)]
    written: Optional[str] = values.get("tls_min_version")
    if written is None:
        return profile.min_version
    if profile.ciphers is None and written != profile.min_version:
        error("tls_min_version", f"tls_profile = {profile.name} offers TLS "
                                 f"{profile.min_version} only, not {written}")
        return None
    if VERSIONS.index(written) < VERSIONS.index("1.2") and not profile.legacy_security:
        error("tls_min_version", f"TLS {written} needs tls_profile = old")
        return None
    return written


def _ciphers_apply(values: Mapping[str, Any], min_version: str, error: ErrorReporter) -> bool:
    """False (with the error) when ``tls_ciphers`` chooses suites nothing offers."""
    if "tls_ciphers" not in values:
        return True
    profile = values.get("tls_profile", DEFAULT_PROFILE)
    if PROFILES[profile].ciphers is None:
        offers = f"tls_profile = {profile}"
    elif min_version == "1.3":
        offers = "tls_min_version = 1.3"
    else:
        return True
    error("tls_ciphers", f"tls_ciphers chooses TLS 1.2 suites, which {offers} does not offer")
    return False


def _certificate_names(cert_pem: bytes) -> Tuple[str, ...]:
    """The DNS names of the leaf certificate (its subjectAltNames, else its CN)."""
    leaf = load_certificates(cert_pem, "tls_cert")[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(name.lower() for name in names)


def _covered(name: str, certified: Tuple[str, ...]) -> bool:
    if name in certified:
        return True
    parent = name.split(".", 1)[1] if "." in name else ""
    return not name.startswith("*.") and f"*.{parent}" in certified


def _warn_uncovered(settings: TLSSettings, warn: Optional[ErrorReporter]) -> None:
    if warn is None or not settings.sni:
        return
    certified = _certificate_names(settings.cert_pem)
    for name in settings.sni:
        if not _covered(name, certified):
            shown = ", ".join(certified) or "no DNS name"
            warn("tls_sni", f"the certificate in tls_cert is not for {name} (it names"
                            f" {shown}): clients that check names will refuse it")


def tls_settings(values: Mapping[str, Any], read_file: ReadFile, error: ErrorReporter,
                 warn: Optional[ErrorReporter] = None) -> Optional[TLSSettings]:
    """The service's TLS termination, or None if it has no ``tls_*`` attribute;
    ``warn`` hears of ``tls_sni`` names its certificate is not for."""
    if not _pair(values, error):
        return None
    min_version = _min_version(values, error)
    if min_version is None or not _ciphers_apply(values, min_version, error):
        return None
    names: Tuple[str, ...] = tuple(values.get("tls_sni", ()))
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        error("tls_sni", f"{twice[0]} is listed twice")
        return None
    pems = {name: _read_pem(values, name, read_file, error)
            for name in ("tls_cert", "tls_key", "tls_client_ca")}
    cert, key = pems["tls_cert"], pems["tls_key"]
    if cert is None or key is None or ("tls_client_ca" in values and pems["tls_client_ca"] is None):
        return None
    settings = TLSSettings(
        cert_pem=cert, key_pem=key,
        profile=values.get("tls_profile", DEFAULT_PROFILE), min_version=min_version,
        ciphers=values.get("tls_ciphers"), client_ca_pem=pems["tls_client_ca"],
        verify_client=values.get("tls_verify_client", "none"),
        client_names=tuple(values.get("tls_client_names", ())),
        handshake_timeout=values.get("tls_handshake_timeout", 10.0),
        cert_path=values["tls_cert"], key_path=values["tls_key"],
        client_ca_path=values.get("tls_client_ca"), sni=names,
    )
    try:
        server_context(settings)
    except TLSSetupError as e:
        error(e.attribute, str(e))
        return None
    _warn_uncovered(settings, warn)
    return settings


def upstream_tls(values: Mapping[str, Any], read_file: ReadFile,
                 error: ErrorReporter) -> Optional[UpstreamTLS]:
    """``redirect_tls = yes`` and its name and CA, or None."""
    if not values.get("redirect_tls", False):
        for attribute in ("redirect_tls_name", "redirect_tls_ca", "redirect_tls_profile"):
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
    return UpstreamTLS(name=name, ca_pem=ca,
                       profile=values.get("redirect_tls_profile", DEFAULT_PROFILE))
