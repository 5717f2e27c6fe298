"""Tests for ``superd.config.values``: single-value parsers and their messages."""

from __future__ import annotations

import pytest

from superd.config import values as v
from superd.config.model import FOREVER, UNLIMITED, FileLog, SyslogLog, TimeInterval


def _message(call: object, *args: object) -> str:
    with pytest.raises(ValueError) as caught:
        call(*args)  # type: ignore[operator]
    return str(caught.value)


def test_yes_no_is_case_sensitive() -> None:
    """Only lowercase yes/no, as xinetd."""
    assert (v.yes_no("yes"), v.yes_no("no")) == (True, False)
    assert _message(v.yes_no, "Yes") == "expected yes or no, got 'Yes'"


def test_integers_take_a_sign_but_not_python_extras() -> None:
    """strtol-like: '+5' and '-3' parse; '1_000' and non-ASCII digits do not."""
    assert (v.integer("+5"), v.integer("-3")) == (5, -3)
    assert _message(v.integer, "1_000") == "expected an integer, got '1_000'"
    assert _message(v.integer, "٣") == "expected an integer, got '٣'"
    assert _message(v.integer, "70000", 0, 65535) == (
        "expected an integer from 0 to 65535, got '70000'"
    )


def test_limits_sizes_and_modes() -> None:
    """UNLIMITED, K/M suffixes (x1024) and octal umask."""
    assert (v.limit("UNLIMITED"), v.limit("0"), v.limit("30")) == (UNLIMITED, 0, 30)
    assert _message(v.limit, "-1") == "expected a number >= 0 or UNLIMITED, got '-1'"
    assert (v.size("10K"), v.size("2M"), v.size("7")) == (10240, 2 * 1024 * 1024, 7)
    assert v.size("UNLIMITED") == UNLIMITED
    assert _message(v.size, "5G") == (
        "expected a number with optional K or M suffix or UNLIMITED, got '5G'"
    )
    assert v.octal_mode("027") == 0o27
    assert _message(v.octal_mode, "089") == "expected an octal mode from 000 to 777, got '089'"


def test_max_load_and_deny_time() -> None:
    """max_load is a positive float; deny_time is minutes, FOREVER or NEVER."""
    assert v.positive_float("2.5") == 2.5
    assert _message(v.positive_float, "0") == "expected a number > 0, got '0'"
    assert (v.deny_time("FOREVER"), v.deny_time("NEVER"), v.deny_time("60")) == (FOREVER, 0, 60)
    assert _message(v.deny_time, "forever") == ("expected minutes, FOREVER or NEVER, got 'forever'")


def test_access_times_allow_24_00_and_wrapping() -> None:
    """``22:00-06:00`` wraps midnight and ``24:00`` is the end of the day (fixes xinetd)."""
    assert v.access_time("12:00-24:00") == TimeInterval(720, 1440)
    assert v.access_time("22:00-6:00") == TimeInterval(1320, 360)
    assert _message(v.access_time, "24:01-1:00") == (
        "'24:01' in '24:01-1:00' is not a time from 0:00 to 24:00"
    )
    assert _message(v.access_time, "9-17") == "expected intervals like 08:00-17:30, got '9-17'"


def test_env_pairs() -> None:
    """NAME=VALUE, value may be empty or contain '='; no name is an error."""
    assert v.env_pair("A=b=c") == ("A", "b=c")
    assert v.env_pair("A=") == ("A", "")
    assert _message(v.env_pair, "A") == "expected NAME=VALUE, got 'A'"
    assert _message(v.env_pair, "=x") == "expected NAME=VALUE, got '=x'"


def test_log_type() -> None:
    """SYSLOG facility [level] and FILE path [soft [hard]] with xinetd's hard default."""
    assert v.log_type(("SYSLOG", "daemon")) == SyslogLog("daemon", "info")
    assert v.log_type(("SYSLOG", "local3", "err")) == SyslogLog("local3", "err")
    assert v.log_type(("FILE", "/var/log/s")) == FileLog("/var/log/s")
    assert v.log_type(("FILE", "/l", "1M")) == FileLog("/l", 1048576, 1048576 + 10485)
    assert v.log_type(("FILE", "/l", "10K")) == FileLog("/l", 10240, 10240 + 5120)
    assert v.log_type(("FILE", "/l", "1K", "2K")) == FileLog("/l", 1024, 2048)
    assert _message(v.log_type, ("FILE", "/l", "2K", "1K")) == (
        "hard limit 1K is below soft limit 2K"
    )
    assert _message(v.log_type, ("SYSLOG", "kern")).startswith("unknown syslog facility 'kern'")
    assert _message(v.log_type, ("SYSLOG", "daemon", "INFO")).startswith(
        "unknown syslog level 'INFO'"
    )
    assert _message(v.log_type, ("FILE", "rel")) == "log file 'rel' must be an absolute path"
