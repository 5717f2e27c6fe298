"""Tests for superd.daemon.tap: command-line options, configuration refusal, assembly."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

import superd
from superd.config.load import load_configuration
from superd.config.model import Configuration
from superd.core.exits import EX_USAGE
from superd.core.paths import DEFAULT_CONFIG, default_state_dir
from superd.core.runtime import Runtime, RuntimeOptions
from superd.daemon import heap, tap
from superd.daemon.options import Options
from superd.daemon.service import SuperdService
from superd.daemon.tap import assemble, running_as_daemon
from tests.fakes import make_parts

ECHO = """\
service echo
{
	type        = INTERNAL UNLISTED
	socket_type = stream
	wait        = no
	port        = 0
	bind        = 127.0.0.1
}
"""


def parse(*argv: str) -> tuple[Options, io.StringIO]:
    options = Options()
    options.stderr = err = io.StringIO()
    options.parseOptions(list(argv))
    return options, err


def test_default_state_dir() -> None:
    """Root keeps state in /var/lib/superd; others under XDG_STATE_HOME or ~/.local/state."""
    assert default_state_dir(0, {"XDG_STATE_HOME": "/x"}) == "/var/lib/superd"
    assert default_state_dir(1000, {"XDG_STATE_HOME": "/x", "HOME": "/h"}) == "/x/superd"
    assert default_state_dir(1000, {"HOME": "/h"}) == "/h/.local/state/superd"


def test_options_load_configuration_and_runtime_options(tmp_path: Path) -> None:
    """-c loads the configuration; the other options become RuntimeOptions."""
    (tmp_path / "echo").write_text(ECHO)
    options, err = parse("-c", str(tmp_path), "--state-dir", "/s", "--limit", "40",
                         "--grace", "1.5", "--ident-port", "1113", "--backlog", "99")
    assert options.configuration is not None
    assert [s.id for s in options.configuration.services] == ["echo"]
    assert options.runtime_options() == RuntimeOptions(
        state_dir="/s", limit=40, grace=1.5, ident_port=1113, backlog=99)
    assert err.getvalue() == ""
    options, _ = parse("-c", str(tmp_path), "--cgroup", "none")
    assert options.runtime_options().cgroup == "none"


def test_config_defaults_to_etc_superd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without -c the daemon reads /etc/superd, as every superd command does."""
    read: list[str] = []
    monkeypatch.setattr(Options, "_load",
                        lambda self, path: read.append(path) or Configuration(()))
    parse()
    assert read == [DEFAULT_CONFIG]


def test_an_empty_config_exits_64() -> None:
    """-c '' is a usage error: EX_USAGE, whatever twistd does with usage errors."""
    with pytest.raises(SystemExit) as caught:
        parse("-c", "")
    assert caught.value.code == EX_USAGE


@pytest.mark.parametrize("argv", [["--no-such-option"], ["-c"], ["extra"],
                                  ["--grace", "soon"]])
def test_usage_errors_exit_64_in_one_line(argv: list[str]) -> None:
    """A bad command line exits 64 (twistd would exit 1 after its whole
    usage text) with what is wrong and where help is, on stderr."""
    options = Options()
    options.stderr = err = io.StringIO()
    with pytest.raises(SystemExit) as caught:
        options.parseOptions(argv)
    assert caught.value.code == EX_USAGE
    first, second = err.getvalue().splitlines()
    assert first.startswith("superd: ") and len(first) > len("superd: ")
    assert second == "superd: see 'twistd superd --help'"


def test_version_is_printed_where_asked() -> None:
    """--version prints superd's version on the options' stdout and exits 0."""
    options = Options()
    options.stdout = out = io.StringIO()
    with pytest.raises(SystemExit) as caught:
        options.parseOptions(["--version"])
    assert (caught.value.code, out.getvalue()) == (0, f"superd {superd.__version__}\n")


def test_config_error_prints_every_problem_and_exits_78(tmp_path: Path) -> None:
    """A refused configuration: every problem on stderr, a count, SystemExit(78)."""
    (tmp_path / "bad").write_text(ECHO.replace("wait        = no", "wait = perhaps")
                                  .replace("port        = 0", "port = -1"))
    with pytest.raises(SystemExit) as caught:
        parse("-c", str(tmp_path))
    assert caught.value.code == 78


def test_config_error_text(tmp_path: Path) -> None:
    """The stderr text is each problem's FILE:LINE line, then the count."""
    (tmp_path / "bad").write_text(ECHO.replace("wait        = no", "wait = perhaps"))
    options = Options()
    options.stderr = err = io.StringIO()
    with pytest.raises(SystemExit):
        options.parseOptions(["-c", str(tmp_path)])
    assert err.getvalue() == (
        f"{tmp_path / 'bad'}:5: service echo: wait: expected yes or no, got 'perhaps'\n"
        "superd: 1 configuration error; nothing started\n")


