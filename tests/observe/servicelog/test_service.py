"""Tests for superd.observe.servicelog.service: the router's subscription lifetime."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher

from superd.config.model import FileLog
from superd.observe.servicelog import ServiceLogRouter, ServiceLogService

from .configs import configuration, service


def test_subscribed_only_while_running(tmp_path: Path) -> None:
    """Lines reach the file between start and stop; stop closes the file."""
    path = tmp_path / "a.log"
    publisher = LogPublisher()
    log = Logger(observer=publisher)
    router = ServiceLogRouter(configuration(service("a", FileLog(str(path)))),
                              Clock())
    svc = ServiceLogService(router, publisher)
    log.info("x", service_id="a", xinetd_line="START: a pid=1")
    svc.startService()
    log.info("x", service_id="a", xinetd_line="START: a pid=2")
    svc.stopService()
    log.info("x", service_id="a", xinetd_line="START: a pid=3")
    assert [line.split(": ", 1)[1] for line in path.read_text().splitlines()] == [
        "START: a pid=2"]
    sink = router.sink_for(FileLog(str(path)))
    assert sink is None
    assert not svc.running
