"""
The xinetd-format FILE service log written by the real daemon: START and
FAIL lines with xinetd's timestamp, reopened by SIGHUP after logrotate moved
the file, and a log that cannot be written (a full disk) never stops service.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import StartSuperd
from tests.integration.external import wait_until
from tests.integration.reloading import echo_block, echo_once, refused, reload_and_wait

STAMP = r"\d{2}/\d{1,2}/\d{1,2}@\d{2}:\d{2}:\d{2}: "


def logged_echo(path: str) -> str:
    return echo_block("echo", extra=f"""
        only_from      = 127.0.0.1
        log_type       = FILE {path}
        log_on_success = HOST PID
        log_on_failure = HOST
    """)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_file_log_start_and_fail_lines(superd_factory: StartSuperd,
                                       conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """An admitted client gives START, a refused one FAIL address, each time-stamped."""
    log = tmp_path / "echo.log"
    superd = superd_factory(conf_dir(echo=logged_echo(str(log))))
    port = superd.port("echo")
    assert echo_once("127.0.0.1", port) == b"ping\n"
    assert refused("127.0.0.1", port, source="127.0.0.2")
    assert wait_until(lambda: len(lines(log)) >= 2)
    start, fail = lines(log)
    assert re.fullmatch(STAMP + r"START: echo pid=0 from=127\.0\.0\.1", start), start
    assert re.fullmatch(STAMP + r"FAIL: echo address from=127\.0\.0\.2", fail), fail


def test_rotate_then_hup_writes_to_the_new_file(superd_factory: StartSuperd,
                                                 conf_dir: Callable[..., Path],
                                                 tmp_path: Path) -> None:
    """logrotate renames the file and sends SIGHUP: later lines go to a new file."""
    log = tmp_path / "echo.log"
    superd = superd_factory(conf_dir(echo=logged_echo(str(log))))
    port = superd.port("echo")
    echo_once("127.0.0.1", port)
    assert wait_until(lambda: len(lines(log)) == 1)
    log.rename(tmp_path / "echo.log.1")
    assert reload_and_wait(superd)["ok"]
    echo_once("127.0.0.1", port)
    assert wait_until(lambda: len(lines(log)) == 1)
    assert len(lines(tmp_path / "echo.log.1")) == 1


def test_failed_reload_still_reopens_the_log(superd_factory: StartSuperd,
                                              conf_dir: Callable[..., Path],
                                              tmp_path: Path) -> None:
    """Even when the new configuration is broken, SIGHUP reopens the service logs."""
    log = tmp_path / "echo.log"
    conf = conf_dir(echo=logged_echo(str(log)))
    superd = superd_factory(conf)
    superd.allow_errors = True
    log.rename(tmp_path / "echo.log.1")
    (conf / "broken").write_text("service broken\n{\n")
    assert reload_and_wait(superd)["ok"] is False
    echo_once("127.0.0.1", superd.port("echo"))
    assert wait_until(lambda: len(lines(log)) == 1)


def test_full_disk_never_stops_service(superd_factory: StartSuperd,
                                       conf_dir: Callable[..., Path]) -> None:
    """Every write to /dev/full fails (ENOSPC): clients are served, the error is logged once."""
    superd = superd_factory(conf_dir(echo=logged_echo("/dev/full")))
    superd.allow_errors = True
    port = superd.port("echo")
    for _ in range(5):
        assert echo_once("127.0.0.1", port) == b"ping\n"
    # Logged when the write fails, which may be after the client got its
    # answer; counted once the daemon has stopped, so no later one is missed.
    superd.wait_for_event(lambda e: e.get("event") == "service_log_error")
    assert superd.stop() == 0
    errors = [e for e in superd.events() if e.get("event") == "service_log_error"]
    assert len(errors) == 1, errors


def test_two_blocks_with_one_id_keep_their_own_logs(superd_factory: StartSuperd,
                                                    conf_dir: Callable[..., Path],
                                                    tmp_path: Path) -> None:
    """As the seed's two ``service ssh`` blocks: one id on two binds, each
    with its own log file; each connection's START lands in its block's file."""
    lan, web = tmp_path / "lan.log", tmp_path / "web.log"
    blocks = "".join(echo_block("echo", bind=bind, extra=f"""
        log_type       = FILE {path}
        log_on_success = HOST PID
    """) for bind, path in (("127.0.0.1", lan), ("127.0.0.2", web)))
    superd = superd_factory(conf_dir(echo=blocks))
    assert echo_once("127.0.0.1", superd.port("echo", host="127.0.0.1")) == b"ping\n"
    assert echo_once("127.0.0.2", superd.port("echo", host="127.0.0.2")) == b"ping\n"
    assert wait_until(lambda: len(lines(lan)) == 1 and len(lines(web)) == 1)
    assert lines(lan)[0].endswith("START: echo pid=0 from=127.0.0.1")
    assert lines(web)[0].endswith("START: echo pid=0 from=127.0.0.1")
    assert [len(lines(lan)), len(lines(web))] == [1, 1]
