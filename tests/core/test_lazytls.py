"""
Tests for superd.core.lazytls: the reactor's own TLS imports are held back
(and only those), and ``complete`` gives the reactor back what it skipped.
Each runs in a fresh interpreter: this one imported the reactor long ago.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def fresh(code: str) -> str:
    """Run ``code`` in a new interpreter; its standard output."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_reactor_imports_no_tls_while_held() -> None:
    """Held: the reactor and tcp import without OpenSSL, and lack its parts."""
    out = fresh("""
        import sys
        from superd.core import lazytls
        lazytls.hold()
        from twisted.internet import epollreactor, tcp
        epollreactor.install()
        from twisted.internet import reactor
        from twisted.internet.interfaces import IReactorSSL
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("OpenSSL", "cryptography")))
        print(hasattr(tcp.Server, "startTLS"), IReactorSSL.providedBy(reactor))
        print(lazytls.released())
    """)
    assert out.splitlines() == ["[]", "False False", "False"]


def test_anything_else_imports_tls_normally_while_held() -> None:
    """An import that is not the reactor's own (a TLS service, a user's
    module) works, and the reactor imported after it keeps its TLS."""
    out = fresh("""
        import sys
        from superd.core import lazytls
        lazytls.hold()
        from twisted.internet import ssl
        from twisted.internet import epollreactor, tcp
        epollreactor.install()
        from twisted.internet import reactor
        print("OpenSSL" in sys.modules, hasattr(tcp.Server, "startTLS"), lazytls.released())
    """)
    assert out.split() == ["True", "True", "True"]


def test_hold_after_the_reactor_is_imported_changes_nothing() -> None:
    """Too late to save anything: nothing is held."""
    out = fresh("""
        from twisted.internet import tcp
        from superd.core import lazytls
        lazytls.hold()
        print(lazytls._blocker is None, hasattr(tcp.Server, "startTLS"))
    """)
    assert out.split() == ["True", "True"]


def test_complete_gives_the_reactor_starttls_that_works() -> None:
    """After complete(), a connection accepted by superd's transport can
    start TLS: a real handshake over loopback, then bytes both ways."""
    out = fresh("""
        import socket, ssl as stdssl, tempfile, threading
        from pathlib import Path
        from superd.core import lazytls
        lazytls.hold()
        from twisted.internet import epollreactor
        epollreactor.install()
        from twisted.internet import reactor, tcp
        from twisted.internet.interfaces import IReactorSSL, ITLSTransport
        from twisted.internet.protocol import Protocol
        from superd.net.connection import Connection
        assert not hasattr(tcp.Server, "startTLS")
        lazytls.complete()
        from twisted.internet import ssl
        from tests.certs import make_pki
        pki = make_pki(Path(tempfile.mkdtemp()))
        options = ssl.PrivateCertificate.loadPEM(pki.server.cert_pem + pki.server.key_pem).options()

        class Upgrade(Protocol):
            def dataReceived(self, data):
                if data == b"STARTTLS\\n":
                    self.transport.write(b"OK\\n")
                    self.transport.startTLS(options)
                else:
                    self.transport.write(data.upper())

        listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(1)
        result = []

        def client():
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                raw.sendall(b"STARTTLS\\n")
                assert raw.recv(3) == b"OK\\n"
                context = stdssl.create_default_context(cafile=str(pki.ca_path))
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"secret")
                    result.append(tls.recv(6))
            reactor.callFromThread(reactor.stop)

        thread = threading.Thread(target=client); thread.start()
        accepted, address = listener.accept(); accepted.setblocking(False)
        protocol = Upgrade()
        transport = Connection(accepted, protocol, address, None, 1, reactor)
        protocol.makeConnection(transport)
        reactor.callLater(20, reactor.stop)
        reactor.run()
        thread.join(10)
        print(result, ITLSTransport.providedBy(transport), IReactorSSL.providedBy(reactor))
    """)
    assert out.split() == ["[b'SECRET']", "True", "True"]