def test_warnings_are_printed(tmp_path: Path) -> None:
    """Warnings (unknown attributes) are printed but do not stop startup."""
    (tmp_path / "echo").write_text(ECHO.replace("\tport", "\tmdns        = yes\n\tport"))
    options, err = parse("-c", str(tmp_path))
    assert options.configuration is not None
    assert err.getvalue().startswith("warning: ")
    assert "mdns" in err.getvalue()


def test_syslog_ident(tmp_path: Path) -> None:
    """--syslog-ident reaches RuntimeOptions (default superd); an ident that
    would break ``IDENT[PID]:`` parsing is a usage error."""
    (tmp_path / "echo").write_text(ECHO)
    assert parse("-c", str(tmp_path))[0].runtime_options().syslog_ident == "superd"
    options, _ = parse("-c", str(tmp_path), "--syslog-ident", "xinetd")
    assert options.runtime_options().syslog_ident == "xinetd"
    for bad in ("", "two words", "x:y", "x[1]", "x" * 65, "bell\a"):
        with pytest.raises(SystemExit) as caught:
            parse("-c", str(tmp_path), "--syslog-ident", bad)
        assert caught.value.code == EX_USAGE


def test_bad_numbers_are_usage_errors(tmp_path: Path) -> None:
    """Non-numeric or out-of-range option values are usage errors."""
    for argv in (["--limit", "0"], ["--grace", "-1"], ["--ident-port", "70000"],
                 ["--cgroup", "relative/path"]):
        with pytest.raises(SystemExit) as caught:
            parse("-c", str(tmp_path), *argv)
        assert caught.value.code == EX_USAGE


def test_assemble_builds_the_tree_and_state_dir(tmp_path: Path) -> None:
    """assemble creates the state directory (0700) and returns the service tree."""
    (tmp_path / "echo").write_text(ECHO)
    state = tmp_path / "state" / "nested"
    runtime = Runtime(reactor=MemoryReactorClock(),
                      options=RuntimeOptions(state_dir=str(state)))
    service = assemble(load_configuration(str(tmp_path)), runtime, io.StringIO(),
                       open_parts=make_parts)
    assert isinstance(service, SuperdService)
    assert service.settle_heap is heap.settle  # the daemon freezes its heap (superd.daemon.heap)
    assert state.is_dir() and (state.stat().st_mode & 0o777) == 0o700
    assert [c.address.describe() for c in service.listeners] == ["tcp 127.0.0.1:0"]


