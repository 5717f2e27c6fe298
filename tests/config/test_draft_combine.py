"""
Tests for how ``superd.config.draft`` combines the lines of a cumulative
attribute: the result of many ``+=`` / ``-=`` lines, and the work it takes
(counted, not timed: a list written as many lines must not cost a pass over
everything already read for each new line).
"""

from __future__ import annotations

from typing import Any

import pytest

from superd.config import draft
from superd.config.model import ServiceConfig
from tests.config.fakes import load_text

ECHO = "service echo\n{{\n type = INTERNAL\n socket_type = stream\n wait = no\n{body}}}\n"


def _echo(body: str) -> ServiceConfig:
    (service,) = load_text(ECHO.format(body=body)).services
    return service


def _lines(attribute: str, addresses: list[str], op: str = "+=", per_line: int = 10) -> str:
    return "".join(f" {attribute} {op} {' '.join(addresses[i:i + per_line])}\n"
                   for i in range(0, len(addresses), per_line))


def _addresses(count: int, start: int = 0) -> list[str]:
    return [f"10.{(i >> 8) & 255}.{i & 255}.1" for i in range(start, start + count)]


def test_many_plus_equals_lines_keep_order_and_drop_repeats() -> None:
    """Entries keep their first position; one repeated on a later line is not added twice."""
    first = _addresses(300)
    body = _lines("only_from", first) + _lines("only_from", first[:50] + _addresses(20, 300))
    service = _echo(body)
    assert service.only_from is not None
    assert [spec.text for spec in service.only_from] == first + _addresses(20, 300)


def test_minus_equals_after_many_lines_and_plus_equals_after_it() -> None:
    """``-=`` removes by meaning from a long list; a later ``+=`` may add an entry back."""
    entries = _addresses(200)
    body = (_lines("no_access", entries) + " no_access -= 10.0.0.1 10.0.1.1/32\n"
            + " no_access += 10.0.0.1\n")
    service = _echo(body)
    texts = [spec.text for spec in service.no_access]
    assert texts == [e for e in entries if e not in ("10.0.0.1", "10.0.1.1")] + ["10.0.0.1"]


def test_defaults_copy_is_extended_without_changing_the_defaults() -> None:
    """A service's ``+=`` extends its own copy of the defaults' list, not the defaults'."""
    defaults = "defaults\n{\n" + _lines("only_from", _addresses(30)) + "}\n"
    service_a = ECHO.format(body=" only_from += 192.0.2.1\n")
    service_b = ECHO.format(body="").replace("service echo", "service discard")
    a, b = load_text(defaults + service_a + service_b).services
    assert a.only_from is not None and b.only_from is not None
    assert [s.text for s in a.only_from] == [*_addresses(30), "192.0.2.1"]
    assert [s.text for s in b.only_from] == _addresses(30)


@pytest.mark.parametrize("lines", [10, 100])
def test_identities_are_computed_once_per_entry(monkeypatch: pytest.MonkeyPatch,
                                                lines: int) -> None:
    """Combining N entries over many lines looks at each entry a bounded number of times."""
    calls = 0
    real = draft._identity

    def counting(item: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(item)

    monkeypatch.setattr(draft, "_identity", counting)
    entries = _addresses(lines * 10)
    _echo(_lines("only_from", entries))
    assert calls <= 2 * len(entries)
