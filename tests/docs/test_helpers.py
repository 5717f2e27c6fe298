"""
The documentation tests' readers and matchers can fail: a missing
attribute, option, term or output line is noticed (checked on small texts
written here).
"""

from __future__ import annotations

from pathlib import Path

from tests.docs.rst import attributes, code_blocks, documented_options, literal_terms
from tests.docs.shell import make_run_command, matches, programs_of

REFERENCE = """\
Attributes
----------

.. confval:: flags
   :type: any of the words below
   :default: none
   :scope: service
   :xinetd: the same; a long comparison that goes on
            on a second line.

   ``IPv4``, ``IPv6``
       families.
   ``SENSOR``
       a trap.

   Not a term: ``NODELAY`` in running text.

.. confval:: port
   :type: 0 to 65535
   :default: from /etc/services

   The port.
"""

COMMANDS = """\
.. program:: superd run

.. option:: -c PATH, --config PATH

   The configuration.

.. program:: superd bans list

.. option:: --json

   JSON.
"""

CONSOLE = """\
Text.

.. code-block:: console
   :class: runnable needs-xinetd

   $ superd check -c conf/
   id ... limits
   ...
   $ cat > f <<'EOF'
   $ not a command
   EOF
   $ true

.. code-block:: console

   $ superd version
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.rst"
    path.write_text(text)
    return path


def test_attributes_and_their_options(tmp_path: Path) -> None:
    """Each confval with its options (continued lines joined) and body."""
    found = attributes(write(tmp_path, REFERENCE))
    assert sorted(found) == ["flags", "port"]
    assert found["flags"].options["xinetd"] == (
        "the same; a long comparison that goes on on a second line.")
    assert "scope" not in found["port"].options and found["port"].line == 18


def test_only_definition_terms_count(tmp_path: Path) -> None:
    """A word in running text is not a term: a flag described only so is missing."""
    body = attributes(write(tmp_path, REFERENCE))["flags"].body
    assert literal_terms(body) == {"IPv4", "IPv6", "SENSOR"}


def test_options_by_program(tmp_path: Path) -> None:
    """Options belong to the program above them; both forms of one are read."""
    assert documented_options(write(tmp_path, COMMANDS)) == {
        "superd run": {"-c", "--config"}, "superd bans list": {"--json"}}


def test_console_blocks(tmp_path: Path) -> None:
    """Classes, commands, a here-document taken whole, and the output shown."""
    first, second = code_blocks(write(tmp_path, CONSOLE))
    assert first.classes == {"runnable", "needs-xinetd"} and second.classes == set()
    assert [c.text for c in first.commands] == [
        "superd check -c conf/", "cat > f <<'EOF'\n$ not a command\nEOF", "true"]
    assert first.commands[0].expected == ["id ... limits", "..."]


def test_matches() -> None:
    """Shown lines must come in order; ``...`` is any text; spacing is free."""
    output = "id   name  limits\nechoed\nlast line\n"
    assert matches(["id name ... limits", "...", "last line"], output) == []
    assert matches(["last line", "echoed"], output) == ["echoed"]
    assert matches(["hello"], output) == ["hello"]


def test_programs_of() -> None:
    """The programs of a pipeline, not shell builtins, assignments or paths."""
    assert programs_of("PYTHONPATH=x .venv/bin/superd check | nc -N ::1 7 && mkdir d") == {
        "nc", "mkdir"}
    assert programs_of("printf 'a\\n' | superd bans list </dev/null") == {"superd"}


def test_make_run_command() -> None:
    """``make run`` runs superd on conf/ with a state directory of its own."""
    assert make_run_command() == ".venv/bin/superd run -c conf/ --state-dir ./state"
