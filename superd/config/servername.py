"""
Server names as ``tls_sni`` routes them: DNS host names, compared in
lower case, without a trailing dot.

Pure.  ``configured_name`` checks a name written in ``tls_sni`` (a
``*.example.com`` wildcard stands for exactly one more label, as in a
certificate); ``requested_name`` checks the name a client sent in its
ClientHello, which is only ever looked up, never trusted: anything that is
not a plausible host name (too long, not ASCII, an IP address, a wildcard)
is no name at all.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Optional

__all__ = ["MAX_NAME", "configured_name", "requested_name"]

#: The longest DNS name (RFC 1035: 255 octets on the wire).
MAX_NAME = 253

_LABEL_TEXT = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_LABEL = re.compile(f"^{_LABEL_TEXT}$")
_HOST = re.compile(rf"^{_LABEL_TEXT}(?:\.{_LABEL_TEXT})*$")
#: Only these can be an IP address (the test of every name a client sends).
_NUMERIC = re.compile(r"^[0-9.]+$|:")


def _problem(name: str) -> Optional[str]:
    """Why ``name`` (lower case, no trailing dot) is not a host name, or None."""
    if len(name) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    if _NUMERIC.search(name):
        try:
            ipaddress.ip_address(name)
        except ValueError:
            pass
        else:
            return "an IP address (clients never send one as a server name)"
    if _HOST.match(name):
        return None
    labels = name.split(".")
    bad = next((label for label in labels if not _LABEL.match(label)), None)
    if bad is not None:
        return f"{bad!r} is not a host name label" if bad else "an empty label"
    return None


def configured_name(word: str) -> str:
    """A ``tls_sni`` name, normalised; raises ``ValueError`` saying why not."""
    if word == "*":
        raise ValueError("'*' is not a name: the port's default service is the one"
                         " without tls_sni")
    if not word.isascii():
        raise ValueError(f"{word!r} is not ASCII: write an internationalised name in"
                         " its xn-- form")
    name = word.lower()
    name = name[:-1] if name.endswith(".") else name
    suffix = name[2:] if name.startswith("*.") else name
    problem = _problem(suffix)
    if problem is not None:
        raise ValueError(f"expected a host name or *.domain, got {word!r}: {problem}")
    if name.startswith("*.") and "." not in suffix:
        raise ValueError(f"{word!r}: a wildcard needs a domain of two labels or more")
    return name


def requested_name(sent: bytes) -> Optional[str]:
    """The host name a client sent, normalised, or None if it is not one."""
    if len(sent) > MAX_NAME + 1:
        return None
    try:
        name = sent.decode("ascii").lower()
    except UnicodeDecodeError:
        return None
    name = name[:-1] if name.endswith(".") else name
    return None if _problem(name) is not None else name
