"""
Property tests: whatever text the configuration holds, loading it either
succeeds or raises ``ConfigError`` -- never any other exception, never a hang.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from superd.config.attributes import ATTRIBUTES
from superd.config.errors import ConfigError
from superd.config.model import Configuration
from tests.config.fakes import SERVICES, load_text

FIXTURES = Path(__file__).parent / "fixtures"
SEED = (FIXTURES / "seed.conf").read_text()
DEBIAN = (FIXTURES / "debian" / "xinetd.d" / "echo").read_text()
EXTRA_SERVICES = {**SERVICES, ("sftp", "tcp"): 115, ("irc", "tcp"): 194,
                  ("rootexternalssh", "tcp"): 33333}  # fmt: skip

_PROPERTY = settings(
    max_examples=300,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
)


def _load_or_config_error(text: str) -> None:
    try:
        config = load_text(text, services=EXTRA_SERVICES)
    except ConfigError as error:
        assert error.problems, "a ConfigError always says why"
        for problem in error.problems:
            assert str(problem)
        return
    assert isinstance(config, Configuration)


_TOKENS = st.sampled_from(
    [*ATTRIBUTES, "service", "defaults", "include", "includedir", "{", "}", "=", "+=", "-=",
     "yes", "no", "stream", "dgram", "tcp", "udp", "INTERNAL", "UNLISTED", "TCPMUX", "RPC",
     "SENSOR", "IPv4", "IPv6", "NAMEINARGS", "UNLIMITED", "FOREVER", "NEVER", "0", "7", "-1",
     "65536", "10 5", "127.0.0.1", "::1", "0.0.0.0", "10.0.{1,2}", "::/0", "localhost",
     "echo", "root", "nobody", "1000", "/bin/cat", "/usr/sbin/sshd", "#", "A=B", "10K",
     "08:00-17:00", "SYSLOG daemon", "FILE /tmp/x 1K", "\t", "\r", "x" * 70, "é", "\x00"]
)  # fmt: skip
_LINE = st.lists(_TOKENS, max_size=6).map(" ".join)
_GRAMMARISH = st.lists(_LINE, max_size=40).map("\n".join)


@_PROPERTY
@given(st.text(max_size=400))
def test_random_text_raises_only_config_error(text: str) -> None:
    """Arbitrary unicode text never escapes as anything but ConfigError."""
    _load_or_config_error(text)


@_PROPERTY
@given(_GRAMMARISH)
def test_grammar_shaped_text_raises_only_config_error(text: str) -> None:
    """Lines built from real keywords and values reach the deep checks, safely."""
    _load_or_config_error(text)


_VALUES = st.lists(_TOKENS.filter(lambda t: t not in ("{", "}", "\r")), max_size=4)
_ATTRIBUTE_LINE = st.builds(
    lambda name, op, values: f"  {name} {op} {' '.join(values)}",
    st.sampled_from([*ATTRIBUTES, "mdns"]),
    st.sampled_from(["=", "=", "+=", "-="]),
    _VALUES,
)
_BLOCK = st.builds(
    lambda header, lines: header + "\n{\n" + "\n".join(lines) + "\n}\n",
    st.sampled_from(["defaults", "service echo", "service ssh", "service time", "service x"]),
    st.lists(_ATTRIBUTE_LINE, max_size=12),
)


@_PROPERTY
@given(st.lists(_BLOCK, max_size=5).map("".join))
def test_well_formed_blocks_with_random_attributes_raise_only_config_error(text: str) -> None:
    """Syntactically valid blocks with random attribute values exercise every value check."""
    _load_or_config_error(text)


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    """A real configuration with a few lines deleted, duplicated, cut or spliced."""
    lines = draw(st.sampled_from([SEED, DEBIAN.replace("= yes", "= no")])).split("\n")
    for _ in range(draw(st.integers(1, 6))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "cut", "splice"]))
        if action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "cut":
            lines[index] = lines[index][: draw(st.integers(0, len(lines[index])))]
        else:
            lines[index] = draw(_LINE)
        if not lines:
            lines = [""]
    return "\n".join(lines)


@_PROPERTY
@given(_mutated())
def test_mutated_real_configurations_raise_only_config_error(text: str) -> None:
    """The seed article and Debian's files, damaged at random, fail only with ConfigError."""
    _load_or_config_error(text)


def test_seed_unmodified_loads() -> None:
    """The mutation base itself loads, so mutations start from a valid configuration."""
    assert len(load_text(SEED, services=EXTRA_SERVICES,
                         executables=("/usr/sbin/sshd", "/usr/lib/dovecot/imap-login"),
                         ).services) == 8  # fmt: skip
