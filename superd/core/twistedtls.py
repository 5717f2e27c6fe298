"""
The uses superd makes of Twisted's private TLS API, apart from
``superd.core.twistedprivate`` (and under the same rules: each says what it
relies on and which public API would replace it, and
``tests/core/test_twistedprivate.py`` pins them) because importing this
module loads pyOpenSSL: only daemons that serve TLS do.
"""

from __future__ import annotations

from typing import Any, Optional

from OpenSSL.SSL import Connection as TLSConnection
from OpenSSL.SSL import Error as SSLError
from OpenSSL.SSL import WantReadError, ZeroReturnError
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure

__all__ = ["TLSServerTransport"]


# -- TLS termination (superd.handlers.tls.protocol) --------------------------------

class TLSServerTransport(BufferingTLSTransport):
    """
    Twisted's TLS transport, with the service's protocol connected only once
    the handshake has succeeded, and with the client's close_notify handed to
    a subclass (it may be a read-side half-close).

    Two of ``TLSMemoryBIOProtocol``'s private methods are replaced by copies
    of Twisted 26.10's own with those two changes: ``_checkHandshakeStatus``
    calls ``handshake_succeeded`` and ``_flushReceiveBIO`` calls
    ``close_notify_received`` and stops reading once ``read_closed`` is set.
    The rest of this class names the private state they and the subclass
    need.  Public replacement: none; Twisted connects the wrapped protocol
    before the handshake and answers close_notify by closing.
    """

    #: Set by the subclass once nothing more is to be read from the client.
    read_closed = False

    def __init__(self, factory: TLSMemoryBIOFactory, wrapped: Any) -> None:
        # _connectWrapped=False: the wrapped protocol is connected by
        # handshake_succeeded, not when the TCP connection is made.
        super().__init__(factory, wrapped, _connectWrapped=False)

    # -- what subclasses implement ------------------------------------------

    def handshake_succeeded(self) -> None:
        """The handshake has finished: connect the wrapped protocol (or refuse)."""
        raise NotImplementedError

    def close_notify_received(self) -> None:
        """The client sent close_notify: Twisted's answer (ours, then close)."""
        self.answer_close_notify()

    # -- the private state, by name ------------------------------------------

    @property
    def tls_connection(self) -> TLSConnection:
        """The pyOpenSSL connection (``_tlsConnection``)."""
        connection: TLSConnection = self._tlsConnection
        return connection

    @property
    def handshake_done(self) -> bool:
        """The handshake has finished (``_handshakeDone``)."""
        return bool(self._handshakeDone)

    @property
    def failure_reason(self) -> Optional[Failure]:
        """Why TLS failed, if it did (``_reason``)."""
        reason: Optional[Failure] = self._reason
        return reason

    def answer_close_notify(self) -> None:
        """Send our close_notify and close, as Twisted does on the client's."""
        self._shutdownTLS()
        self._tlsShutdownFinished(None)

    def close_quietly(self) -> None:
        """
        Like ``abortConnection`` (no application byte is delivered any more),
        but our close_notify and a FIN go out instead of an RST.
        """
        self._aborted = True
        self.disconnecting = True
        self._shutdownTLS()
        transport: Any = self.transport
        transport.loseConnection()

    # -- the copies ------------------------------------------------------------

    def _checkHandshakeStatus(self) -> None:
        if self._aborted:
            return
        try:
            self._tlsConnection.do_handshake()
        except WantReadError:
            self._flushSendBIO()
        except SSLError:
            self._tlsShutdownFinished(Failure())
        else:
            self._handshakeDone = True
            self.handshake_succeeded()

    def _flushReceiveBIO(self) -> None:
        while not self._lostTLSConnection and not self.read_closed:
            try:
                data = self._tlsConnection.recv(2**15)
            except WantReadError:
                break
            except ZeroReturnError:
                self.close_notify_received()
            except SSLError:
                self._tlsShutdownFinished(Failure())
            else:
                if not self._aborted:
                    ProtocolWrapper.dataReceived(self, data)
        self._flushSendBIO()
