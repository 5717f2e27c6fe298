"""
Tests for ``superd.config.unixsock``: ``bind = unix:PATH``, ``socket_mode``,
``socket_owner``, ``only_uid``/``only_gid``, and every combination that
cannot work on a UNIX socket refused with its file, line and attribute.
"""

from __future__ import annotations

import pytest

from superd.config.check import listen_text, service_summary
from superd.config.model import ServiceKind, UnixSocket
from tests.config.fakes import errors_of, load_text, service_text

F = "/etc/superd/test.conf"
ECHO = {"type": "INTERNAL", "socket_type": "stream", "wait": "no",
        "bind": "unix:/run/echo.sock"}  # fmt: skip
CAT = {"socket_type": "stream", "wait": "no", "user": "nobody", "server": "/bin/cat",
       "bind": "unix:/run/cat.sock"}  # fmt: skip


def _errors(name: str = "echo", **attributes: str) -> list[str]:
    return errors_of(service_text(name, **attributes))


def test_a_unix_bind_needs_no_port_and_has_no_ip_settings() -> None:
    """A builtin on ``unix:PATH`` loads without a port or /etc/services entry
    (any name will do); it has no port, no IP bind, protocol ``unix``, the
    default mode 0666 and no owner."""
    (service,) = load_text(service_text("echo", **ECHO)).services
    assert service.unix == UnixSocket("/run/echo.sock", 0o666, None, None)
    assert (service.port, service.bind, service.protocol) == (None, (), "unix")
    assert service.block_key == "echo unix:/run/echo.sock"
    (other,) = load_text(service_text("myservice", **CAT)).services
    assert other.kind is ServiceKind.EXTERNAL and other.unix is not None


def test_mode_owner_and_peer_ids_are_resolved_at_load() -> None:
    """socket_mode is octal; socket_owner resolves names (a user alone brings
    its primary group -- none for a uid without an account --, ``:group``
    only the group); only_uid and only_gid take names and numbers."""
    (service,) = load_text(service_text(
        "echo", **ECHO, socket_mode="0660", socket_owner="alice",
        only_uid="alice 0 nobody", only_gid="staff 4242")).services
    assert service.unix == UnixSocket("/run/echo.sock", 0o660, 1000, 1000)
    assert service.only_uid == frozenset({1000, 0, 65534})
    assert service.only_gid == frozenset({50, 4242})
    owners = {"alice:staff": (1000, 50), ":staff": (None, 50), "34": (34, 34),
              "4242": (4242, None), "alice:34": (1000, 34)}  # fmt: skip
    for written, (uid, gid) in owners.items():
        (service,) = load_text(service_text("echo", **ECHO, socket_owner=written)).services
        assert service.unix is not None
        assert (service.unix.uid, service.unix.gid) == (uid, gid), written


def test_paths_are_normalised() -> None:
    """Redundant slashes and dots go; ``interface`` is ``bind``."""
    written = {**ECHO, "bind": "unix:/run//superd/./echo.sock"}
    (service,) = load_text(service_text("echo", **written)).services
    assert service.unix is not None and service.unix.path == "/run/superd/echo.sock"
    written = {**ECHO}
    del written["bind"]
    (service,) = load_text(service_text("echo", **written,
                                        interface="unix:/run/e.sock")).services
    assert service.unix is not None and service.unix.path == "/run/e.sock"


@pytest.mark.parametrize(("path", "message"), [
    ("unix:run/echo.sock", "expected unix:/absolute/path, got 'unix:run/echo.sock'"),
    ("unix:", "expected unix:/absolute/path, got 'unix:'"),
    ("unix:@abstract", "'unix:@abstract': abstract UNIX sockets are not supported;"
                       " write unix:/absolute/path"),
    ("unix:/run/", "'unix:/run/' names a directory, not a socket file"),
    ("unix:/" + "a" * 107, "the UNIX socket path is 108 bytes long; at most 107 fit in"
                           " sun_path"),
])  # fmt: skip
def test_bad_paths_are_refused(path: str, message: str) -> None:
    """Relative, empty, abstract, directory and over-long paths are errors."""
    assert _errors(**{**ECHO, "bind": path}) == [f"{F}:6: service echo: bind: {message}"]


def test_the_longest_path_that_fits_is_accepted() -> None:
    """107 bytes is the limit, counted in bytes, not characters."""
    path = "/" + "a" * 106
    (service,) = load_text(service_text("echo", **{**ECHO, "bind": f"unix:{path}"})).services
    assert service.unix is not None and service.unix.path == path
    wide = "/" + "é" * 54  # 109 bytes in 55 characters
    assert _errors(**{**ECHO, "bind": f"unix:{wide}"}) == [
        f"{F}:6: service echo: bind: the UNIX socket path is 109 bytes long; at most 107"
        " fit in sun_path"]


