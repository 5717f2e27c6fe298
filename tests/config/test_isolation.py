"""
Tests for per-service isolation (``load_configuration(isolate=True)`` and
``superd.config.isolation``): a broken block stops itself, a broken file its
services, a broken defaults section everything -- and all or nothing stays
available.
"""

from __future__ import annotations

from typing import Mapping, Union

import pytest

from superd.config.errors import ConfigError
from superd.config.load import load_configuration
from superd.config.model import Configuration, DisabledReason
from tests.config.fakes import fake_environment

ECHO = "service echo\n{\n type = INTERNAL\n socket_type = stream\n wait = no\n}\n"
DAYTIME = "service daytime\n{\n type = INTERNAL\n socket_type = stream\n wait = no\n}\n"
AMANDA = """\
# default: on
# description: The amanda service
service amanda
{
	socket_type	= dgram
	protocol	= udp
	wait		= yes
	user		= backup
	group		= backup
	groups		= yes
	server		= /usr/lib/amanda/amandad
	server_args	= -auth=bsd amdump amindexd amidxtaped
	disable		= no
}
"""
TANGD = """\
service tangd
{
	port		= 7500
	socket_type	= stream
	wait		= no
	user		= _tang
	server		= /bin/cat
	type		= UNLISTED
}
"""


def _load(files: Mapping[str, Union[str, bytes]], path: str = "/x",
          **kw: bool) -> Configuration:
    services = {("amanda", "udp"): 10080}
    env = fake_environment(files, services={**_services(), **services},
                           executables=("/bin/cat",))
    return load_configuration(path, environment=env, isolate=True, **kw)


def _services() -> dict[tuple[str, str], int]:
    from tests.config.fakes import SERVICES

    return dict(SERVICES)


def _failed(config: Configuration) -> list[tuple[str, str, list[str]]]:
    return [(f.id, str(f.location), [str(p) for p in f.problems]) for f in config.failed]


def test_stale_files_stop_only_their_own_services() -> None:
    """A tree left by 'apt remove' (server gone, user gone) runs every valid service;
    the stale ones are failed with their errors (issue 14: nothing was served)."""
    config = _load({"/x/amanda": AMANDA, "/x/echo": ECHO, "/x/tangdx": TANGD})
    assert [s.id for s in config.services] == ["echo"]
    assert _failed(config) == [
        ("amanda", "/x/amanda:3", [
            "/x/amanda:11: service amanda: server: /usr/lib/amanda/amandad is not an "
            "executable file"]),
        ("tangd", "/x/tangdx:1", ["/x/tangdx:6: service tangd: user: unknown user '_tang'"]),
    ]
    assert [str(p) for p in config.problems] == [
        *_failed(config)[0][2], *_failed(config)[1][2]]
    assert (config.ok, config.error_count, config.failed_files) == (False, 2, ())


def test_all_or_nothing_is_still_the_default() -> None:
    """Without isolate the same tree raises ConfigError with the same problems."""
    files = {"/x/amanda": AMANDA, "/x/echo": ECHO, "/x/tangdx": TANGD}
    isolated = _load(files)
    env = fake_environment(files, services={**_services(), ("amanda", "udp"): 10080},
                           executables=("/bin/cat",))
    with pytest.raises(ConfigError) as caught:
        load_configuration("/x", environment=env)
    assert caught.value.problems == isolated.problems


@pytest.mark.parametrize("typo", ["only_form = 127.0.0.1", "bnid = 127.0.0.1",
                                  "onlyfrom = 127.0.0.1", "interfac = 127.0.0.1"])
def test_a_typo_in_a_restricting_attribute_cannot_start_the_service(typo: str) -> None:
    """The service that would have run open to everyone does not run."""
    config = _load({"/x/echo": ECHO.replace("}", f" {typo}\n}}"), "/x/daytime": DAYTIME})
    assert [s.id for s in config.services] == ["daytime"]
    ((name, _, problems),) = _failed(config)
    assert name == "echo" and "did you mean" in problems[0]


def test_a_comment_after_a_value_stops_the_service() -> None:
    """``only_from = 10.0.0.1 # office`` is refused, not read as two entries."""
    config = _load({"/x/echo": ECHO.replace("}", " only_from = 10.0.0.1 # office\n}")})
    assert _failed(config) == [("echo", "/x/echo:1", [
        "/x/echo:6: service echo: only_from: comments must be on their own line "
        "('# office' follows the values)"])]


def test_a_broken_defaults_section_stops_every_service() -> None:
    """The defaults restrict every service: a bad line there stops them all."""
    files = {"/x/a": "defaults\n{\n only_from = 10.0.0.0/33\n}\n", "/x/echo": ECHO,
             "/x/daytime": DAYTIME}
    config = _load(files)
    assert config.services == ()
    problem = "/x/a:3: defaults: only_from: '10.0.0.0/33' is not a valid network (ADDRESS/PREFIX)"
    assert _failed(config) == [("daytime", "/x/daytime:1", [problem]),
                               ("echo", "/x/echo:1", [problem])]


def test_a_misspelt_defaults_header_stops_every_service() -> None:
    """``defualts`` may have held only_from: nothing runs without it."""
    files = {"/x/a": "defualts\n{\n only_from = 10.0.0.0/8\n}\n", "/x/echo": ECHO}
    config = _load(files)
    assert config.services == ()
    assert _failed(config) == [("echo", "/x/echo:1", [
        "/x/a:1: defaults: unknown keyword 'defualts'; did you mean 'defaults'?"])]


