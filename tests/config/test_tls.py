"""
Tests of ``superd.config.tls``: the ``tls_*`` and ``redirect_tls*``
attributes checked at load, with every problem reported against the
attribute to fix.
"""

from __future__ import annotations

from typing import Any

import pytest

from superd.config.tls import tls_settings, upstream_tls
from tests.certs import PKI


def files(pki: PKI) -> dict[str, str]:
    return {str(pki.server.cert_path): pki.server.cert_pem.decode(),
            str(pki.server.key_path): pki.server.key_pem.decode(),
            str(pki.client.key_path): pki.client.key_pem.decode(),
            str(pki.ca_path): pki.ca_pem.decode(), "/junk": "not a pem\n"}


def check(pki: PKI, **values: Any) -> tuple[Any, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    table = files(pki)

    def read(path: str) -> str:
        if path not in table:
            raise FileNotFoundError(2, "No such file or directory")
        return table[path]

    return tls_settings(values, read, lambda a, m: problems.append((a, m))), problems


def test_no_tls_attributes_means_no_tls(pki: PKI) -> None:
    """A service without tls_* attributes has no TLS and no problem."""
    assert check(pki) == (None, [])


def test_complete_settings(pki: PKI) -> None:
    """Certificate, key, CA and options load into one TLSSettings with the PEM texts."""
    settings, problems = check(
        pki, tls_cert=str(pki.server.cert_path), tls_key=str(pki.server.key_path),
        tls_client_ca=str(pki.ca_path), tls_verify_client="require",
        tls_client_names=("client1",), tls_min_version="1.3", tls_handshake_timeout=2.5)
    assert problems == []
    assert settings.cert_pem == pki.server.cert_pem and settings.client_ca_pem == pki.ca_pem
    assert (settings.min_version, settings.handshake_timeout) == ("1.3", 2.5)


@pytest.mark.parametrize(("values", "expected"), [
    ({"tls_cert": "CERT"}, ("tls_cert", "missing tls_key: TLS needs both tls_cert and tls_key")),
    ({"tls_cert": "CERT", "tls_key": "/missing"},
     ("tls_key", "cannot read /missing: No such file or directory")),
    ({"tls_cert": "/junk", "tls_key": "KEY"}, ("tls_cert", "no PEM certificate in the file")),
    ({"tls_cert": "CERT", "tls_key": "OTHERKEY"},
     ("tls_key", "key does not fit the certificate: key values mismatch")),
    ({"tls_cert": "CERT", "tls_key": "KEY", "tls_verify_client": "require"},
     ("tls_verify_client", "tls_verify_client = require needs tls_client_ca")),
    ({"tls_cert": "CERT", "tls_key": "KEY", "tls_client_names": ("a",)},
     ("tls_client_names", "tls_client_names needs tls_verify_client = require or optional")),
    ({"tls_cert": "CERT", "tls_key": "KEY", "tls_ciphers": "NO-SUCH-CIPHER"},
     ("tls_ciphers", "no cipher matches 'NO-SUCH-CIPHER'")),
])
def test_problems_name_the_attribute(pki: PKI, values: dict[str, Any],
                                     expected: tuple[str, str]) -> None:
    """Each unusable combination is one problem on the attribute to fix; no settings."""
    names = {"CERT": str(pki.server.cert_path), "KEY": str(pki.server.key_path),
             "OTHERKEY": str(pki.client.key_path)}
    values = {k: names.get(v, v) if isinstance(v, str) else v for k, v in values.items()}
    settings, problems = check(pki, **values)
    assert settings is None
    assert problems == [expected]


def test_upstream_tls(pki: PKI) -> None:
    """redirect_tls needs a name; the CA file is read; stray redirect_tls_* are errors."""
    problems: list[tuple[str, str]] = []

    def report(attribute: str, message: str) -> None:
        problems.append((attribute, message))

    read = files(pki).__getitem__
    up = upstream_tls({"redirect": ("h", "1"), "redirect_tls": True,
                       "redirect_tls_name": "localhost", "redirect_tls_ca": str(pki.ca_path)},
                      read, report)
    assert up is not None and (up.name, up.ca_pem) == ("localhost", pki.ca_pem)
    assert upstream_tls({"redirect": ("h", "1"), "redirect_tls": True}, read, report) is None
    assert upstream_tls({"redirect_tls_name": "x"}, read, report) is None
    assert problems == [
        ("redirect_tls", "missing redirect_tls_name: the name the upstream certificate "
                         "must carry"),
        ("redirect_tls_name", "redirect_tls_name needs redirect_tls = yes")]


def pair(pki: PKI, **values: Any) -> dict[str, Any]:
    return {"tls_cert": str(pki.server.cert_path), "tls_key": str(pki.server.key_path),
            **values}


@pytest.mark.parametrize(("values", "profile", "min_version"), [
    ({}, "intermediate", "1.2"),
    ({"tls_profile": "modern"}, "modern", "1.3"),
    ({"tls_profile": "old"}, "old", "1.0"),
    ({"tls_profile": "old", "tls_min_version": "1.2"}, "old", "1.2"),
    ({"tls_min_version": "1.3"}, "intermediate", "1.3"),
    ({"tls_profile": "modern", "tls_min_version": "1.3"}, "modern", "1.3"),
])
def test_profile_sets_the_version_floor(pki: PKI, values: dict[str, Any], profile: str,
                                        min_version: str) -> None:
    """tls_min_version, when written, raises the profile's floor; else the profile's holds."""
    settings, problems = check(pki, **pair(pki, **values))
    assert problems == []
    assert (settings.profile, settings.min_version) == (profile, min_version)


@pytest.mark.parametrize(("values", "expected"), [
    ({"tls_profile": "modern", "tls_min_version": "1.2"},
     ("tls_min_version", "tls_profile = modern offers TLS 1.3 only, not 1.2")),
    ({"tls_min_version": "1.1"}, ("tls_min_version", "TLS 1.1 needs tls_profile = old")),
    ({"tls_profile": "modern", "tls_min_version": "1.0"},
     ("tls_min_version", "tls_profile = modern offers TLS 1.3 only, not 1.0")),
    ({"tls_profile": "modern", "tls_ciphers": "AES128-SHA"},
     ("tls_ciphers", "tls_ciphers chooses TLS 1.2 suites, which tls_profile = modern"
                     " does not offer")),
    ({"tls_min_version": "1.3", "tls_ciphers": "AES128-SHA"},
     ("tls_ciphers", "tls_ciphers chooses TLS 1.2 suites, which tls_min_version = 1.3"
                     " does not offer")),
    ({"tls_profile": "old", "tls_ciphers": "NO-SUCH"},
     ("tls_ciphers", "no cipher matches 'NO-SUCH'")),
])
def test_contradictions_are_errors(pki: PKI, values: dict[str, Any],
                                   expected: tuple[str, str]) -> None:
    """A floor or cipher list the profile cannot honour is one error on that attribute."""
    settings, problems = check(pki, **pair(pki, **values))
    assert (settings, problems) == (None, [expected])


def test_profile_alone_needs_a_certificate(pki: PKI) -> None:
    """tls_profile is a TLS attribute: without tls_cert and tls_key it is an error."""
    assert check(pki, tls_profile="old") == (None, [
        ("tls_profile", "missing tls_cert: TLS needs both tls_cert and tls_key"),
        ("tls_profile", "missing tls_key: TLS needs both tls_cert and tls_key")])


def test_upstream_profile(pki: PKI) -> None:
    """redirect_tls_profile is kept (intermediate by default); without redirect_tls an error."""
    problems: list[tuple[str, str]] = []
    read = files(pki).__getitem__
    base = {"redirect": ("h", "1"), "redirect_tls": True, "redirect_tls_name": "localhost"}
    default = upstream_tls(base, read, lambda a, m: problems.append((a, m)))
    old = upstream_tls({**base, "redirect_tls_profile": "old"}, read,
                       lambda a, m: problems.append((a, m)))
    assert upstream_tls({"redirect_tls_profile": "old"}, read,
                        lambda a, m: problems.append((a, m))) is None
    assert default is not None and old is not None
    assert (default.profile, old.profile) == ("intermediate", "old")
    assert problems == [("redirect_tls_profile", "redirect_tls_profile needs redirect_tls = yes")]


def test_server_names_the_certificate_is_not_for_are_warned(pki: PKI) -> None:
    """A tls_sni name the certificate does not carry (nor covers by wildcard) is a
    warning on the tls_sni line; the settings still load."""
    warnings: list[tuple[str, str]] = []
    wildcard = pki.issue("wild", ["*.example.org", "example.org"])
    table = {**files(pki), str(wildcard.cert_path): wildcard.cert_pem.decode(),
             str(wildcard.key_path): wildcard.key_pem.decode()}
    values = {"tls_cert": str(wildcard.cert_path), "tls_key": str(wildcard.key_path),
              "tls_sni": ("a.example.org", "example.org", "*.example.org", "b.a.example.org",
                          "example.com")}
    settings = tls_settings(values, table.__getitem__, lambda a, m: warnings.append((a, m)),
                            lambda a, m: warnings.append((a, m)))
    assert settings is not None
    assert warnings == [
        ("tls_sni", f"the certificate in tls_cert is not for {name} (it names *.example.org,"
                    " example.org): clients that check names will refuse it")
        for name in ("b.a.example.org", "example.com")]
