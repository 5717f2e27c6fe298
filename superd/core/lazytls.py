"""
Keeping OpenSSL out of a daemon that serves no TLS.

Twisted's reactor imports its TLS support eagerly: ``twisted.internet.tcp``
imports ``twisted.internet._newtls`` (for ``startTLS``) and
``twisted.internet.posixbase`` imports ``twisted.protocols.tls`` and
``twisted.internet.ssl`` (for ``listenSSL``/``connectSSL``), which load
pyOpenSSL, cryptography and service_identity -- a large part of an idle
daemon's memory.  Each of those imports is guarded by ``except ImportError``,
the path Twisted takes where pyOpenSSL is not installed.

``hold()`` (called before anything imports the reactor) makes exactly those
imports fail, and only those: an import by ``tcp`` or ``posixbase`` of one of
the three modules while OpenSSL is not loaded.  Anything else that asks for
TLS -- a TLS service, a redirect to a TLS upstream, ``--metrics`` endpoints,
a user's protocol importing ``twisted.internet.ssl`` -- imports it normally
(and once OpenSSL is in, the reactor's own imports go through as well).
superd's TLS needs nothing of the reactor's: it wraps its protocols in
``TLSMemoryBIOFactory`` itself.

What a user's protocol may use is the reactor's: ``transport.startTLS()``.
``complete()`` gives the reactor the TLS support it skipped -- Twisted's own
mixins put back under ``tcp``'s classes, and ``listenSSL`` back on the
reactor -- and is called when the configuration (at start or on a reload)
has a user protocol.  Connections are unaffected either way: the classes
gain methods, nothing else changes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, Optional

__all__ = ["complete", "hold", "released"]

#: The reactor modules whose TLS imports are skipped, and what they import.
_IMPORTERS = frozenset({"twisted.internet.tcp", "twisted.internet.posixbase"})
_SKIPPED = frozenset({"twisted.internet._newtls", "twisted.protocols.tls",
                      "twisted.internet.ssl"})
_IMPORT_MACHINERY = frozenset({"importlib._bootstrap", "importlib._bootstrap_external"})


def _importer() -> Optional[str]:
    """The module whose code runs the import being resolved."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if name not in _IMPORT_MACHINERY:
            return str(name)
        frame = frame.f_back  # type: ignore[assignment]
    return None


class _ReactorTLSBlocker:
    """A ``sys.meta_path`` finder that refuses the reactor's TLS imports."""

    skipped = False

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[ModuleType] = None) -> Optional[ModuleSpec]:
        if (fullname in _SKIPPED and "OpenSSL" not in sys.modules
                and _importer() in _IMPORTERS):
            self.skipped = True
            raise ModuleNotFoundError(f"{fullname} held back: no TLS needed yet",
                                      name=fullname)
        return None  # let the other finders find it


_blocker: Optional[_ReactorTLSBlocker] = None


def hold() -> None:
    """Skip the reactor's TLS imports until ``complete`` (if the reactor is
    not imported yet: after, there is nothing left to save)."""
    global _blocker
    if _blocker is not None or "twisted.internet.tcp" in sys.modules:
        return
    _blocker = _ReactorTLSBlocker()
    sys.meta_path.insert(0, _blocker)


def released() -> bool:
    """True unless the reactor lacks TLS support that ``complete`` would add."""
    return _blocker is None or not _blocker.skipped


def complete() -> None:
    """Stop holding, and give the reactor the TLS support it skipped."""
    global _blocker
    blocker, _blocker = _blocker, None
    if blocker is None:
        return
    sys.meta_path.remove(blocker)
    if blocker.skipped:
        _retrofit()


def _retrofit() -> None:
    # Twisted's modules as they would have been had their TLS imports
    # succeeded: tcp's placeholder mixins replaced by _newtls's, posixbase's
    # tls and ssl set, and the interfaces those imports would have declared.
    from twisted.internet import _newtls, posixbase, ssl, tcp
    from twisted.internet.interfaces import IReactorSSL, ITLSTransport
    from twisted.protocols import tls
    from zope.interface import classImplements

    _rebase(tcp.Connection, "_TLSConnectionMixin", _newtls.ConnectionMixin)
    _rebase(tcp.BaseClient, "_TLSClientMixin", _newtls.ClientMixin)
    _rebase(tcp.Server, "_TLSServerMixin", _newtls.ServerMixin)
    classImplements(tcp.Connection, ITLSTransport)
    tcp.ITLSTransport = ITLSTransport  # type: ignore[attr-defined,misc]
    posixbase.tls = tls  # type: ignore[attr-defined]
    posixbase.ssl = ssl  # type: ignore[attr-defined]
    classImplements(posixbase.PosixReactorBase, IReactorSSL)


def _rebase(cls: Any, placeholder: str, mixin: type) -> None:
    """Replace ``cls``'s base called ``placeholder`` (tcp's stand-in) by ``mixin``."""
    cls.__bases__ = tuple(mixin if base.__name__ == placeholder and base.__module__ ==
                          cls.__module__ else base for base in cls.__bases__)