def test_combinations_that_cannot_work_are_errors() -> None:
    """port, protocol, v6only, address lists, libwrap, IP and TCP flags,
    IDONLY, SENSOR, TLS and datagrams each name their own line."""
    lines = dict(ECHO, port="7", protocol="tcp", v6only="yes", only_from="127.0.0.1",
                 no_access="10.0.0.1", libwrap="echo", flags="IPv4 NODELAY IDONLY")
    assert _errors(**lines) == [
        f"{F}:7: service echo: port: a UNIX socket has no port; remove this line",
        f"{F}:8: service echo: protocol: a UNIX socket has no IP protocol; remove this line",
        f"{F}:9: service echo: v6only: v6only does not apply to a UNIX socket",
        f"{F}:10: service echo: only_from: address lists do not apply to a UNIX socket's"
        " peers; use only_uid or only_gid",
        f"{F}:11: service echo: no_access: address lists do not apply to a UNIX socket's"
        " peers; use only_uid or only_gid",
        f"{F}:12: service echo: libwrap: hosts.allow and hosts.deny match addresses, which"
        " a UNIX socket's peers do not have",
        f"{F}:13: service echo: flags: IPv4 and IPv6 do not apply to a UNIX socket",
        f"{F}:13: service echo: flags: NODELAY and KEEPALIVE are TCP options; a UNIX socket"
        " has neither",
        f"{F}:13: service echo: flags: IDONLY asks the peer host's ident server; a UNIX peer"
        " is known by its uid instead (use only_uid)",
    ]
    assert (f"{F}:7: service echo: tls_cert: TLS is not offered on a UNIX socket (its"
            " peers are local; restrict them with socket_mode and only_uid)"
            in _errors(**ECHO, tls_cert="/etc/cert.pem", tls_key="/etc/key.pem"))
    assert _errors(**{**ECHO, "flags": "SENSOR"}) == [
        f"{F}:7: service echo: flags: a SENSOR bans IP addresses; a UNIX peer has none"]


def test_datagram_unix_sockets_are_refused() -> None:
    """socket_type = dgram on a UNIX socket is an error, not a silent TCP-like socket."""
    assert _errors(type="INTERNAL", socket_type="dgram", wait="yes",
                   bind="unix:/run/echo.sock") == [
        f"{F}:4: service echo: socket_type: a UNIX socket serves socket_type = stream only"
        " (a datagram carries no peer credentials)"]


def test_one_unix_path_and_nothing_else() -> None:
    """A unix: path cannot share bind with IP addresses or another path."""
    assert _errors(**{**ECHO, "bind": "unix:/run/a.sock 127.0.0.1"}) == [
        f"{F}:6: service echo: bind: a UNIX socket is the service's only address: write one"
        " unix:PATH and nothing else in bind"]


def test_unix_only_attributes_need_a_unix_bind() -> None:
    """socket_mode, socket_owner, only_uid and only_gid on an IP service are errors."""
    ip = {"type": "INTERNAL", "socket_type": "stream", "wait": "no"}
    assert _errors(**ip, socket_mode="0600", socket_owner="alice", only_uid="alice",
                   only_gid="staff") == [
        f"{F}:6: service echo: socket_mode: socket_mode needs bind = unix:/path/to/socket",
        f"{F}:7: service echo: socket_owner: socket_owner needs bind = unix:/path/to/socket",
        f"{F}:8: service echo: only_uid: only_uid needs bind = unix:/path/to/socket",
        f"{F}:9: service echo: only_gid: only_gid needs bind = unix:/path/to/socket",
    ]


def test_bad_accounts_and_modes() -> None:
    """Unknown users and groups, malformed owners and modes name the value."""
    assert _errors(**ECHO, socket_mode="0999", socket_owner="alice:", only_uid="mallory",
                   only_gid="wheel") == [
        f"{F}:7: service echo: socket_mode: expected an octal mode from 000 to 777,"
        " got '0999'",
        f"{F}:8: service echo: socket_owner: expected user:group with a group after the"
        " colon, got 'alice:'",
        f"{F}:9: service echo: only_uid: unknown user 'mallory'",
        f"{F}:10: service echo: only_gid: unknown group 'wheel'",
    ]


