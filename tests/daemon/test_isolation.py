"""Tests for superd.daemon.isolation: what runs when part of the configuration is broken."""

from __future__ import annotations

from typing import Any

import attrs

from superd.config.errors import Problem
from superd.config.model import Configuration, FailedService, Location, ServiceConfig
from superd.daemon.isolation import (
    Kept,
    all_or_nothing,
    bounded,
    failed_json,
    keep_previous,
    kept_json,
    refuses,
    shown,
    without,
)
from tests.builders import local_echo_service


def service(id: str = "echo", file: str = "conf/echo", line: int = 1, **changes: Any,
            ) -> ServiceConfig:
    return local_echo_service(id=id, location=Location(file, line), **changes)


def failed(id: str = "echo", file: str = "conf/echo", line: int = 1, name: str = "echo",
           ) -> FailedService:
    problem = Problem(file, line + 4, name, "wait", "expected yes or no, got 'perhaps'")
    return FailedService(name, id, Location(file, line), (problem,))


def config(*services: ServiceConfig, failed: tuple[FailedService, ...] = (),
           sources: tuple[str, ...] = (), **values: Any) -> Configuration:
    problems = tuple(p for f in failed for p in f.problems)
    return Configuration(services, sources=sources, failed=failed, problems=problems, **values)


def test_all_or_nothing_is_strict_or_the_defaults_switch() -> None:
    """--strict or ``all_or_nothing = yes`` ask for the whole configuration;
    at a reload whose new defaults failed, the running switch decides."""
    assert not all_or_nothing(False, config())
    assert all_or_nothing(True, config())
    assert all_or_nothing(False, config(all_or_nothing=True))
    unknown = config(defaults_failed=True)
    assert all_or_nothing(False, unknown, config(all_or_nothing=True))
    assert not all_or_nothing(False, unknown, config())
    assert not all_or_nothing(False, config(), config(all_or_nothing=True))


def test_refuses_only_when_nothing_runs_or_all_or_nothing() -> None:
    """A configuration with errors starts while some service runs; it is
    refused under all or nothing or when no service runs.  One without errors
    (even without a service: all disabled) starts."""
    broken = (failed("b"),)
    assert not refuses(config(service(), failed=broken), strict=False)
    assert refuses(config(service(), failed=broken), strict=True)
    assert refuses(config(service(), failed=broken, all_or_nothing=True), strict=False)
    assert refuses(config(failed=broken), strict=False)
    assert not refuses(config(), strict=True)


def test_without_fails_the_services_given() -> None:
    """Each service of the failures leaves ``services`` for ``failed``, with its problem."""
    a, b = service("a", port=1), service("b", port=2)
    problem = Problem("conf/echo", 7, "echo", "factory", "build_factory failed")
    result = without(config(a, b), [(b, problem)])
    assert result.services == (a,)
    assert result.failed == (FailedService("echo", "b", b.location, (problem,)),)
    assert result.problems == (problem,) and not result.ok


def test_a_failed_block_keeps_its_previous_definition_and_the_rest_applies() -> None:
    """The running service whose new block failed is kept as it runs; good
    changes and new services apply; a failed block that never ran keeps nothing."""
    broken_old = service("broken", "conf/broken", port=2)
    changed_old = service("changed", "conf/changed", port=3)
    running = config(service("same", "conf/same", port=1), broken_old, changed_old,
                     sources=("conf/broken", "conf/changed", "conf/same"))
    changed_new = attrs.evolve(changed_old, instances=4)
    added = service("added", "conf/added", port=4)
    new = config(service("same", "conf/same", port=1), changed_new, added,
                 failed=(failed("broken", "conf/broken"), failed("fresh", "conf/fresh")),
                 sources=("conf/added", "conf/broken", "conf/changed", "conf/fresh", "conf/same"))
    isolated = keep_previous(running, new)
    assert [s.id for s in isolated.configuration.services] == [
        "added", "broken", "changed", "same"]  # in reading order
    assert isolated.configuration.services[1] is broken_old
    assert changed_new in isolated.configuration.services
    assert isolated.kept == (Kept(broken_old, new.failed[0]),)
    assert isolated.kept[0].reason == "its new block (conf/broken:1) has 1 error"
    assert isolated.configuration.failed == new.failed
    assert isolated.configuration.problems == new.problems


def test_of_blocks_sharing_an_id_the_one_at_the_same_place_is_kept() -> None:
    """One service on two binds: only the block whose new text failed keeps
    its previous definition; the other takes its new one."""
    first = service("ssh", "conf/ssh", 1, bind=("127.0.0.1",))
    second = service("ssh", "conf/ssh", 12, bind=("127.0.0.2",))
    new_first = attrs.evolve(first, instances=3)
    running = config(first, second)
    isolated = keep_previous(running, config(new_first, failed=(failed("ssh", "conf/ssh", 12),)))
    assert [k.service for k in isolated.kept] == [second]
    assert set(map(id, isolated.configuration.services)) == {id(new_first), id(second)}


def test_a_block_whose_id_line_broke_is_found_by_its_place() -> None:
    """When the id itself cannot be read, the failed block is known by its
    name: the previous definition written at the same place is kept."""
    old = service("echo-local", "conf/echo", 3)
    isolated = keep_previous(config(old), config(failed=(failed("echo", "conf/echo", 3),)))
    assert [k.service for k in isolated.kept] == [old]


