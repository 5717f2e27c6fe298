"""
One broken service never stops the others, on the real daemon.

A Debian-like tree with stale files (a server that is gone, a user that is
gone) starts every valid service and reports the broken ones in ``superd
status``, the log and the metrics; a typo'd ``only_from`` or ``bind`` keeps
that service from starting; a reload with one broken block, while clients
hammer the services, refuses and resets nothing, keeps the broken service's
previous definition and applies the rest; ``--strict`` and ``all_or_nothing
= yes`` keep the refuse-everything rule.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from superd.cli.control import request
from tests.integration.conftest import StartSuperd
from tests.integration.external import service_block
from tests.integration.harness import Superd, level_of, run_twistd
from tests.integration.reloading import Hammer, echo_block, echo_once, latest_port, refused
from tests.integration.test_metrics import scrape


def superd_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from superd.cli.main import main; sys.exit(main())",
         *args], capture_output=True, text=True, timeout=60, check=False)


def of(superd: Superd, name: str) -> list[dict[str, Any]]:
    return [e for e in superd.events() if e.get("event") == name]


def builtin(name: str, service_id: str, *, socket_type: str = "stream",
            disable: str = "no") -> str:
    """A Debian-style builtin block, on 127.0.0.1 and a port the kernel picks."""
    wait = "no" if socket_type == "stream" else "yes"
    return (f"service {name}\n{{\n\tdisable\t\t= {disable}\n\ttype\t\t= INTERNAL UNLISTED\n"
            f"\tid\t\t= {service_id}\n\tsocket_type\t= {socket_type}\n\twait\t\t= {wait}\n"
            f"\tport\t\t= 0\n\tbind\t\t= 127.0.0.1\n}}\n")


AMANDA = """\
# default: on
# description: The amanda service (its package was removed; the file stayed).
service amanda
{
	type		= UNLISTED
	socket_type	= dgram
	protocol	= udp
	wait		= yes
	port		= 0
	bind		= 127.0.0.1
	user		= backup
	group		= backup
	server		= /usr/lib/amanda/amandad
	server_args	= -auth=bsd amdump amindexd amidxtaped
}

