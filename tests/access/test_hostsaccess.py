"""Tests for ``superd.access.hostsaccess``: matching and live re-reading."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred

from superd.access import hostsparse as hp
from superd.access.decision import Decision
from superd.access.hostsaccess import (
    Client,
    HostsAccess,
    HostsTable,
    NeedNames,
    daemon_name,
)
from superd.access.resolver import HostNames
from superd.config.model import Redirect
from superd.core.session import Peer
from tests.access.helpers import service


class Files:
    """A hosts.allow/hosts.deny pair in a temporary directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.allow = tmp_path / "hosts.allow"
        self.deny = tmp_path / "hosts.deny"
        self.access = HostsAccess(str(self.allow), str(self.deny))

    def write(self, allow: str | None = None, deny: str | None = None) -> None:
        for path, text in ((self.allow, allow), (self.deny, deny)):
            if text is not None:
                path.write_text(text)

    def ok(self, daemon: str, host: str, names: HostNames | None = None) -> bool:
        return self.access.decide(daemon, host, names)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def test_missing_files_allow(files: Files) -> None:
    """Without either file everything is allowed."""
    assert files.ok("sshd", "10.0.0.1")


def test_allow_first_then_deny_then_allow(files: Files) -> None:
    """hosts.allow wins over hosts.deny; no match allows."""
    files.write(allow="sshd: 10.0.0.1\n", deny="ALL: 10.\n")
    assert files.ok("sshd", "10.0.0.1")
    assert not files.ok("sshd", "10.0.0.2")
    assert not files.ok("in.ftpd", "10.0.0.1")
    assert files.ok("sshd", "11.0.0.1")


@pytest.mark.parametrize(
    ("deny", "daemon", "host", "allowed"),
    [
        ("ALL EXCEPT sshd: ALL\n", "sshd", "1.2.3.4", True),
        ("ALL EXCEPT sshd: ALL\n", "ftpd", "1.2.3.4", False),
        ("ALL: 10. EXCEPT 10.0.0.1\n", "x", "10.0.0.1", True),
        ("ALL: 10. EXCEPT 10.0.0.1\n", "x", "10.0.0.2", False),
        ("ALL: 10.0.0.0/255.255.255.0\n", "x", "10.0.0.9", False),
        ("ALL: 10.0.0.0/255.255.255.0\n", "x", "10.0.1.9", True),
        ("ALL: [2001:db8::]/32\n", "x", "2001:db8::5", False),
        ("ALL: [::1]\n", "x", "::1", False),
        ("ALL: 127.0.0.*\n", "x", "127.0.0.4", False),
        ("SSHD: 1.2.3.4\n", "sshd", "1.2.3.4", False),
        ("ALL: user@1.2.3.4\n", "x", "1.2.3.4", False),  # unknown in deny: deny
        ("ALL: 1.2.3.4 : ALLOW\nALL: ALL\n", "x", "1.2.3.4", True),
    ],
)
def test_deny_table(files: Files, deny: str, daemon: str, host: str,
                    allowed: bool) -> None:
    """Patterns, EXCEPT and options as hosts_access(5) describes them."""
    files.write(deny=deny)
    assert files.ok(daemon, host) is allowed


def test_unknown_patterns_never_allow(files: Files) -> None:
    """An unsupported pattern in hosts.allow does not allow."""
    files.write(allow="ALL: user@1.2.3.4\n", deny="ALL: ALL\n")
    assert not files.ok("x", "1.2.3.4")


def test_deny_option_in_allow_file(files: Files) -> None:
    """``: DENY`` in hosts.allow refuses at once."""
    files.write(allow="ALL: 10.0.0.1 : DENY\nALL: ALL\n")
    assert not files.ok("x", "10.0.0.1")
    assert files.ok("x", "10.0.0.2")


def test_names(files: Files) -> None:
    """Name patterns need names; KNOWN/UNKNOWN/PARANOID/LOCAL use them."""
    files.write(deny="ALL: .evil.org LOCAL PARANOID\nftpd: UNKNOWN\n")
    with pytest.raises(NeedNames):
        files.ok("x", "1.2.3.4")
    known = HostNames(frozenset({"a.good.org"}))
    assert files.ok("x", "1.2.3.4", known)
    assert not files.ok("x", "1.2.3.4", HostNames(frozenset({"b.evil.org"})))
    assert not files.ok("x", "1.2.3.4", HostNames(frozenset({"localhost"})))
    assert not files.ok("x", "1.2.3.4", HostNames(mismatch=True))
    assert not files.ok("ftpd", "1.2.3.4", HostNames())
    assert files.ok("ftpd", "1.2.3.4", known)


def test_appended_line_applies_to_the_next_check(files: Files) -> None:
    """Appending to hosts.deny takes effect on the next check, no reload."""
    files.write(deny="ALL: 10.0.0.1\n")
    assert files.ok("x", "127.0.0.4")
    with open(files.deny, "a") as f:
        f.write("ALL: 127.0.0.4\n")
    assert not files.ok("x", "127.0.0.4")
    files.deny.unlink()
    assert files.ok("x", "127.0.0.4")