def test_a_non_root_superd_cannot_give_the_socket_away() -> None:
    """Without root, socket_owner may name only superd's own uid."""
    text = service_text("echo", **ECHO, socket_owner="alice")
    (service,) = load_text(text, euid=1000, egid=1000).services
    assert service.unix is not None and service.unix.uid == 1000
    assert errors_of(service_text("echo", **ECHO, socket_owner="nobody"),
                     euid=1000, egid=1000) == [
        f"{F}:7: service echo: socket_owner: superd runs as uid 1000, not root, so it cannot"
        " give the socket to 'nobody' (uid 65534)"]


def test_inherited_address_settings_are_left_out() -> None:
    """only_from, no_access, v6only and bind from the defaults (meant for IP
    services) do not stop a UNIX service, and are not applied to it."""
    text = ("defaults\n{\n only_from = 127.0.0.1\n no_access = 10.0.0.1\n v6only = yes\n"
            " bind = 127.0.0.1\n"
            " log_on_success = HOST USERID\n}\n" + service_text("echo", **ECHO))
    config = load_text(text)
    (service,) = config.services
    assert (service.only_from, service.no_access, service.v6only) == (None, (), None)
    assert config.warnings == ()


def test_a_unix_path_in_the_defaults_is_refused() -> None:
    """bind = unix:PATH in the defaults would be shared by every service."""
    ip = {"type": "INTERNAL", "socket_type": "stream", "wait": "no"}
    text = "defaults\n{\n bind = unix:/run/all.sock\n}\n" + service_text("echo", **ip)
    assert errors_of(text) == [
        f"{F}:3: service echo: bind: a unix: path in the defaults would be bound by every"
        " service; write it in the service"]


def test_userid_written_in_the_service_is_a_warning() -> None:
    """USERID logging written for a UNIX service is warned about (no ident)."""
    config = load_text(service_text("echo", **ECHO, log_on_success="HOST USERID"))
    assert [str(w) for w in config.warnings] == [
        f"{F}:7: service echo: log_on_success: USERID asks the peer host's ident server;"
        " a UNIX peer has none, and its uid is logged instead"]


def test_tcpmux_is_not_served_on_unix() -> None:
    """Neither tcpmux itself nor its clients take a unix: bind."""
    assert _errors("tcpmux", **{**ECHO}) == [
        f"{F}:6: service tcpmux: bind: tcpmux is not served on a UNIX socket"]
    assert _errors("myservice", type="TCPMUX INTERNAL", socket_type="stream", wait="no",
                   bind="unix:/run/m.sock") == [
        f"{F}:3: service myservice: type: tcpmux clients have no socket of their own;"
        " remove bind"]


def test_two_services_on_one_path_clash() -> None:
    """Two UNIX services on the same (normalised) path: the later is an error
    naming the earlier; different paths and IP services do not clash."""
    text = (service_text("echo", **ECHO)
            + service_text("daytime", **{**ECHO, "bind": "unix:/run//echo.sock"}))
    assert errors_of(text) == [
        f"{F}:13: service daytime: bind: UNIX socket /run/echo.sock is already used by"
        f" service echo ({F}:1)"]
    fine = (service_text("echo", **ECHO)
            + service_text("daytime", **{**ECHO, "bind": "unix:/run/daytime.sock"})
            + service_text("discard", type="INTERNAL", socket_type="stream", wait="no"))
    assert len(load_text(fine).services) == 3


def test_superd_check_shows_the_path() -> None:
    """``superd check`` lists a UNIX service as ``unix:PATH``, in text and JSON."""
    (service,) = load_text(service_text("echo", **ECHO)).services
    assert listen_text(service) == "unix:/run/echo.sock"
    summary = service_summary(service)
    assert (summary["bind"], summary["port"], summary["protocol"]) == (
        ["unix:/run/echo.sock"], None, "unix")


def test_proxy_protocol_and_ipv6_prefixes_do_not_apply() -> None:
    """PROXY headers (in and out) and IPv6 source prefixes are errors on a
    UNIX socket; v6_source_prefix from the defaults is not."""
    assert _errors(**ECHO, proxy_protocol="v1", v6_source_prefix="64") == [
        f"{F}:7: service echo: proxy_protocol: a PROXY header names an IP client; a UNIX"
        " socket's peers are known by their credentials",
        f"{F}:8: service echo: v6_source_prefix: v6_source_prefix counts IPv6 sources; a"
        " UNIX socket's peers are counted by uid",
    ]
    relay = {**ECHO, "type": "UNLISTED", "user": "nobody", "redirect": "127.0.0.1 80",
             "redirect_proxy": "v2"}
    assert (f"{F}:9: service echo: redirect_proxy: a UNIX socket's peer has no IP"
            " address to send upstream") in _errors(**relay)
    text = "defaults\n{\n v6_source_prefix = 64\n}\n" + service_text("echo", **ECHO)
    assert len(load_text(text).services) == 1