def test_assemble_refuses_unavailable_services(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A service whose handler cannot be built is refused at startup with exit 78,
    naming the attribute to fix."""
    (tmp_path / "brokenproto.py").write_text(
        "def make(context):\n    raise RuntimeError('no database')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    conf = tmp_path / "conf"
    conf.write_text("service mine\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
                    "\twait = no\n\tport = 0\n\tfactory = brokenproto:make\n}\n")
    configuration = load_configuration(str(conf))
    runtime = Runtime(reactor=MemoryReactorClock(),
                      options=RuntimeOptions(state_dir=str(tmp_path / "s")))
    err = io.StringIO()
    with pytest.raises(SystemExit) as caught:
        assemble(configuration, runtime, err, open_parts=make_parts)
    assert caught.value.code == 78
    assert (f"{conf}:7: service mine: factory: brokenproto:make: build_factory failed: "
            "RuntimeError: no database") in err.getvalue()


def test_plugin_provides_service_maker() -> None:
    """The twistd plugin is an IServiceMaker named superd using superd.daemon.tap."""
    from twisted.plugins.superd_plugin import serviceMaker

    assert verifyObject(IServiceMaker, serviceMaker)
    assert IPlugin.providedBy(serviceMaker)
    assert serviceMaker.tapname == "superd"
    assert serviceMaker.options is Options


def test_running_as_daemon_reads_twistd_options() -> None:
    """Without twistd's -n the tap knows it will be daemonized."""
    options = Options()
    assert not running_as_daemon(options)  # no twistd around it
    options.parent = {"nodaemon": False}  # type: ignore[attr-defined]
    assert running_as_daemon(options)
    options.parent = {"nodaemon": True}  # type: ignore[attr-defined]
    assert not running_as_daemon(options)


def test_ban_store_option_overrides_the_configuration_file(tmp_path: Path) -> None:
    """--ban-store wins over the defaults' ban_store; without it the file's is used; else none."""
    (tmp_path / "echo").write_text(ECHO)
    assert parse("-c", str(tmp_path))[0].ban_store() is None
    (tmp_path / "fleet").write_text("defaults\n{\n\tban_store = redis://127.0.0.1:6390/1\n}\n")
    assert parse("-c", str(tmp_path))[0].ban_store() == "redis://127.0.0.1:6390/1"
    options, _ = parse("-c", str(tmp_path), "--ban-store", "redis://127.0.0.9/4")
    assert options.ban_store() == "redis://127.0.0.9/4"


def test_log_connections_sends_connection_events_to_the_main_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --log-connections the text main log gets no per-connection
    START/EXIT; with it, the channel publishes them there."""
    from superd.observe import events
    fresh = events.ConnectionEvents()
    monkeypatch.setattr(events, "connection_events", fresh)
    (tmp_path / "echo").write_text(ECHO)
    tap.route_connection_events(parse("-c", str(tmp_path))[0])
    assert not fresh.sent_to_main_log
    tap.route_connection_events(parse("-c", str(tmp_path), "--log-connections")[0])
    assert fresh.sent_to_main_log


BROKEN = ECHO.replace("service echo", "service daytime").replace(
    "wait        = no", "wait        = perhaps")


def _runtime(tmp_path: Path) -> Runtime:
    return Runtime(reactor=MemoryReactorClock(),
                   options=RuntimeOptions(state_dir=str(tmp_path / "state")))


def test_a_broken_service_does_not_stop_the_others(tmp_path: Path) -> None:
    """The broken block is failed, the good one starts; its error and a count
    are printed once the handlers are built."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "echo").write_text(ECHO)
    (conf / "daytime").write_text(BROKEN)
    options, err = parse("-c", str(conf))
    assert options.configuration is not None
    assert err.getvalue() == ""
    top = assemble(options.configuration, _runtime(tmp_path), err, open_parts=make_parts)
    assert [s.id for s, _ in top.groups] == ["echo"]
    assert [f.id for f in top.configuration.failed] == ["daytime"]
    assert err.getvalue() == (
        f"{conf / 'daytime'}:5: service daytime: wait: expected yes or no, got 'perhaps'\n"
        "superd: 1 configuration error; 1 service not started, 1 started\n")


def test_strict_or_all_or_nothing_refuses_everything(tmp_path: Path) -> None:
    """--strict and ``all_or_nothing = yes`` keep the refuse-everything rule:
    one broken block, exit 78, nothing started."""
    (tmp_path / "echo").write_text(ECHO)
    (tmp_path / "daytime").write_text(BROKEN)
    expected = (f"{tmp_path / 'daytime'}:5: service daytime: wait: expected yes or no,"
                " got 'perhaps'\nsuperd: 1 configuration error; nothing started\n")
    with pytest.raises(SystemExit) as caught:
        parse("-c", str(tmp_path), "--strict")
    assert caught.value.code == 78
    (tmp_path / "all").write_text("defaults\n{\n\tall_or_nothing = yes\n}\n")
    options = Options()
    options.stderr = err = io.StringIO()
    with pytest.raises(SystemExit) as caught:
        options.parseOptions(["-c", str(tmp_path)])
    assert caught.value.code == 78
    assert err.getvalue() == expected


def test_a_service_that_cannot_be_built_fails_alone(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler that cannot be built (a factory that raises) fails its
    service; the others start.  Under --strict it refuses everything."""
    (tmp_path / "brokenproto.py").write_text(
        "def make(context):\n    raise RuntimeError('no database')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "echo").write_text(ECHO)
    (conf / "mine").write_text(
        "service mine\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
        "\twait = no\n\tport = 0\n\tfactory = brokenproto:make\n}\n")
    configuration = load_configuration(str(conf), isolate=True)
    err = io.StringIO()
    top = assemble(configuration, _runtime(tmp_path), err, open_parts=make_parts)
    assert [s.id for s, _ in top.groups] == ["echo"]
    (failed,) = top.configuration.failed
    assert failed.id == "mine" and not top.configuration.ok
    assert err.getvalue().splitlines() == [
        f"{conf / 'mine'}:7: service mine: factory: brokenproto:make: build_factory failed:"
        " RuntimeError: no database",
        "superd: 1 configuration error; 1 service not started, 1 started"]
    with pytest.raises(SystemExit) as caught:
        assemble(configuration, _runtime(tmp_path), io.StringIO(), open_parts=make_parts,
                 strict=True)
    assert caught.value.code == 78


def test_every_daemon_option_has_help() -> None:
    """Every option of ``twistd superd`` and ``superd run`` says what it is for."""
    from superd.cli.run import RunOptions

    for options in (Options, RunOptions):
        assert [row[0] for row in options.optFlags if len(row) < 3 or not row[2]] == []
        assert [row[0] for row in options.optParameters if len(row) < 4 or not row[3]] == []
        methods = [name for name in dir(options) if name.startswith("opt_")]
        assert [name for name in methods if not getattr(options, name).__doc__] == []
