"""Tests for superd.handlers.spawn.argv: the argument vector xinetd would build."""

from __future__ import annotations

import pytest

from superd.config.model import UNLIMITED
from superd.handlers.spawn.argv import limits_prefix, server_argv
from tests.handlers.spawn.helpers import external_service


def test_argv0_is_basename_of_server() -> None:
    """argv[0] is the basename of ``server``, followed by ``server_args``."""
    service = external_service(server="/usr/sbin/sshd", server_args=("-i", "-f", "/x"))
    assert server_argv(service) == ("sshd", "-i", "-f", "/x")


def test_nameinargs_uses_server_args_verbatim() -> None:
    """With NAMEINARGS, argv is exactly ``server_args`` (tcpd style)."""
    service = external_service(server="/usr/sbin/tcpd", flags=frozenset({"NAMEINARGS"}),
                               server_args=("in.tftpd", "-s", "/srv"))
    assert server_argv(service) == ("in.tftpd", "-s", "/srv")


def test_no_server_args() -> None:
    """A server without arguments gets argv = (basename,)."""
    assert server_argv(external_service(server="/bin/cat", server_args=())) == ("cat",)


def test_missing_server_is_an_error() -> None:
    """A service with no ``server`` cannot have an argv."""
    with pytest.raises(ValueError, match="no server"):
        server_argv(external_service(server=None))


def test_limits_prefix_sets_soft_and_hard() -> None:
    """Each rlimit becomes one prlimit option with soft = hard, sorted by name."""
    prefix = limits_prefix({"files": 64, "as": 1 << 30, "cpu": UNLIMITED},
                           "/usr/bin/prlimit")
    assert prefix == ("/usr/bin/prlimit", "--as=1073741824:1073741824",
                      "--cpu=unlimited:unlimited", "--nofile=64:64", "--")


def test_limits_prefix_empty_without_limits() -> None:
    """No rlimit attribute means no wrapper at all (no extra exec)."""
    assert limits_prefix({}, None) == ()


def test_limits_prefix_needs_prlimit() -> None:
    """Limits without a prlimit program are refused at build time."""
    with pytest.raises(ValueError, match="prlimit"):
        limits_prefix({"data": 1}, None)
