"""
A user's protocol for the tests: answers ``STARTTLS`` with ``OK`` and starts
TLS on its transport (the reactor's own ``startTLS``), then echoes in upper
case.  ``starttls_pem`` names a file holding the certificate and its key.
"""

from __future__ import annotations

from typing import Any, Tuple

from twisted.internet import ssl
from twisted.internet.protocol import Factory, Protocol

from superd.api import UserAttribute, UserContext


class Upgrading(Protocol):
    def __init__(self, options: Any) -> None:
        self.options = options

    def dataReceived(self, data: bytes) -> None:
        if data == b"STARTTLS\n":
            self.transport.write(b"OK\n")  # type: ignore[union-attr]
            self.transport.startTLS(self.options)  # type: ignore[union-attr]
            return
        self.transport.write(data.upper())  # type: ignore[union-attr]


def _path(words: Tuple[str, ...]) -> str:
    if len(words) != 1:
        raise ValueError(f"expected 1 path, got {len(words)}")
    return words[0]


def upgrading(context: UserContext) -> Factory:
    with open(context.settings["starttls_pem"], "rb") as pem:
        options = ssl.PrivateCertificate.loadPEM(pem.read()).options()
    return Factory.forProtocol(lambda: Upgrading(options))


upgrading.superd_attributes = {  # type: ignore[attr-defined]
    "starttls_pem": UserAttribute(parse=_path, required=True),
}