def test_same_size_rewrite_is_noticed(files: Files) -> None:
    """A rewrite with the same size and mtime is noticed through the inode."""
    files.write(deny="ALL: 10.0.0.1\n")
    assert not files.ok("x", "10.0.0.1")
    stat = files.deny.stat()
    replacement = files.deny.with_name("new")
    replacement.write_text("ALL: 10.0.0.2\n")
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, files.deny)
    assert files.ok("x", "10.0.0.1")


def test_broken_line_denies_named_daemons_and_is_reported_once(
        files: Files, log_events: list[dict[str, Any]]) -> None:
    """A bad line denies its daemons (all if unreadable), logged once."""
    files.write(deny="sshd: 10.0.0.0/99\n")
    assert not files.ok("sshd", "11.0.0.1")
    assert files.ok("ftpd", "11.0.0.1")
    assert not files.ok("sshd", "11.0.0.1")
    errors = [e for e in log_events if e.get("event") == "config_error"]
    assert [(e["line"], e["file"]) for e in errors] == [(1, str(files.deny))]
    files.write(deny="garbage [x\n")
    assert not files.ok("ftpd", "11.0.0.1")


def test_unreadable_file_denies(files: Files) -> None:
    """A file that cannot be read denies every daemon."""
    files.deny.mkdir()
    assert not files.ok("x", "1.2.3.4")


def test_index_agrees_with_plain_evaluation() -> None:
    """Over 10,000 indexed rules, answers are still first-match hosts_access."""
    lines = [f"ALL: 10.{i % 250}.{i // 250}.1\n" for i in range(10_000)]
    lines += ["sshd: 192.168. 172.16.0.0/12\n", "ALL: 1.2.3.4 : ALLOW\n",
              "ALL: 1.2.3.0/24\n"]
    table = HostsTable(hp.parse_hosts("d", "".join(lines), default_allow=False))
    cases = {("x", "10.3.4.1"): False, ("x", "10.3.4.2"): None,
             ("sshd", "192.168.9.9"): False, ("x", "192.168.9.9"): None,
             ("sshd", "172.20.0.1"): False, ("x", "1.2.3.4"): True,
             ("x", "1.2.3.5"): False, ("x", "::1"): None}
    for (daemon, host), expected in cases.items():
        assert table.decide(daemon, Client.of(host)) is expected, (daemon, host)


def test_daemon_name() -> None:
    """libwrap, else service name (internal/redirect), else server basename."""
    assert daemon_name(service(libwrap="custom")) == "custom"
    assert daemon_name(service(name="echo")) == "echo"
    external = service(type=frozenset(), server="/usr/sbin/in.tftpd")
    assert daemon_name(external) == "in.tftpd"
    assert daemon_name(service(type=frozenset(), redirect=Redirect("h", 1),
                               name="relay")) == "relay"
    nameinargs = service(type=frozenset(), server="/usr/bin/env",
                         server_args=("/usr/sbin/sshd", "-i"),
                         flags=frozenset({"NAMEINARGS"}))
    assert daemon_name(nameinargs) == "sshd"


class Resolver:
    def __init__(self) -> None:
        self.waiting: Deferred[HostNames] = Deferred()

    def cached(self, host: str) -> None:
        return None

    def names(self, host: str) -> Deferred[HostNames]:
        return self.waiting


def test_check_looks_names_up_only_when_needed(tmp_path: Path) -> None:
    """check() answers at once from numbers, and waits for names otherwise."""
    (tmp_path / "deny").write_text("ALL: 10.\nALL: .evil.org\n")
    resolver = Resolver()
    access = HostsAccess(str(tmp_path / "allow"), str(tmp_path / "deny"),
                         resolver)  # type: ignore[arg-type]
    refused = access.check("x", Peer("10.0.0.1", 1))
    assert isinstance(refused, Decision) and refused.reason == "libwrap"
    assert refused.detail == "libwrap=x"
    later = access.check("x", Peer("11.0.0.1", 1))
    assert isinstance(later, Deferred)
    results: list[Decision] = []
    later.addCallback(results.append)
    resolver.waiting.callback(HostNames(frozenset({"a.evil.org"})))
    assert results and not results[0].allowed


_TOKENS = st.sampled_from(["ALL", "EXCEPT", "sshd", "10.", "[::1]/128", ".x.org",
                           "a@b", "10.0.0.0/8", ":", ",", " ", "\n", "DENY",
                           "ALLOW", "LOCAL", "KNOWN", "UNKNOWN", "PARANOID",
                           "*.org", "1.2.3.4", "host.x.org", "twist x"])


@given(st.lists(_TOKENS, max_size=30).map("".join),
       st.sampled_from(["sshd", "x", "ALL"]),
       st.one_of(st.ip_addresses().map(str), st.text(max_size=20)),
       st.frozensets(st.sampled_from(["host.x.org", "localhost", "a.b"]), max_size=2),
       st.booleans())
def test_matcher_answers_any_rules_and_client(text: str, daemon: str, host: str,
                                             found: frozenset[str],
                                             mismatch: bool) -> None:
    """Any parsed file and any client give an answer; only NeedNames escapes
    before names are known, nothing escapes once they are."""
    table = HostsTable(hp.parse_hosts("f", text, default_allow=False))
    try:
        assert table.decide(daemon.lower(), Client.of(host)) in (True, False, None)
    except NeedNames:
        pass
    names = HostNames(found, mismatch)
    assert table.decide(daemon.lower(), Client.of(host, names)) in (True, False, None)
    table.broken_for(daemon.lower())
