"""
The ``tls_profile`` values: Mozilla's server-side TLS profiles as data.

A profile says which TLS versions are offered and, for TLS 1.2 and older,
which cipher suites.  TLS 1.3 suites are all AEAD with forward secrecy and
are OpenSSL's own in every profile.  ``tls_min_version`` and ``tls_ciphers``
override a profile's version floor and cipher list; ``superd.config.tls``
refuses combinations that contradict the profile.

The lists are those of Mozilla's "Security/Server Side TLS" guidelines
(version 5.7).  Their ``DHE-*`` suites are never negotiated: superd sets no
Diffie-Hellman parameters, and every client that has them has ECDHE too.
"""

from __future__ import annotations

from typing import Mapping, Optional, Tuple

import attrs

__all__ = ["DEFAULT_PROFILE", "PROFILES", "VERSIONS", "Profile", "cipher_string"]

#: ``tls_min_version`` values, oldest first.
VERSIONS: Tuple[str, ...] = ("1.0", "1.1", "1.2", "1.3")

#: Forward secrecy and AEAD only: ECDHE (or DHE) with AES-GCM or ChaCha20-Poly1305.
_INTERMEDIATE = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
#: The intermediate list, then CBC suites and static RSA for clients of
#: before 2013 (Java 6, Windows XP, Android 2.3).
_OLD = (
    _INTERMEDIATE + ":"
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:"
    "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:"
    "ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA256:"
    "DHE-RSA-AES256-SHA256:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:"
    "AES256-SHA256:AES128-SHA:AES256-SHA:DES-CBC3-SHA"
)


@attrs.frozen
class Profile:
    """What one ``tls_profile`` offers when nothing overrides it."""

    name: str
    #: The oldest TLS version offered.
    min_version: str
    #: OpenSSL cipher string for TLS 1.2 and older; None when the profile
    #: offers TLS 1.3 only.
    ciphers: Optional[str]
    #: OpenSSL security level 0: TLS 1.0 and 1.1 sign with SHA-1, which
    #: OpenSSL 3 refuses at its default level.
    legacy_security: bool = False


PROFILES: Mapping[str, Profile] = {
    "modern": Profile("modern", "1.3", None),
    "intermediate": Profile("intermediate", "1.2", _INTERMEDIATE),
    "old": Profile("old", "1.0", _OLD, legacy_security=True),
}
DEFAULT_PROFILE = "intermediate"


def cipher_string(profile: str, ciphers: Optional[str]) -> Optional[str]:
    """
    The OpenSSL cipher string for TLS 1.2 and older: ``ciphers`` (what
    ``tls_ciphers`` says) or the profile's list, with ``@SECLEVEL=0`` added
    for the old profile unless the string sets its own level.  None when
    the profile offers TLS 1.3 only.
    """
    chosen = PROFILES[profile]
    text = ciphers if ciphers is not None else chosen.ciphers
    if text is None:
        return None
    if chosen.legacy_security and "@SECLEVEL" not in text:
        text += ":@SECLEVEL=0"
    return text
