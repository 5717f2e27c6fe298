"""
The reference documents everything superd accepts, read from the code itself:

* every attribute of ``superd.config.attributes.ATTRIBUTES`` has a
  ``confval`` in docs/configuration.rst (superd.conf(5)) with its values,
  default, scope and comparison with xinetd, the scope agreeing with the
  attribute table, and no ``confval`` describes an attribute superd does
  not know;
* every ``type``, ``flags``, ``log_on_success`` and ``log_on_failure`` word
  is a term of its attribute's description;
* every ``superd`` command and each of its options, every option of the
  daemon (``twistd superd`` and ``superd run``) has a ``program``/``option``
  in docs/commands.rst (superd(8));
* every Prometheus metric superd serves is in docs/operations.rst.

A new attribute, command, option or metric without its documentation fails
here: that is the point.
"""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Iterator

import pytest
from twisted.python import usage

from superd.cli.main import _parser as superd_parser
from superd.cli.run import RunOptions
from superd.config.attributes import (
    ATTRIBUTES,
    COPIED_FROM_DEFAULTS,
    FAILURE_FLAGS,
    FILLED_FROM_DEFAULTS,
    FLAGS,
    SUCCESS_FLAGS,
    TYPES,
    AttributeSpec,
)
from superd.daemon.options import Options
from tests.docs.rst import REPO, attributes, documented_options, literal_terms

CONFIGURATION = REPO / "docs" / "configuration.rst"
COMMANDS = REPO / "docs" / "commands.rst"
OPERATIONS = REPO / "docs" / "operations.rst"
_FIELDS = ("type", "default", "scope", "xinetd")


def expected_scope(spec: AttributeSpec) -> set[str]:
    """The ``:scope:`` words the attribute table implies for ``spec``."""
    words = {"service"} if spec.in_service else set()
    if spec.in_defaults:
        words.add("defaults")
    if spec.key in COPIED_FROM_DEFAULTS:
        words.add("copied")
    if spec.key in FILLED_FROM_DEFAULTS:
        words.add("filled")
    if spec.cumulative:
        words.add("cumulative")
    return words


def test_every_attribute_is_described() -> None:
    """Each attribute superd parses has a confval, and each confval is an attribute."""
    described = set(attributes(CONFIGURATION))
    assert sorted(set(ATTRIBUTES) - described) == [], "attributes without a confval"
    assert sorted(described - set(ATTRIBUTES)) == [], "confvals superd does not know"


@pytest.mark.parametrize("name", sorted(ATTRIBUTES))
def test_attribute_fields(name: str) -> None:
    """Values, default, scope and the xinetd comparison are all given, the
    scope as the attribute table has it, and the description says something."""
    described = attributes(CONFIGURATION).get(name)
    if described is None:
        pytest.fail(f"{name}: no confval in {CONFIGURATION.name}")
    missing = [field for field in _FIELDS if not described.options.get(field)]
    assert missing == [], f"{CONFIGURATION.name}:{described.line}: {name} lacks {missing}"
    scope = set(described.options["scope"].split())
    assert scope == expected_scope(ATTRIBUTES[name]), (
        f"{CONFIGURATION.name}:{described.line}: {name}: :scope: {sorted(scope)}")
    assert any(line.strip() for line in described.body), f"{name}: no description"


@pytest.mark.parametrize(("attribute", "words"), [
    ("type", TYPES), ("flags", FLAGS),
    ("log_on_success", SUCCESS_FLAGS), ("log_on_failure", FAILURE_FLAGS),
])
def test_every_word_is_a_term(attribute: str, words: tuple[str, ...]) -> None:
    """Each word the attribute accepts is a term of its definition list."""
    terms = literal_terms(attributes(CONFIGURATION)[attribute].body)
    assert sorted(set(words) - terms) == []


def _delegate(name: str) -> argparse.ArgumentParser | None:
    """The parser of a subcommand whose module parses its own arguments."""
    module = importlib.import_module(f"superd.cli.{name}")
    make: object = getattr(module, "_parser", None)
    return make() if callable(make) else None  # type: ignore[no-any-return]


def _usage_options(options: usage.Options) -> set[str]:
    long = {f"--{name.rstrip('=')}" for name in options.longOpt}
    return long | {f"-{letter}" for letter in options.shortOpt.replace(":", "")}


def cli_programs(parser: argparse.ArgumentParser, program: str) -> Iterator[tuple[str, set[str]]]:
    """Every program under ``parser`` (``superd bans add`` ...) and its option strings."""
    options: set[str] = set()
    own = [action for action in parser._actions
           if not isinstance(action, argparse._HelpAction)]
    if program == "superd run":
        options = _usage_options(RunOptions())
    elif own and all(action.nargs == argparse.REMAINDER for action in own):
        delegate = _delegate(program.split()[-1])
        assert delegate is not None, f"{program}: cannot find its own parser"
        yield from cli_programs(delegate, program)
        return
    for action in own:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from cli_programs(sub, f"{program} {name}")
        else:
            options.update(action.option_strings)
    yield program, options


def test_every_command_and_option_is_documented() -> None:
    """Each ``superd`` command has a ``.. program::``, and each of its options
    an ``.. option::`` under it or under the command it belongs to."""
    documented = documented_options(COMMANDS)
    missing: list[str] = []
    for program, options in cli_programs(superd_parser(), "superd"):
        if program != "superd" and program not in documented:
            missing.append(f"{program} (no .. program::)")
        words = program.split()
        inherited = set().union(*(documented.get(" ".join(words[:n]), set())
                                  for n in range(1, len(words) + 1)))
        missing += [f"{program} {option}" for option in sorted(options - inherited)]
    assert missing == []


def test_every_daemon_option_is_documented() -> None:
    """``twistd superd``'s options, which ``superd run`` passes on, are
    documented under ``superd run``."""
    documented = documented_options(COMMANDS)["superd run"]
    assert sorted(_usage_options(Options()) - documented) == []


def test_every_metric_is_listed() -> None:
    """Each metric family superd defines is in the operations guide."""
    defined = re.compile(r'(?:MetricFamily|Counter|Gauge|Histogram)\(\s*"(superd_\w+)"')
    names = {name for path in (REPO / "superd").rglob("*.py")
             for name in defined.findall(path.read_text())}
    assert len(names) > 5, "the metric definitions moved: update this test"
    text = OPERATIONS.read_text()
    assert sorted(n for n in names if f"``{n}" not in text) == []