def test_a_line_outside_any_block_stops_the_services_of_its_file() -> None:
    """Nobody can tell which block a stray line belonged to: its file's services stop,
    other files' run."""
    files = {"/x/a": ECHO + " only_from = 10.0.0.1\n", "/x/daytime": DAYTIME}
    config = _load(files)
    assert [s.id for s in config.services] == ["daytime"]
    problem = ("/x/a:7: expected 'service NAME', 'defaults', 'include FILE' or "
               "'includedir DIR', got 'only_from = 10.0.0.1'")
    assert _failed(config) == [("echo", "/x/a:1", [problem])]
    assert config.failed_files == ("/x/a",)


def test_a_stray_line_in_a_file_with_defaults_stops_everything() -> None:
    """The same stray line where a defaults section lives may have been meant for it."""
    files = {"/x/a": "defaults\n{\n}\n only_from = 10.0.0.1\n", "/x/echo": ECHO}
    config = _load(files)
    assert (config.services, [f.id for f in config.failed]) == ((), ["echo"])


def test_a_misspelt_service_header_is_failed_by_name() -> None:
    """``servce time`` is reported as service time, failed."""
    config = _load({"/x/a": ECHO + "servce time\n{\n wait = no\n}\n"})
    assert [s.id for s in config.services] == ["echo"]
    assert _failed(config) == [("time", "/x/a:7", [
        "/x/a:7: service time: unknown keyword 'servce'; did you mean 'service'?"])]


def test_a_file_that_is_not_text_stops_the_services_it_names() -> None:
    """One error for the whole file; its services, recovered by their headers, are
    failed; the file is in failed_files."""
    binary = b"\x7fELF\x00\x01service ghost\n" + ECHO.encode() + b"\x00" * 64
    config = _load({"/x/a": binary, "/x/daytime": DAYTIME})
    assert [s.id for s in config.services] == ["daytime"]
    assert _failed(config) == [("echo", "/x/a:2", ["/x/a:1: not a text file (it holds NUL bytes)"])]
    assert config.failed_files == ("/x/a",)


def test_an_unreadable_include_is_a_failed_file() -> None:
    """What a missing include defined is unknown; the daemon learns its path."""
    config = _load({"/x/conf": "include gone\n" + ECHO}, path="/x/conf")
    assert [s.id for s in config.services] == ["echo"]
    assert [str(p) for p in config.problems] == [
        "/x/conf:1: cannot read /x/gone: No such file or directory"]
    assert (config.failed, config.failed_files) == ((), ("/x/gone",))


def test_an_unclosed_block_fails_and_the_next_one_runs() -> None:
    """A forgotten '}' stops the block it belongs to only."""
    config = _load({"/x/a": ECHO.replace("}\n", "") + DAYTIME})
    assert [s.id for s in config.services] == ["daytime"]
    assert _failed(config) == [
        ("echo", "/x/a:1", ["/x/a:1: service echo: block opened here has no closing '}'"])]


def test_of_two_clashing_services_the_later_fails() -> None:
    """As xinetd, the first to claim the address keeps it."""
    config = _load({"/x/a": ECHO, "/x/b": ECHO.replace("echo", "echo-b", 1).replace(
        " wait", " id = echo2\n port = 7\n type = INTERNAL UNLISTED\n wait")})
    assert [s.id for s in config.services] == ["echo"]
    assert [f.id for f in config.failed] == ["echo2"]


def test_a_failed_block_takes_no_address_from_a_valid_one() -> None:
    """A broken block earlier in the tree does not make a clash for a valid later one."""
    broken = ECHO.replace("}", " cps = 10\n}")
    config = _load({"/x/a": broken, "/x/b": ECHO})
    assert [str(s.location) for s in config.services] == ["/x/b:1"]
    assert [str(f.location) for f in config.failed] == ["/x/a:1"]


def test_strict_makes_each_warning_an_error_of_its_service() -> None:
    """--strict with isolation: the warned service fails, the others run."""
    config = _load({"/x/a": ECHO.replace("}", " frobnicate = 1\n}"), "/x/b": DAYTIME},
                   strict=True)
    assert [s.id for s in config.services] == ["daytime"]
    assert _failed(config) == [("echo", "/x/a:1", [
        "/x/a:6: service echo: frobnicate: unknown attribute (refused with --strict)"])]
    assert config.warnings == ()


def test_disabled_services_are_kept_with_why() -> None:
    """disable = yes, defaults disabled and a missing enabled entry are all listed,
    in reading order, with the id a block names."""
    files = {
        "/x/a": "defaults\n{\n disabled = daytime\n}\n",
        "/x/b": ECHO.replace("}", " disable = yes\n id = echo-stream\n}") + DAYTIME,
    }
    config = _load(files)
    assert [(d.id, d.name, str(d.location), d.reason) for d in config.disabled] == [
        ("echo-stream", "echo", "/x/b:1", DisabledReason.DISABLE),
        ("daytime", "daytime", "/x/b:9", DisabledReason.DISABLED),
    ]
    enabled = _load({"/x/a": "defaults\n{\n enabled = echo\n}\n", "/x/b": ECHO + DAYTIME})
    assert [s.id for s in enabled.services] == ["echo"]
    assert [(d.id, d.reason) for d in enabled.disabled] == [
        ("daytime", DisabledReason.NOT_ENABLED)]
