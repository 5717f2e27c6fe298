"""Tests for ``superd.access.hostsparse``: the hosts_access(5) grammar."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superd.access import hostsparse as hp
from superd.config.errors import ConfigError


def parse(text: str, allow: bool = True) -> hp.HostsFile:
    return hp.parse_hosts("hosts.test", text, default_allow=allow)


def test_rules_comments_and_continuation() -> None:
    """Comments and blank lines are skipped; backslash joins lines."""
    parsed = parse("# comment\n\n  # indented comment\nsshd, in.ftpd: \\\n"
                   "  10.0.0.0/8 \\\n  .example.com\n")
    (rule,) = parsed.rules
    assert rule.line == 4
    assert [p.value for p in rule.daemons.items] == ["sshd", "in.ftpd"]
    assert [p.kind for p in rule.clients.items] == [hp.NETWORK, hp.DOMAIN]


@pytest.mark.parametrize(
    ("token", "kind", "value"),
    [
        ("ALL", hp.ALL, None),
        ("all", hp.ALL, None),
        ("LOCAL", hp.LOCAL, None),
        ("KNOWN", hp.KNOWN, None),
        ("UNKNOWN", hp.UNKNOWN, None),
        ("PARANOID", hp.PARANOID, None),
        (".Example.COM", hp.DOMAIN, "example.com"),
        ("192.168.", hp.PREFIX, "192.168."),
        ("10.0.0.0/255.0.0.0", hp.NETWORK, "10.0.0.0/8"),
        ("10.0.0.0/8", hp.NETWORK, "10.0.0.0/8"),
        ("[fe80::]/10", hp.NETWORK, "fe80::/10"),
        ("[::1]", hp.ADDRESS, "::1"),
        ("[::ffff:127.0.0.1]", hp.ADDRESS, "127.0.0.1"),
        ("127.0.0.4", hp.ADDRESS, "127.0.0.4"),
        ("Host.Example.com", hp.NAME, "host.example.com"),
        ("*.example.com", hp.WILDCARD, "*.example.com"),
        ("user@host", hp.UNSUPPORTED, "user@host patterns"),
        ("@netgroup", hp.UNSUPPORTED, "NIS netgroups"),
        ("/etc/list", hp.UNSUPPORTED, "pattern files"),
    ],
)
def test_client_patterns(token: str, kind: str, value: object) -> None:
    """Each client pattern form is recognised."""
    (rule,) = parse(f"sshd: {token}\n").rules
    (pattern,) = rule.clients.items
    assert pattern.kind == kind
    assert (str(pattern.value) if value is not None else None) == value


def test_except_is_right_nested_in_both_lists() -> None:
    """``a EXCEPT b EXCEPT c`` is ``a EXCEPT (b EXCEPT c)``."""
    (rule,) = parse("ALL EXCEPT in.ftpd: 10. EXCEPT 10.0. EXCEPT 10.0.0.1\n").rules
    assert rule.daemons.except_ is not None
    assert rule.daemons.except_.items[0].value == "in.ftpd"
    inner = rule.clients.except_
    assert inner is not None and inner.except_ is not None
    assert inner.except_.items[0].value == "10.0.0.1"


def test_options() -> None:
    """ALLOW/DENY flip a rule; twist denies; other options warn."""
    parsed = parse("a: ALL: DENY\nb: ALL: spawn echo hi : ALLOW\n"
                   "c: ALL: twist /bin/echo no\nd: ALL: frobnicate\n", allow=False)
    effects = [r.allow for r in parsed.rules]
    assert effects == [False, True, False, False]
    messages = [m for _, m in parsed.warnings]
    assert "option 'spawn' is ignored" in messages
    assert "option 'twist' is not run; the rule denies" in messages
    assert "unknown option 'frobnicate' is ignored" in messages


def test_colon_inside_brackets_and_escaped() -> None:
    """A colon in ``[ipv6]`` or written ``\\:`` does not split fields."""
    (rule,) = parse("sshd: [2001:db8::]/32 : spawn echo a\\:b\n").rules
    assert str(rule.clients.items[0].value) == "2001:db8::/32"


@pytest.mark.parametrize(
    ("text", "message", "daemons"),
    [
        ("sshd 10.0.0.1\n", "missing ':' between daemon list and client list",
         ["sshd", "10.0.0.1"]),
        ("sshd: 10.0.0.0/99\n", None, ["sshd"]),
        ("sshd: EXCEPT 10.\n", "EXCEPT needs a list on each side", ["sshd"]),
        ("sshd:\n", "empty list", ["sshd"]),
        ("[x]: ALL\n", "bad daemon name '[x]'", None),
        ("sshd: [10.0.0.1]\n", "not an IPv6 address: '[10.0.0.1]'", ["sshd"]),
        ("sshd: bad!host\n", "bad host pattern 'bad!host'", ["sshd"]),
    ],
)
def test_broken_lines(text: str, message: str | None,
                      daemons: list[str] | None) -> None:
    """A bad line is kept as a BrokenRule with its line and the daemons it names."""
    parsed = parse("# first\n" + text)
    (broken,) = parsed.broken
    assert broken.line == 2
    if message is not None:
        assert broken.message == message
    names = None if broken.daemons is None else [p.value for p in broken.daemons.items]
    assert names == daemons


def test_check_hosts_raises_config_error_with_line() -> None:
    """check_hosts reports broken lines as FILE:LINE problems."""
    with pytest.raises(ConfigError) as caught:
        hp.check_hosts("hosts.deny", "ALL: ALL\nsshd 1.2.3.4\n", default_allow=False)
    assert str(caught.value) == (
        "hosts.deny:2: missing ':' between daemon list and client list")


@given(st.text(max_size=200))
def test_parser_never_raises(text: str) -> None:
    """Random text parses into rules and broken lines, never an exception."""
    parsed = parse(text)
    assert len(parsed.rules) + len(parsed.broken) <= max(1, text.count("\n") + 1) + 1


_TOKENS = st.sampled_from(["ALL", "EXCEPT", "sshd", "10.", "[::1]/128", ".x.org",
                           "a@b", "10.0.0.0/8", ":", ",", " ", "\\\n", "\n",
                           "#", "DENY", "[", "]", "/", "LOCAL", "*"])


@given(st.lists(_TOKENS, max_size=40).map("".join))
def test_check_hosts_raises_only_config_errors(text: str) -> None:
    """Near-valid input either parses or raises ConfigError, nothing else."""
    try:
        hp.check_hosts("f", text, default_allow=True)
    except ConfigError:
        pass
