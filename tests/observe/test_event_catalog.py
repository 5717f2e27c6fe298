"""
Tests that the list of events cannot go stale: every event superd logs is
named by a constant of ``superd.observe.events``, and the reference
(``docs/logging.rst``) lists every one with exactly the fields the code
passes.  ``python -m tests.observe.catalog`` prints the list in the
reference's form.
"""

from __future__ import annotations

import pytest

from superd.observe.logs import SCHEMA_KEYS
from tests.observe import catalog


def test_every_log_call_names_an_event_constant() -> None:
    """Each logging call in superd/ passes ``event=`` a constant (or an alias
    of one) of superd.observe.events -- not a string of its own."""
    names = set(catalog.event_names().values())
    wrong = [f"{c.where}: event={c.expression or '(none)'}" for c in catalog.log_calls()
             if c.name not in names]
    assert wrong == [], "log with event=events.EV_NAME (add it to superd/observe/events.py)"


def test_the_scan_finds_the_calls_it_should() -> None:
    """The scan is not vacuous: it finds superd's best-known calls with their fields."""
    found = catalog.emitted()
    assert found["refuse"] >= {"service_id", "reason", "peer_host", "xinetd_line"}
    assert "reason" in found["exit"]  # passed as **extra
    assert len(catalog.log_calls()) > 80


def test_every_event_is_documented_with_its_fields() -> None:
    """docs/logging.rst lists every event name of superd.observe.events, and
    for each exactly the fields superd's code logs with it."""
    documented = catalog.documented()
    names = set(catalog.event_names().values())
    assert sorted(names - set(documented)) == [], "add these to docs/logging.rst"
    assert sorted(set(documented) - names) == [], "documented, but no such event"
    emitted = catalog.emitted()
    stale = {name: (sorted(emitted.get(name, set()) - documented[name]),
                    sorted(documented[name] - emitted.get(name, set())))
             for name in names if emitted.get(name, frozenset()) != documented[name]}
    assert stale == {}, "event: (fields not documented, documented fields not logged)"


def test_no_event_field_is_named_like_the_schema() -> None:
    """No superd event has a field the JSON schema would have to rename."""
    reserved = {*SCHEMA_KEYS, "traceback"}
    clashes = {name: sorted(fields & reserved)
               for name, fields in catalog.emitted().items() if fields & reserved}
    assert clashes == {}


@pytest.mark.parametrize(("text", "expected"), [
    ("``a``\n   says.\n\n   :fields: ``x``, ``y``,\n      ``z``\n", {"a": {"x", "y", "z"}}),
    ("``b``\n   :fields: none\n", {"b": set()}),
    ("``c`` is prose\n   :fields: ``x``\n", {}),
])
def test_documented_reads_terms_and_fields(text: str, expected: dict[str, set[str]]) -> None:
    """The reference's form: a term alone on its line, then a :fields: line."""
    assert catalog.documented(text) == expected
