"""
Parsers for single attribute values: yes/no, numbers, limits, sizes, times.

Pure.  Each function takes the word(s) as written and returns the value, or
raises ``ValueError`` whose message says what was expected and what was
found ("expected yes or no, got 'maybe'"); the caller adds file, line,
service and attribute.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, List, Optional, Tuple, TypeVar

from superd.config.model import FOREVER, UNLIMITED, FileLog, LogTarget, SyslogLog, TimeInterval

__all__ = [
    "FACILITIES",
    "LEVELS",
    "ValueErrors",
    "each",
    "access_time",
    "deny_time",
    "env_pair",
    "integer",
    "limit",
    "log_type",
    "octal_mode",
    "positive_float",
    "size",
    "words_in",
    "yes_no",
]

FACILITIES = frozenset(
    ["daemon", "auth", "authpriv", "user", "mail", "lpr", "news", "uucp", "ftp"]
    + [f"local{n}" for n in range(8)]
)
LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

T = TypeVar("T")

# ASCII digits only: int() would also take "1_000" and non-ASCII digits.
_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_SIZE = re.compile(r"^([0-9]+)([KkMm]?)$")
_FLOAT = re.compile(r"^[+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$")
_CLOCK = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")
_ENV_NAME = re.compile(r"^[^=\x00]+$")


class ValueErrors(ValueError):
    """Several words of one list are wrong: ``messages`` says each."""

    def __init__(self, messages: Iterable[str]) -> None:
        self.messages: Tuple[str, ...] = tuple(messages)
        super().__init__("; ".join(self.messages))


def each(parse: Callable[[str], T], words: Iterable[str]) -> Tuple[T, ...]:
    """``parse`` applied to every word; ``ValueErrors`` naming every bad one."""
    found: List[T] = []
    problems: List[str] = []
    for word in words:
        try:
            found.append(parse(word))
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ValueErrors(problems)
    return tuple(found)


def yes_no(word: str) -> bool:
    """``yes`` or ``no`` (case-sensitive, as xinetd)."""
    if word == "yes":
        return True
    if word == "no":
        return False
    raise ValueError(f"expected yes or no, got {word!r}")


def integer(word: str, low: Optional[int] = None, high: Optional[int] = None) -> int:
    """A decimal integer (sign allowed, as strtol) within [low, high]."""
    if not _INTEGER.match(word):
        raise ValueError(f"expected {_range_text(low, high)}, got {word!r}")
    value = int(word)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"expected {_range_text(low, high)}, got {word!r}")
    return value


def _range_text(low: Optional[int], high: Optional[int]) -> str:
    if low is not None and high is not None:
        return f"an integer from {low} to {high}"
    if low is not None:
        return f"an integer >= {low}"
    return "an integer"


def limit(word: str) -> int:
    """A count >= 0, or ``UNLIMITED``."""
    if word == "UNLIMITED":
        return UNLIMITED
    if not _INTEGER.match(word) or int(word) < 0:
        raise ValueError(f"expected a number >= 0 or UNLIMITED, got {word!r}")
    return int(word)


def size(word: str, *, unlimited: bool = True, suffixes: bool = True) -> int:
    """A byte count with optional ``K``/``M`` suffix (x1024), or ``UNLIMITED``."""
    if unlimited and word == "UNLIMITED":
        return UNLIMITED
    match = _SIZE.match(word)
    if match is None or (match.group(2) and not suffixes):
        expected = "a number with optional K or M suffix" if suffixes else "a number"
        tail = " or UNLIMITED" if unlimited else ""
        raise ValueError(f"expected {expected}{tail}, got {word!r}")
    factor = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    return int(match.group(1)) * factor


def octal_mode(word: str) -> int:
    """An octal ``umask`` from 0 to 0777."""
    if not re.match(r"^[0-7]{1,4}$", word) or int(word, 8) > 0o777:
        raise ValueError(f"expected an octal mode from 000 to 777, got {word!r}")
    return int(word, 8)


def positive_float(word: str) -> float:
    """A number > 0 (``max_load``)."""
    if not _FLOAT.match(word) or float(word) <= 0:
        raise ValueError(f"expected a number > 0, got {word!r}")
    return float(word)


def deny_time(word: str) -> int:
    """Minutes, ``FOREVER`` or ``NEVER`` (= 0)."""
    if word == "FOREVER":
        return FOREVER
    if word == "NEVER":
        return 0
    if not _INTEGER.match(word) or int(word) < 0:
        raise ValueError(f"expected minutes, FOREVER or NEVER, got {word!r}")
    return int(word)


def _minutes(clock: str, written: str) -> int:
    match = _CLOCK.match(clock)
    if match is None:
        raise ValueError(f"expected intervals like 08:00-17:30, got {written!r}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{clock!r} in {written!r} is not a time from 0:00 to 24:00")
    return hours * 60 + minutes


def access_time(word: str) -> TimeInterval:
    """One ``H:MM-H:MM`` interval; ``24:00`` and wrapping past midnight allowed."""
    start, dash, end = word.partition("-")
    if not dash:
        raise ValueError(f"expected intervals like 08:00-17:30, got {word!r}")
    return TimeInterval(_minutes(start, word), _minutes(end, word))


def env_pair(word: str) -> Tuple[str, str]:
    """``NAME=VALUE`` (the value may be empty; it cannot contain spaces)."""
    name, equals, value = word.partition("=")
    if not equals or not _ENV_NAME.match(name):
        raise ValueError(f"expected NAME=VALUE, got {word!r}")
    if "\x00" in value:
        raise ValueError(f"{word!r}: NUL bytes cannot appear in the environment")
    return name, value


def words_in(words: Iterable[str], allowed: Iterable[str], what: str) -> frozenset[str]:
    """Words all taken from ``allowed`` (case-sensitive)."""
    allowed = tuple(allowed)

    def known(word: str) -> str:
        if word not in allowed:
            raise ValueError(f"unknown {what} {word!r} (expected {', '.join(allowed)})")
        return word

    return frozenset(each(known, words))


def log_type(words: Tuple[str, ...]) -> LogTarget:
    """``SYSLOG facility [level]`` or ``FILE path [soft [hard]]``."""
    if words and words[0] == "SYSLOG" and len(words) in (2, 3):
        return _syslog(words[1:])
    if words and words[0] == "FILE" and 2 <= len(words) <= 4:
        return _file_log(words[1:])
    raise ValueError(
        f"expected 'SYSLOG facility [level]' or 'FILE path [soft [hard]]', got {' '.join(words)!r}"
    )


def _syslog(words: Tuple[str, ...]) -> SyslogLog:
    if words[0] not in FACILITIES:
        raise ValueError(
            f"unknown syslog facility {words[0]!r} (expected {', '.join(sorted(FACILITIES))})"
        )
    level = words[1] if len(words) > 1 else "info"
    if level not in LEVELS:
        raise ValueError(f"unknown syslog level {level!r} (expected {', '.join(LEVELS)})")
    return SyslogLog(words[0], level)


def _file_log(words: Tuple[str, ...]) -> FileLog:
    path = words[0]
    if "\x00" in path:
        raise ValueError("the log file path contains a NUL byte")
    if not path.startswith("/"):
        raise ValueError(f"log file {path!r} must be an absolute path")
    if len(words) == 1:
        return FileLog(path)
    soft = size(words[1], unlimited=False)
    if len(words) == 3:
        hard = size(words[2], unlimited=False)
        if hard < soft:
            raise ValueError(f"hard limit {words[2]} is below soft limit {words[1]}")
    else:
        # xinetd's rule: hard = soft + 1 %, clamped to 5 KiB..20 KiB.
        hard = soft + min(max(soft // 100, 5 * 1024), 20 * 1024)
    return FileLog(path, soft, hard)