service amandaidx
{
	type		= UNLISTED
	socket_type	= stream
	wait		= no
	port		= 0
	bind		= 127.0.0.1
	user		= backup
	server		= /usr/lib/amanda/amindexd
}
"""


def debian_tree(root: Path) -> Path:
    """``xinetd.conf`` with Debian's defaults and ``includedir``, two stock
    builtins (their dgram halves disabled), a working external server, and
    what a removed package leaves behind."""
    (root / "xinetd.conf").write_text(
        "defaults\n{\n\tlog_on_failure\t= HOST\n\tinstances\t= 60\n\tper_source\t= 10\n"
        "\tcps\t\t= 25 30\n}\n\nincludedir xinetd.d\n")
    d = root / "xinetd.d"
    d.mkdir()
    (d / "echo").write_text(builtin("echo", "echo-stream")
                            + builtin("echo", "echo-dgram", socket_type="dgram", disable="yes"))
    (d / "daytime").write_text(builtin("daytime", "daytime-stream") + builtin(
        "daytime", "daytime-dgram", socket_type="dgram", disable="yes"))
    (d / "cat").write_text(service_block("cat", "/bin/cat"))
    (d / "amanda").write_text(AMANDA)
    (d / "tangdx").write_text(service_block("tangd", "/bin/cat", user="_tang_gone"))
    (d / "daytime.dpkg-old").write_text(builtin("daytime", "old"))
    (d / "gone").symlink_to(root / "nowhere")
    return d


def test_a_debian_tree_with_stale_files_starts_every_valid_service(
        superd_factory: StartSuperd, tmp_path: Path) -> None:
    """Every valid service serves; the stale ones are failed, each error
    logged with FILE:LINE and listed by ``superd status`` and the metrics;
    skipped files and disabled services are in the start log."""
    d = debian_tree(tmp_path)
    superd = superd_factory(tmp_path / "xinetd.conf", "--metrics", "tcp:0:interface=127.0.0.1")
    superd.allow_errors = True
    assert echo_once("127.0.0.1", superd.port("echo-stream")) == b"ping\n"
    assert echo_once("127.0.0.1", superd.port("cat")) == b"ping\n"
    assert b"20" in echo_once("127.0.0.1", superd.port("daytime-stream"))
    errors = [
        f"{d / 'amanda'}:13: service amanda: server: /usr/lib/amanda/amandad is not an"
        " executable file",
        f"{d / 'amanda'}:25: service amandaidx: server: /usr/lib/amanda/amindexd is not an"
        " executable file",
        f"{d / 'tangdx'}:10: service tangd: user: unknown user '_tang_gone'"]
    # The log: one error per problem and per failed service, nothing else at error level.
    assert [e["problem"] for e in of(superd, "config_error")] == errors
    failed = of(superd, "service_failed")
    assert [(e["service_id"], e["where"], e["problems"]) for e in failed] == [
        ("amanda", f"{d / 'amanda'}:3", errors[:1]),
        ("amandaidx", f"{d / 'amanda'}:17", errors[1:2]),
        ("tangd", f"{d / 'tangdx'}:1", errors[2:])]
    assert {e["event"] for e in superd.errors()} == {"config_error", "service_failed"}
    notes = {e["path"]: e["note"] for e in of(superd, "config_note")}
    assert set(notes) == {str(d / "daytime.dpkg-old"), str(d / "gone")}
    assert "skipped" in notes[str(d / "gone")]
    assert [e["service_id"] for e in of(superd, "service_disabled")] == [
        "daytime-dgram", "echo-dgram"]
    assert all(level_of(e) == "info" for e in of(superd, "service_disabled"))
    (ready,) = of(superd, "ready")
    assert (ready["failed"], ready["services"]) == (3, 3)
    assert superd.stderr().splitlines()[-1] == (
        "superd: 3 configuration errors; 3 services not started, 3 started")
    # superd status, as JSON and as text.
    status = request(superd.state_dir, "status")["status"]
    assert [s["id"] for s in status["services"]] == ["cat", "daytime-stream", "echo-stream"]
    assert [(f["id"], f["state"], [p["text"] for p in f["problems"]])
            for f in status["failed"]] == [
        ("amanda", "failed", errors[:1]), ("amandaidx", "failed", errors[1:2]),
        ("tangd", "failed", errors[2:])]
    assert status["failed"][2]["problems"][0]["line"] == 10
    assert [x["id"] for x in status["disabled"]] == ["daytime-dgram", "echo-dgram"]
    text = superd_cli("status", "--state-dir", superd.state_dir)
    assert text.returncode == 0
    assert "3 services, 3 failed, 2 disabled" in text.stdout
    assert f"  tangd  {d / 'tangdx'}:1  failed, not running\n    {errors[2]}\n" in text.stdout
    metrics = scrape(int(of(superd, "metrics")[0]["port"]))
    assert metrics["superd_services", (("state", "failed"),)] == 3
    assert metrics["superd_services", (("state", "running"),)] == 3
    assert metrics["superd_service_failed", (("service", "tangd"),)] == 1
    assert metrics["superd_configuration_errors", ()] == 3


def test_a_typo_in_only_from_or_bind_cannot_start_that_service(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path]) -> None:
    """A misspelt ``only_from`` or ``bind`` would open the service to
    everyone: it does not start (no socket at all), and says what was meant;
    the others serve."""
    open_to_all = echo_block("open").replace("cps", "only_form   = 127.0.0.1\n\tcps")
    anywhere = echo_block("anywhere").replace("bind        = 127.0.0.1", "bnid = 127.0.0.1")
    conf = conf_dir(echo=echo_block("echo"), open=open_to_all, anywhere=anywhere)
    superd = superd_factory(conf)
    superd.allow_errors = True
    assert echo_once("127.0.0.1", superd.port("echo")) == b"ping\n"
    listening = {e["service_id"] for e in of(superd, "listening")}
    assert listening == {"echo"}
    failed = {f["id"]: [p["text"] for p in f["problems"]]
              for f in request(superd.state_dir, "status")["status"]["failed"]}
    assert failed == {
        "anywhere": [f"{conf / 'anywhere'}:8: service echo: bnid: unknown attribute;"
                     " did you mean 'bind'?"],
        "open": [f"{conf / 'open'}:9: service echo: only_form: unknown attribute;"
                 " did you mean 'only_from'?"]}


def test_reload_with_a_broken_block_under_load_refuses_and_resets_nothing(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path]) -> None:
    """While clients hammer three services, a reload breaks one block,
    changes another and adds one: no client is refused or reset, the broken
    service keeps serving with its previous definition, the good changes
    apply, and ``superd reload`` exits 78 saying it was partially applied."""
    conf = conf_dir(a=echo_block("a"), b=echo_block("b"), c=echo_block("c"),
                    d=echo_block("d"))
    superd = superd_factory(conf)
    superd.allow_errors = True
    ports = {name: superd.port(name) for name in "abcd"}
    hammers = [Hammer("127.0.0.1", ports[name]) for name in "abc"]
    for hammer in hammers:
        hammer.start()
    try:
        _wait_for(lambda: all(h.ok >= 20 for h in hammers))
        (conf / "c").write_text(echo_block("c").replace("wait        = no",
                                                        "wait        = perhaps"))
        (conf / "d").write_text(echo_block("d", extra="only_from = 127.0.0.2"))
        (conf / "e").write_text(echo_block("e"))
        done = superd_cli("reload", "--state-dir", superd.state_dir)
        served = [h.ok for h in hammers]
        _wait_for(lambda: all(h.ok >= n + 20 for h, n in zip(hammers, served, strict=True)))
    finally:
        for hammer in hammers:
            hammer.finish()
    assert [h.failures for h in hammers] == [[], [], []]
    assert done.returncode == 78, done.stderr
    assert done.stdout.startswith("Reconfigured: new=1 old=4 dropped=0 ")
    assert done.stderr == (
        "superd reload: partially applied: 1 service failed; everything else was applied:\n"
        f"  {conf / 'c'}:6: service echo: wait: expected yes or no, got 'perhaps'\n"
        f"  kept: service c ({conf / 'c'}:1) runs its previous definition: its new block"
        f" ({conf / 'c'}:1) has 1 error\n")
    # The broken service: same socket, previous definition.
    assert latest_port(superd, "c") == ports["c"]
    assert echo_once("127.0.0.1", ports["c"]) == b"ping\n"
    # The good change and the new service.
    assert refused("127.0.0.1", ports["d"])
    assert echo_once("127.0.0.1", ports["d"], source="127.0.0.2") == b"ping\n"
    assert echo_once("127.0.0.1", latest_port(superd, "e")) == b"ping\n"
    status = request(superd.state_dir, "status")["status"]
    assert (status["reload"]["ok"], status["reload"]["partial"]) == (False, True)
    (failed,) = status["failed"]
    assert (failed["id"], failed["state"], failed["previous"]) == (
        "c", "failed at reload", [f"{conf / 'c'}:1"])
    kept = {s["id"]: s["kept"] for s in status["services"]}
    assert kept == {"a": None, "b": None, "c": f"its new block ({conf / 'c'}:1) has 1 error",
                    "d": None, "e": None}
    (event,) = of(superd, "service_failed")
    assert event["previous"] == [f"{conf / 'c'}:1"] and level_of(event) == "error"
    # Repaired: the next reload applies it, and nothing is failed any more.
    (conf / "c").write_text(echo_block("c", extra="instances = 5"))
    fixed = superd_cli("reload", "--state-dir", superd.state_dir)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.startswith("Reconfigured: new=0 old=5 dropped=0 ")
    status = request(superd.state_dir, "status")["status"]
    assert status["failed"] == [] and status["reload"]["ok"] is True
    assert echo_once("127.0.0.1", ports["c"]) == b"ping\n"


def _wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_a_handler_that_cannot_be_built_fails_alone(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """A user protocol whose factory raises at start does not run; the
    others do, and status says why."""
    (tmp_path / "raising_factory.py").write_text(
        "def make(context): raise OSError('no database')\n")
    mine = echo_block("mine").replace("cps", "factory     = raising_factory:make\n\tcps")
    conf = conf_dir(echo=echo_block("echo"), mine=mine)
    superd = superd_factory(conf, env={"PYTHONPATH": str(tmp_path)})
    superd.allow_errors = True
    assert echo_once("127.0.0.1", superd.port("echo")) == b"ping\n"
    (failed,) = request(superd.state_dir, "status")["status"]["failed"]
    assert failed["id"] == "mine"
    assert [p["text"] for p in failed["problems"]] == [
        f"{conf / 'mine'}:9: service echo: factory: raising_factory:make: build_factory"
        " failed: OSError: no database"]


def test_strict_and_all_or_nothing_refuse_everything_at_start(
        conf_dir: Callable[..., Path]) -> None:
    """One broken block: with --strict, or all_or_nothing = yes in the
    defaults, superd exits 78 and nothing listens, as before isolation."""
    broken = echo_block("c").replace("wait        = no", "wait        = perhaps")
    conf = conf_dir(a=echo_block("a"), c=broken)
    expected = (f"{conf / 'c'}:6: service echo: wait: expected yes or no, got 'perhaps'\n"
                "superd: 1 configuration error; nothing started\n")
    strict = run_twistd(str(conf), "--strict")
    assert strict.returncode == 78 and strict.stderr == expected
    (conf / "defaults").write_text("defaults\n{\n\tall_or_nothing = yes\n}\n")
    switched = run_twistd(str(conf))
    assert switched.returncode == 78 and switched.stderr == expected
    for result in (strict, switched):
        assert not [line for line in result.stdout.splitlines()
                    if '"listening"' in line and json.loads(line).get("event") == "listening"]


def test_strict_keeps_the_whole_running_configuration_on_a_bad_reload(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path]) -> None:
    """Under --strict a reload with one broken block changes nothing: the
    added service does not listen and ``superd reload`` says the running
    configuration is kept."""
    conf = conf_dir(a=echo_block("a"), c=echo_block("c"))
    superd = superd_factory(conf, "--strict")
    superd.allow_errors = True
    (conf / "c").write_text(echo_block("c").replace("wait        = no", "wait        = perhaps"))
    (conf / "e").write_text(echo_block("e"))
    done = superd_cli("reload", "--state-dir", superd.state_dir)
    assert done.returncode == 78
    assert done.stderr == ("superd reload: failed; the running configuration is kept:\n"
                           f"  {conf / 'c'}:6: service echo: wait: expected yes or no,"
                           " got 'perhaps'\n")
    assert "e" not in {e["service_id"] for e in of(superd, "listening")}
    status = request(superd.state_dir, "status")["status"]
    assert (status["reload"]["ok"], status["reload"]["partial"]) == (False, False)
    assert [s["id"] for s in status["services"]] == ["a", "c"] and status["failed"] == []
    assert echo_once("127.0.0.1", superd.port("c")) == b"ping\n"

