"""Issue 13's latency figure: the arithmetic of its percentiles and the flood command."""

from __future__ import annotations

import pytest
from benchlib import latency_figure
from benchlib.latency_figure import flood_argv, summarize
from benchlib.load import Probe, parse_probes


def test_probe_lines_are_parsed_in_order_and_the_result_line_skipped() -> None:
    text = "probe ok=1 us=150\nprobe ok=0 us=2000012\nconns=1 errors=1 bytes=64 secs=1.0\n"
    assert parse_probes(text) == [Probe(True, 150.0), Probe(False, 2000012.0)]


def test_summary_gives_p50_and_p99_in_milliseconds() -> None:
    """100 successful probes of 1..100 ms: p50 about 50 ms, p99 99 ms, nothing failed."""
    probes = [Probe(True, 1000.0 * i) for i in range(1, 101)]
    got = summarize(probes)
    assert got is not None
    assert got.p50_ms in (50.0, 51.0) and got.p99_ms == 99.0
    assert (got.failed, got.probes) == (0, 100)


def test_failed_probes_count_as_the_timeout_not_as_their_own_time() -> None:
    """A refused probe (fast) or a timed-out one is 2,000 ms in the percentiles: a
    daemon failing most probes cannot show a good p99 from the few it answered."""
    probes = [Probe(True, 500.0)] * 2 + [Probe(False, 40.0)] * 8
    got = summarize(probes, timeout_ms=2000.0)
    assert got is not None
    assert got.p50_ms == 2000.0 and got.p99_ms == 2000.0
    assert (got.failed, got.probes) == (8, 10)
    one_slow = summarize([Probe(True, 300.0)] * 99 + [Probe(False, 2_000_100.0)])
    assert one_slow is not None and one_slow.p50_ms == pytest.approx(0.3)
    assert one_slow.p99_ms == pytest.approx(0.3) and one_slow.failed == 1


def test_no_probes_no_summary() -> None:
    assert summarize([]) is None


def test_flood_argv_binds_only_the_spoofing_variant() -> None:
    """The ordinary flood leaves the source to the kernel; the port-7 variant binds it."""
    plain_source, plain_port = latency_figure.FLOODS["UDP flood"]
    plain = flood_argv("/b/udpflood", 28013, 2.6, plain_source, plain_port, None)
    assert plain == ["/b/udpflood", "-p", "28013", "-d", "2.6"]
    source, port = latency_figure.FLOODS["UDP flood from port 7"]
    spoof = flood_argv("/b/udpflood", 28013, 2.0, source, port, None)
    assert spoof[-4:] == ["-b", "127.0.0.4", "-P", "7"]
    pinned = flood_argv("/b/udpflood", 28013, 2.0, source, port, 1)
    assert pinned[:3] == ["taskset", "-c", "1"]
