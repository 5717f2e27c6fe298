"""Fixtures shared by every test module."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings
from twisted.logger import globalLogPublisher

from superd.observe.events import connection_events
from tests.certs import PKI, make_pki

# No per-example deadline: on a slow or busy CI machine the first example
# (imports, compiled patterns) can exceed Hypothesis's 200 ms and fail a
# correct test.  Speed is measured in bench/, not asserted here.
settings.register_profile("superd", deadline=None)
settings.load_profile("superd")


def _captured(per_connection: bool) -> Iterator[list[dict[str, Any]]]:
    """The global publisher's events while the test runs, with or without
    the per-connection START/EXIT events sent to it."""
    events: list[dict[str, Any]] = []
    sent = connection_events.sent_to_main_log
    connection_events.send_to_main_log(per_connection)
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)
        connection_events.send_to_main_log(sent)


@pytest.fixture
def log_events() -> Iterator[list[dict[str, Any]]]:
    """Every twisted.logger event emitted during the test, in order."""
    # As the JSON log does: the builtins' per-connection events too.
    yield from _captured(True)


@pytest.fixture
def main_log() -> Iterator[list[dict[str, Any]]]:
    """The events that reach the main log when nothing consumes the
    per-connection events (no JSON log, no service log): what an operator
    reading the ordinary log sees."""
    yield from _captured(False)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A CA, a localhost server certificate, a good and a wrong client certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected socket pair: ours (non-blocking, as the reactor's) and theirs."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()
