"""``sslscan`` as a test client: what a TLS port offers, from its XML report."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ElementTree

import attrs

from tests.integration.harness import require_program

__all__ = ["Scan", "sslscan"]


@attrs.frozen
class Scan:
    """The versions a port accepts and the (version, suite) pairs it negotiates."""

    versions: frozenset[str]
    suites: frozenset[tuple[str, str]]

    def suites_of(self, version: str) -> set[str]:
        """The suites accepted under ``version`` (``TLSv1.2``)."""
        return {suite for v, suite in self.suites if v == version}


def sslscan(port: int, server_name: str = "localhost") -> Scan:
    """Scan 127.0.0.1:``port`` (sending ``server_name`` as SNI)."""
    command = [require_program("sslscan"), "--no-colour", "--no-groups", "--no-heartbleed",
               "--no-fallback", "--no-renegotiation", "--no-compression",
               "--no-check-certificate", f"--sni-name={server_name}", "--xml=-",
               f"127.0.0.1:{port}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    text = done.stdout
    document = ElementTree.fromstring(text[text.index("<?xml"):])
    versions = frozenset(f"TLSv{p.get('version')}" for p in document.iter("protocol")
                         if p.get("type") == "tls" and p.get("enabled") == "1")
    suites = frozenset((str(c.get("sslversion")), str(c.get("cipher")))
                       for c in document.iter("cipher"))
    return Scan(versions, suites)
