"""Tests of ``superd.config.servername``: server names as tls_sni writes them
and as clients send them."""

from __future__ import annotations

from typing import Optional

import pytest

from superd.config.servername import MAX_NAME, configured_name, requested_name


@pytest.mark.parametrize(("word", "name"), [
    ("WWW.Example.COM", "www.example.com"), ("example.com.", "example.com"),
    ("*.Example.com", "*.example.com"), ("xn--exmple-cua.com", "xn--exmple-cua.com"),
    ("_service.example", "_service.example"), ("localhost", "localhost"),
])
def test_configured_names_are_normalised(word: str, name: str) -> None:
    """Lower case, no trailing dot; a leading *. label is a wildcard."""
    assert configured_name(word) == name


@pytest.mark.parametrize("word", ["*", "*.com", "a.*.com", "-a.com", "a..com", "::1",
                                  "10.0.0.1", "caf\u00e9.com", "a" * 64 + ".com",
                                  ("a." * 130) + "com"])
def test_configured_names_that_are_not_host_names(word: str) -> None:
    """Wildcards elsewhere than the first label, bad labels, IPs, non-ASCII, length."""
    with pytest.raises(ValueError):
        configured_name(word)


@pytest.mark.parametrize(("sent", "name"), [
    (b"A.Example.com.", "a.example.com"), (b"a.example.com", "a.example.com"),
    (b"127.0.0.1", None), (b"::1", None), (b"*.example.com", None),
    (b"a.exa mple.com", None), (b"caf\xc3\xa9.com", None), (b"\xff", None),
    (b"a" * (MAX_NAME + 1), None), (b"a." * 126 + b"a", "a." * 126 + "a"),
])
def test_requested_names(sent: bytes, name: Optional[str]) -> None:
    """A client's name is a host name in lower case, or no name at all."""
    assert requested_name(sent) == name
