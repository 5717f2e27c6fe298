"""Verdicts and ratios of the benchmark report."""

from __future__ import annotations

from benchlib.load import Sample, Series, parse_result
from benchlib.report import Report, Row, Target, ratio


def test_target_verdicts() -> None:
    """At-least and at-most targets pass, miss, or are n/a when unmeasured."""
    assert Target(2, "echo", 3.1, 3.0).verdict == "PASS"
    assert Target(2, "echo", 2.9, 3.0).verdict == "MISS"
    assert Target(2, "rss", 41.0, 40.0, at_most=True).verdict == "MISS"
    assert Target(2, "rss", 39.0, 40.0, at_most=True).verdict == "PASS"
    assert Target(2, "echo", None, 3.0).verdict == "n/a"
    assert Target(2, "echo", 5.0, 3.0, why_na="superd not running").verdict == "n/a"


def test_ratio_handles_missing_values() -> None:
    """A missing side or a zero denominator gives no ratio instead of an error."""
    assert ratio(6.0, 2.0) == 3.0
    assert ratio(None, 2.0) is None and ratio(1.0, 0.0) is None


def test_loadgen_line_and_cpu_per_connection() -> None:
    """CPU per connection divides by every completion, warm-up included."""
    sample = parse_result("conns=100 errors=2 bytes=6400 secs=2.000 rate=50.0 mbps=0.00 total=120")
    assert (sample.conns, sample.errors, sample.total, sample.rate) == (100, 2, 120, 50.0)
    timed = Sample(100, 0, 0, 2.0, total=200, cpu=0.01)
    assert timed.cpu_per_conn_us == 50.0


def test_series_median_and_rendered_row() -> None:
    """Figures report the median, and a row shows the superd/xinetd ratio."""
    series = Series([Sample(n, 0, 0, 1.0) for n in (10, 30, 20)])
    assert series.rate == 20.0
    report = Report(columns=["superd", "xinetd"])
    report.rows.append(Row("echo", "conn/s", {"superd": 300.0, "xinetd": 100.0}))
    report.targets.append(Target(2, "echo", 3.0, 3.0))
    text = report.render()
    assert "3.00x" in text and "PASS" in text


def test_target_without_threshold_is_informational() -> None:
    """A ratio the issues set no goal for is shown as info with "no goal", never PASS/MISS."""
    info = Target(3, "spawned cat: Python floor / xinetd", 1.17, None)
    assert info.verdict == "info"
    assert "no goal" in info.line() and "1.17x" in info.line()
    assert Target(3, "superd / Python floor", None, None).verdict == "n/a"
    assert Target(3, "superd / Python floor", 0.97, None, why_na="superd died").verdict == "n/a"


def test_paired_ratio_leaves_out_pairs_without_a_value() -> None:
    """A repetition with no CPU reading on either side gives no ratio (not 0, not a crash)."""
    from benchlib.load import capacity, paired_ratio

    timed = [Sample(100, 0, 0, 1.0, total=100, cpu=c) for c in (0.01, 0.02, 0.03)]
    untimed = Sample(100, 0, 0, 1.0, total=100)
    num = Series([timed[0], untimed, timed[2]])
    den = Series([timed[1], timed[1], untimed])
    cpu = paired_ratio(num, den, lambda s: s.cpu_per_conn_us)
    assert cpu == 0.5  # only the first pair: 100 us / 200 us
    assert paired_ratio(num, den, capacity) == 2.0
    assert paired_ratio(Series([untimed]), Series([untimed]), capacity) is None
    assert capacity(timed[0]) == 10_000.0 and capacity(untimed) is None


def test_count_rows_have_no_decimals_and_the_targets_title_can_say_pinned() -> None:
    report = Report(columns=["superd", "xinetd"], targets_title="TARGETS (PINNED run)")
    report.rows.append(Row("failed probes", "probes", {"superd": 3.0, "xinetd": 0.0}))
    text = report.render()
    assert "           3           0" in text
    assert "TARGETS (PINNED run)" in text.splitlines()
