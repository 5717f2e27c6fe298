"""
One TLS service's certificate, key and client CA, re-read when their files
change (``superd.handlers.tls.certwatch`` says when to look).

Looking compares what ``stat`` says of the files with what it said when they
were last read; only then are they read again (regular files, bounded, as
at load), and only if their contents differ is a new context built.  It
replaces the old one in the service's connection creator: connections made
from then on get the new certificate, those already open keep theirs
(``tls_reloaded``).  Whatever is wrong with the new files -- one cannot be
read, a PEM is half written, the key does not fit the certificate -- keeps
the old context, and is logged once per state of the files as an error
naming the file (``tls_reload_failed``); the next change is looked at again,
so fixing the files recovers.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

import attrs
from twisted.logger import Logger

from superd.config.model import ServiceConfig, TLSSettings
from superd.config.tlscontext import (
    ServerConnectionCreator,
    TLSSetupError,
    load_certificates,
    server_context,
)
from superd.core.files import read_regular_file
from superd.handlers.tls.certwatch import FileState, file_state, links_to
from superd.observe import events

__all__ = ["LiveCertificate"]

_log = Logger(namespace="superd.tls")

class LiveCertificate:
    """The context ``creator`` makes connections from, kept in step with the files."""

    def __init__(self, service: ServiceConfig, creator: ServerConnectionCreator,
                 read: Callable[[str], bytes] = read_regular_file) -> None:
        settings = service.extensions.tls
        assert settings is not None
        self.service = service
        self.creator = creator
        self.settings: TLSSettings = settings
        self._read = read
        paths = {"tls_cert": settings.cert_path, "tls_key": settings.key_path,
                 "tls_client_ca": settings.client_ca_path}
        #: attribute -> path, for the files this service was configured with.
        self.files: Dict[str, str] = {a: p for a, p in paths.items() if p is not None}
        self._state: Optional[FileState] = None

    def watched_paths(self) -> List[str]:
        """The files and the symbolic links on the way to them."""
        return [link for path in self.files.values() for link in links_to(path)]

    def check(self) -> None:
        """Reload the files if they changed since they were last read."""
        if not {"tls_cert", "tls_key"} <= self.files.keys():
            return  # settings made in memory (tests, tools): no files to watch
        state = file_state(list(self.files.values()))
        if state == self._state:
            return
        self._state = state
        pems = self._read_all()
        if pems is None:
            return
        renewed = attrs.evolve(self.settings, cert_pem=pems["tls_cert"],
                               key_pem=pems["tls_key"],
                               client_ca_pem=pems.get("tls_client_ca"))
        if renewed == self.settings:
            return  # touched, or back to what is served
        try:
            context = server_context(renewed)
        except TLSSetupError as e:
            self._failed(e.attribute, str(e))
            return
        self.settings = renewed
        self.creator.context = context
        self._loaded()

    def _read_all(self) -> Optional[Dict[str, bytes]]:
        pems = {}
        for attribute, path in self.files.items():
            try:
                pems[attribute] = self._read(path)
            except OSError as e:
                self._failed(attribute, f"cannot read it: {e.strerror or e}")
                return None
        return pems

    def _failed(self, attribute: str, reason: str) -> None:
        path = self.files.get(attribute, self.files["tls_cert"])
        _log.error("service {service_id}: {attribute} {file}: {reason}; new connections"
                   " still get the certificate loaded before",
                   event=events.EV_TLS_RELOAD_FAILED, service_id=self.service.id,
                   attribute=attribute, file=path, reason=reason)

    def _loaded(self) -> None:
        leaf = load_certificates(self.settings.cert_pem, "tls_cert")[0]
        _log.info("service {service_id}: new certificate {subject} (serial {serial},"
                  " valid until {not_after}) from {file}", event=events.EV_TLS_RELOADED,
                  service_id=self.service.id, subject=leaf.subject.rfc4514_string(),
                  serial=f"{leaf.serial_number:x}", not_after=leaf.not_valid_after_utc.isoformat(),
                  file=self.files["tls_cert"])
