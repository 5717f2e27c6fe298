"""
Tests of ``superd.handlers.tls.livecert``: a TLS service's certificate and
key re-read when their files change -- a good new pair replaces the context
(``tls_reloaded``), a bad one keeps it and is reported once, naming the file
(``tls_reload_failed``), and fixing the files recovers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from superd.config.model import Extensions, Location, ServiceConfig, SocketType, TLSSettings
from superd.config.tlscontext import ServerConnectionCreator, server_context
from superd.handlers.tls.livecert import LiveCertificate
from tests.certs import PKI, Issued


def serial(issued: Issued) -> str:
    return f"{x509.load_pem_x509_certificate(issued.cert_pem).serial_number:x}"


class Files:
    """A service's cert.pem and key.pem, as an operator (or certbot) edits them."""

    def __init__(self, directory: Path, first: Issued) -> None:
        self.cert, self.key = directory / "cert.pem", directory / "key.pem"
        self.put(first)
        settings = TLSSettings(cert_pem=first.cert_pem, key_pem=first.key_pem,
                               cert_path=str(self.cert), key_path=str(self.key))
        self.service = ServiceConfig(
            name="echo", id="techo", location=Location("conf/echo", 1),
            socket_type=SocketType.STREAM, protocol="tcp", wait=False, port=443,
            extensions=Extensions(tls=settings))
        self.creator = ServerConnectionCreator(server_context(settings))
        self.live = LiveCertificate(self.service, self.creator)
        self.live.check()  # what CertificateFiles.add does

    def put(self, issued: Issued, key: Issued | None = None) -> None:
        """Replace both files by rename, as an editor or certbot does."""
        for target, data in ((self.cert, issued.cert_pem), (self.key, (key or issued).key_pem)):
            target.with_suffix(".new").write_bytes(data)
            os.replace(target.with_suffix(".new"), target)


@pytest.fixture
def files(tmp_path: Path, pki: PKI) -> Files:
    return Files(tmp_path, pki.server)


def reloads(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") in ("tls_reloaded", "tls_reload_failed")]


def test_unchanged_files_keep_the_context(files: Files, log_events: list[dict[str, Any]]) -> None:
    """Looking again at files that did not change (or were only touched) does nothing."""
    context = files.creator.context
    files.live.check()
    os.utime(files.cert)
    files.live.check()
    assert files.creator.context is context and reloads(log_events) == []


def test_a_new_pair_replaces_the_context(files: Files, pki: PKI,
                                         log_events: list[dict[str, Any]]) -> None:
    """A renewed certificate and key: the creator makes connections from a new context."""
    renewed = pki.issue("renewed", ["localhost"])
    context = files.creator.context
    files.put(renewed)
    files.live.check()
    assert files.creator.context is not context
    assert files.live.settings.cert_pem == renewed.cert_pem
    (event,) = reloads(log_events)
    assert (event["event"], event["serial"], event["file"]) == (
        "tls_reloaded", serial(renewed), str(files.cert))
    assert event["subject"] == "CN=localhost"


def test_a_key_that_does_not_fit_is_reported_once_and_recovers(
        files: Files, pki: PKI, log_events: list[dict[str, Any]]) -> None:
    """Half a renewal (new certificate, old key) keeps the old context, says which
    file, once; the key arriving completes it."""
    renewed = pki.issue("renewed", ["localhost"])
    context = files.creator.context
    files.put(renewed, key=pki.server)
    files.live.check()
    files.live.check()
    assert files.creator.context is context
    (failed,) = reloads(log_events)
    assert (failed["event"], failed["attribute"], failed["file"]) == (
        "tls_reload_failed", "tls_key", str(files.key))
    assert failed["reason"].startswith("key does not fit the certificate")
    assert failed["log_level"].name == "error"
    files.put(renewed)
    files.live.check()
    assert files.creator.context is not context
    assert [e["event"] for e in reloads(log_events)] == ["tls_reload_failed", "tls_reloaded"]


@pytest.mark.parametrize(("damage", "attribute", "reason"), [
    ("remove", "tls_cert", "cannot read it: No such file or directory"),
    ("truncate", "tls_cert", "unreadable certificate"),
    ("garbage", "tls_key", "unreadable private key"),
    ("directory", "tls_key", "cannot read it: not a regular file (a directory)"),
])
def test_unreadable_files_keep_the_context(files: Files, damage: str, attribute: str,
                                           reason: str,
                                           log_events: list[dict[str, Any]]) -> None:
    """A missing, half-written, garbled or non-regular file is an error naming it."""
    context = files.creator.context
    if damage == "remove":
        files.cert.unlink()
    elif damage == "truncate":
        files.cert.write_bytes(files.cert.read_bytes()[:200])
    elif damage == "garbage":
        files.key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64\n")
    else:
        files.key.unlink()
        files.key.mkdir()
    files.live.check()
    assert files.creator.context is context
    (failed,) = reloads(log_events)
    assert (failed["attribute"], failed["file"]) == (
        attribute, str(files.cert if attribute == "tls_cert" else files.key))
    assert failed["reason"].startswith(reason), failed["reason"]
    if damage == "directory":
        shutil.rmtree(files.key)


def test_watched_paths_include_linked_directories(tmp_path: Path, pki: PKI) -> None:
    """A directory link on the way to the files is watched: swapping it replaces them."""
    archive = tmp_path / "archive-1"
    archive.mkdir()
    (tmp_path / "live").symlink_to(archive)
    files = Files(tmp_path / "live", pki.server)
    assert set(files.live.watched_paths()) == {
        str(tmp_path / "live" / "cert.pem"), str(tmp_path / "live" / "key.pem"),
        str(tmp_path / "live")}