def test_a_good_block_with_the_same_identity_replaces_the_previous_definition() -> None:
    """A running service redefined by a good block elsewhere is not kept
    because of a broken block of the same id."""
    old = service("echo", "conf/echo", 1)
    moved = attrs.evolve(old, location=Location("conf/echo", 20))
    isolated = keep_previous(config(old), config(moved, failed=(failed("echo", "conf/echo", 1),)))
    assert isolated.kept == () and isolated.configuration.services == (moved,)


def test_services_of_a_failed_file_are_kept() -> None:
    """Every running service of a file (or directory) that could not be read
    or parsed as a whole keeps running; the others follow their new blocks."""
    inside = service("a", "conf/sub/a", port=1)
    other = service("b", "conf/b", port=2)
    running = config(inside, other, sources=("conf/b", "conf/sub/a"))
    new = config(failed_files=("conf/sub",), sources=("conf/b",))
    isolated = keep_previous(running, new)
    assert isolated.kept == (Kept(inside, path="conf/sub"),)
    assert isolated.kept[0].reason == "conf/sub could not be read or parsed as a whole"
    assert [s.id for s in isolated.configuration.services] == ["a"]  # b was removed


def test_a_failed_file_that_was_read_before_keeps_what_it_may_have_included() -> None:
    """A top file (``xinetd.conf``) that cannot be read now may be what
    included the others: their services, not read this time, are kept."""
    included = service("a", "conf/xinetd.d/a")
    running = config(included, sources=("conf/xinetd.conf", "conf/xinetd.d/a"))
    new = config(failed_files=("conf/xinetd.conf",))
    assert keep_previous(running, new).kept == (Kept(included, path="conf/xinetd.conf"),)
    # A file that was never read hid nothing: a removed file's service goes.
    assert keep_previous(running, config(failed_files=("conf/new",))).kept == ()


def test_a_new_service_on_an_address_a_kept_one_holds_fails() -> None:
    """A good new block that would bind the port a kept previous definition
    holds fails too (the reload would otherwise fail on the bind)."""
    old = service("old", "conf/old", port=7000)
    taker = service("taker", "conf/taker", port=7000, lines={"port": Location("conf/taker", 6)})
    new = config(taker, failed=(failed("old", "conf/old"),))
    isolated = keep_previous(config(old), new)
    assert isolated.configuration.services == (old,)
    (clash,) = [f for f in isolated.configuration.failed if f.id == "taker"]
    assert [str(p) for p in clash.problems] == [
        "conf/taker:6: service echo: port: tcp port 7000 on 127.0.0.1 is still used by"
        " service echo (conf/old:1), kept running because its new block (conf/old:1)"
        " has 1 error"]
    assert clash.problems[0] in isolated.configuration.problems


def test_refused_previous_definitions_are_not_kept() -> None:
    """A previous definition that could not be built again is not kept."""
    old = service()
    new = config(failed=(failed(),))
    assert keep_previous(config(old), new, frozenset({id(old)})).kept == ()


def test_broken_defaults_keep_the_daemon_wide_settings() -> None:
    """When the defaults failed, the running ban settings stay (the new ones
    are built-in values, not the file's)."""
    running = config(service(), ban_ends_sessions=False, ban_store="redis://127.0.0.1",
                     all_or_nothing=False)
    new = config(failed=(failed(),), defaults_failed=True)
    result = keep_previous(running, new).configuration
    assert (result.ban_ends_sessions, result.ban_store) == (False, "redis://127.0.0.1")
    fine = keep_previous(running, config(service(), ban_ends_sessions=True)).configuration
    assert fine.ban_ends_sessions is True


def test_json_of_failed_and_kept_services() -> None:
    """Failed services as ``superd check --json`` gives them, plus their
    state and the previous definitions running; kept ones with their reason."""
    old = service("broken", "conf/broken")
    isolated = keep_previous(config(old), config(failed=(failed("broken", "conf/broken"),
                                                         failed("new", "conf/new"))))
    entries = failed_json(isolated.configuration, isolated.kept)
    assert [(e["id"], e["state"], e["previous"]) for e in entries] == [
        ("broken", "failed at reload", ["conf/broken:1"]), ("new", "failed", [])]
    assert entries[0]["problems"][0]["line"] == 5
    assert entries[0]["problems"][0]["attribute"] == "wait"
    assert kept_json(isolated.kept[0]) == {
        "id": "broken", "name": "echo", "location": "conf/broken:1",
        "reason": "its new block (conf/broken:1) has 1 error", "failed": "conf/broken:1",
        "path": None}


def test_a_garbage_file_does_not_flood_what_is_shown() -> None:
    """Every block of a garbage file carries the file's errors: each failed
    service keeps at most MAX_FILE_ERRORS of them and a count; at most
    MAX_FILE_ERRORS failed services per file are listed one by one."""
    from superd.config.errors import MAX_FILE_ERRORS, Omitted, error_count

    junk = tuple(Problem("conf/junk", n, None, None, "junk") for n in range(1, 31))
    failed_blocks = tuple(FailedService(f"s{n}", f"s{n}", Location("conf/junk", 100 + n), junk)
                          for n in range(25))
    config = bounded(Configuration((), failed=failed_blocks, problems=junk))
    first = config.failed[0]
    assert len(first.problems) == MAX_FILE_ERRORS + 1
    assert isinstance(first.problems[-1], Omitted) and error_count(first.problems) == 30
    listed, omitted = shown(config.failed)
    assert (len(listed), omitted) == (MAX_FILE_ERRORS, 5)
    assert len(failed_json(config)) == MAX_FILE_ERRORS
    assert keep_previous(config, config).configuration.failed == config.failed  # all kept
