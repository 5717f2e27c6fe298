#!/usr/bin/env python3
"""
What one line of superd's main log costs: microseconds per event for the
JSON observer's formatting (``superd.observe.logs.json_line``) and the
readable one (``format_text``), on the events a busy daemon logs most.

    .venv/bin/python bench/logcost.py [--number N] [--repeat R]

No daemon and no socket: each event is built once, as superd's Logger
builds it, then formatted N times; the best of R repeats is printed, in
microseconds of this thread's CPU time per event (CPU time: other work on
the machine barely changes it).  Writing the line to stdout is not
included.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import timeit
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.logger import LogEvent, Logger
from twisted.python import log as legacy

from superd.observe import logs

Event = Dict[str, Any]


def _captured(emit: Callable[[Logger], None]) -> Event:
    """The event ``emit`` logs, as an observer receives it."""
    seen: List[LogEvent] = []
    emit(Logger(namespace="superd", observer=seen.append))
    return dict(seen[0])


def _legacy(text: str) -> Event:
    """A ``twisted.python.log.msg`` line (Twisted's ports log this way)."""
    seen: List[LogEvent] = []
    observer = seen.append
    legacy.theLogPublisher.addObserver(observer)  # type: ignore[no-untyped-call]
    try:
        legacy.msg(text)
    finally:
        legacy.theLogPublisher.removeObserver(observer)  # type: ignore[no-untyped-call]
    return dict(seen[-1])


def events() -> List[Tuple[str, Event]]:
    """One of each kind of event the benchmark formats."""
    start = _captured(lambda log: log.info(
        "START {service_id} pid={pid} from={peer_host}", event="start",
        service_id="echo", service_block="echo/tcp/7/127.0.0.1", pid=0,
        peer_host="127.0.0.1", peer_port=40000, xinetd_line="START: echo from=127.0.0.1"))
    exit_ = _captured(lambda log: log.info(
        "EXIT {service_id} pid={pid} status={status} duration={duration:.3f}s",
        event="exit", service_id="echo", service_block="echo/tcp/7/127.0.0.1", pid=0,
        status=0, signal=None, duration=0.0012, xinetd_line=None))
    refuse = _captured(lambda log: log.info(
        "FAIL {service_id} {reason} from={peer_host} {detail}", event="refuse",
        service_id="echo", service_block="echo/tcp/7/127.0.0.1", reason="address",
        peer_host="192.0.2.7", peer_port=40000, detail="",
        xinetd_line="FAIL: echo address from=192.0.2.7"))
    return [("start", start), ("exit", exit_), ("refuse", refuse),
            ("twisted legacy", _legacy("Received SIGTERM, shutting down."))]


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/logcost.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20000, help="events per repeat")
    parser.add_argument("--repeat", type=int, default=5, help="repeats; the best is shown")
    args = parser.parse_args(argv)
    print(f"{'event':<16}{'json_line us':>14}{'format_text us':>16}")
    for name, event in events():
        row = []
        for function in (logs.json_line, logs.format_text):
            timer = timeit.Timer(lambda f=function, e=event: f(e), timer=time.thread_time)
            best = min(timer.repeat(number=args.number, repeat=args.repeat))
            row.append(best / args.number * 1e6)
        print(f"{name:<16}{row[0]:>14.2f}{row[1]:>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
