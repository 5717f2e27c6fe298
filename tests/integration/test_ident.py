"""
USERID and IDONLY with the real daemon: superd asks an RFC 1413 responder
(started by the test on a loopback port, ``--ident-port``) who owns each
connection, logs the answer in the service's FILE log, refuses IDONLY clients
without one, and never lets a slow responder hold up anyone else.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import StartSuperd
from tests.integration.external import wait_until
from tests.integration.harness import Superd
from tests.integration.reloading import echo_block, echo_once, refused

STAMP = r"\d{2}/\d{1,2}/\d{1,2}@\d{2}:\d{2}:\d{2}: "


class Responder(threading.Thread):
    """
    A tiny identd on ``host`` (a loopback address): ``mode`` is ``userid``
    (names ``alice``), ``error`` (``ERROR : NO-USER``) or ``silent`` (reads,
    never answers).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(daemon=True)
        self.mode = "userid"
        self.queries: list[bytes] = []
        self.listener = socket.create_server((host, port))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        query = conn.recv(64)
        self.queries.append(query)
        if self.mode == "silent":
            self._held.append(conn)
            return
        ports = query.strip().decode()
        reply = "USERID : UNIX : alice" if self.mode == "userid" else "ERROR : NO-USER"
        conn.sendall(f"{ports} : {reply}\r\n".encode())
        conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.listener.close()
        self.join(5)
        for conn in self._held:
            conn.close()


@pytest.fixture
def identd() -> Iterator[Responder]:
    responder = Responder()
    responder.start()
    yield responder
    responder.stop()


def start(superd_factory: StartSuperd, conf_dir: Callable[..., Path], port: int,
          **services: str) -> Superd:
    return superd_factory(conf_dir(**services), "--ident-port", str(port))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_userid_line_in_the_file_log(superd_factory: StartSuperd, conf_dir: Callable[..., Path],
                                     identd: Responder, tmp_path: Path) -> None:
    """An admitted client is served and its identd's answer is logged as USERID."""
    log = tmp_path / "echo.log"
    superd = start(superd_factory, conf_dir, identd.port, echo=echo_block("echo", extra=f"""
        log_type       = FILE {log}
        log_on_success = HOST USERID
    """))
    assert echo_once("127.0.0.1", superd.port("echo")) == b"ping\n"
    assert wait_until(lambda: any("USERID" in line for line in lines(log)))
    (userid,) = [line for line in lines(log) if "USERID" in line]
    assert re.fullmatch(STAMP + r"USERID: echo UNIX : alice", userid), userid
    assert re.fullmatch(rb"\d+,\d+\r\n", identd.queries[0])


def idonly_echo(log: Path) -> str:
    return echo_block("idecho", extra=f"""
        flags          = IDONLY
        log_type       = FILE {log}
    """)


def test_idonly_admits_only_identified_clients(superd_factory: StartSuperd,
                                               conf_dir: Callable[..., Path],
                                               identd: Responder, tmp_path: Path) -> None:
    """IDONLY serves a named client; an ERROR answer or no identd at all gets NOID and a close."""
    log = tmp_path / "idonly.log"
    superd = start(superd_factory, conf_dir, identd.port, echo=idonly_echo(log))
    port = superd.port("idecho")
    assert echo_once("127.0.0.1", port) == b"ping\n"
    identd.mode = "error"
    assert refused("127.0.0.1", port)
    identd.stop()  # nobody listens on the ident port any more
    assert refused("127.0.0.1", port)
    assert wait_until(lambda: sum("NOID" in line for line in lines(log)) == 2)
    noids = [line for line in lines(log) if "NOID" in line]
    assert re.fullmatch(STAMP + r"NOID: idecho 127\.0\.0\.1 bad response", noids[0]), noids
    assert re.fullmatch(STAMP + r"NOID: idecho 127\.0\.0\.1 no server", noids[1]), noids


def test_silent_identd_blocks_nobody_else(superd_factory: StartSuperd,
                                          conf_dir: Callable[..., Path],
                                          identd: Responder, tmp_path: Path) -> None:
    """While an IDONLY client waits on a silent identd, another service answers at once."""
    identd.mode = "silent"
    superd = start(superd_factory, conf_dir, identd.port,
                   idonly=idonly_echo(tmp_path / "idonly.log"), echo=echo_block("echo"))
    with socket.create_connection(("127.0.0.1", superd.port("idecho")), timeout=5) as waiting:
        waiting.sendall(b"ping\n")
        assert wait_until(lambda: len(identd.queries) == 1)
        began = time.monotonic()
        assert echo_once("127.0.0.1", superd.port("echo")) == b"ping\n"
        assert time.monotonic() - began < 1.0
        waiting.settimeout(0.3)
        with pytest.raises(TimeoutError):
            waiting.recv(64)  # still held, unanswered


def test_userid_of_a_refused_client(superd_factory: StartSuperd, conf_dir: Callable[..., Path],
                                    identd: Responder, tmp_path: Path) -> None:
    """A refused client gets its FAIL line, then the USERID its identd gave, then a close."""
    other_host = Responder("127.0.0.2", identd.port)  # the refused client's identd
    other_host.start()
    try:
        log = tmp_path / "echo.log"
        superd = start(superd_factory, conf_dir, identd.port, echo=echo_block("echo", extra=f"""
            only_from      = 127.0.0.1
            log_type       = FILE {log}
            log_on_failure = HOST USERID
        """))
        assert refused("127.0.0.1", superd.port("echo"), source="127.0.0.2")
        assert wait_until(lambda: len(lines(log)) == 2)
    finally:
        other_host.stop()
    fail, userid = lines(log)
    assert re.fullmatch(STAMP + r"FAIL: echo address from=127\.0\.0\.2", fail), fail
    assert re.fullmatch(STAMP + r"USERID: echo UNIX : alice", userid), userid
    assert identd.queries == [] and len(other_host.queries) == 1
