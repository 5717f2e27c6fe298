"""
Golden test: the full error output for a file with one mistake of each kind,
compared verbatim.  Regenerate ``broken.expected`` only after reading the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from superd.config.errors import ConfigError
from superd.config.load import load_configuration
from tests.config.fakes import fake_environment

GOLDEN = Path(__file__).parent / "fixtures" / "golden"


def _tree() -> dict[str, str]:
    """The golden directory's files, as seen under /golden."""
    return {
        "/golden/" + str(path.relative_to(GOLDEN)): path.read_text()
        for path in sorted(GOLDEN.rglob("*"))
        if path.is_file() and path.suffix != ".expected"
    }


def test_every_error_of_every_file_in_one_pass_verbatim() -> None:
    """All problems of the main file and its includes are printed together, exactly."""
    with pytest.raises(ConfigError) as caught:
        load_configuration("/golden/broken.conf", environment=fake_environment(_tree()))
    expected = (GOLDEN / "broken.expected").read_text()
    assert str(caught.value) + "\n" == expected
    assert len(caught.value.problems) == expected.count("\n")
