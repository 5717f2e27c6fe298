"""
Tests for ``superd.config.build``: every attribute rule, with an injected
environment (accounts, /etc/services, resolver, executables).
"""

from __future__ import annotations

import pytest

from superd.config.model import (
    CPS,
    FOREVER,
    UNLIMITED,
    Credentials,
    Redirect,
    ServiceConfig,
    ServiceKind,
    SocketType,
    SyslogLog,
    TimeInterval,
)
from tests.config.fakes import errors_of, load_text, service_text

F = "/etc/superd/test.conf"
SSH = {"socket_type": "stream", "wait": "no", "user": "root", "server": "/usr/sbin/sshd"}
ECHO = {"type": "INTERNAL", "socket_type": "stream", "wait": "no"}


def _one(name: str = "echo", **attributes: str) -> ServiceConfig:
    (service,) = load_text(service_text(name, **attributes)).services
    return service


def _errors(name: str = "echo", **attributes: str) -> list[str]:
    return errors_of(service_text(name, **attributes))


def test_socket_type_and_protocol_fill_each_other() -> None:
    """protocol tcp implies stream and dgram implies udp; a mismatch is an error."""
    assert _one(type="INTERNAL", protocol="udp", wait="yes").socket_type is SocketType.DGRAM
    assert _one(**ECHO).protocol == "tcp"
    assert _errors(**ECHO, protocol="udp") == [
        f"{F}:6: service echo: protocol: protocol udp does not fit socket_type stream "
        "(stream uses tcp, dgram uses udp)"
    ]


def test_required_socket_type_wait_server_user() -> None:
    """socket_type and wait are required; external services need server and user (as root)."""
    assert _errors("ssh") == [
        f"{F}:1: service ssh: socket_type: missing: write socket_type = stream (tcp) "
        "or dgram (udp)",
        f"{F}:1: service ssh: wait: missing: write wait = no (one server per connection) "
        "or wait = yes",
    ]
    assert _errors("ssh", socket_type="stream", wait="no") == [
        f"{F}:1: service ssh: server: missing: write server = /path/to/program "
        "(or type = INTERNAL)",
        f"{F}:1: service ssh: user: missing: write user = NAME (the account the server runs as)",
    ]


def test_unsupported_values_are_clear() -> None:
    """RPC, rpc_* and raw sockets are refused with a reason."""
    assert _errors(type="RPC", socket_type="raw", wait="no", rpc_version="1") == [
        f"{F}:3: service echo: type: RPC services are not supported",
        f"{F}:4: service echo: socket_type: socket_type raw is not supported (use stream or dgram)",
        f"{F}:6: service echo: rpc_version: RPC services are not supported",
    ]


def test_builtin_must_exist_for_name_and_socket_type() -> None:
    """INTERNAL services are builtins chosen by service name and socket type."""
    assert _one(**ECHO).kind is ServiceKind.BUILTIN
    assert _one("tcpmux", **ECHO).kind is ServiceKind.BUILTIN
    assert _errors("tcpmux", type="INTERNAL", socket_type="dgram", wait="yes") == [
        f"{F}:1: service tcpmux: port: tcpmux/udp is not in /etc/services; "
        "write type = UNLISTED and port = N to run it anyway",
        f"{F}:3: service tcpmux: type: superd has no builtin service 'tcpmux' for "
        "socket_type dgram (builtins are chosen by service name)",
    ]


def test_dgram_needs_wait_yes() -> None:
    """dgram with wait = no is refused (xinetd 2.3.15.4+ does the same)."""
    assert _errors(type="INTERNAL", socket_type="dgram", wait="no") == [
        f"{F}:5: service echo: wait: dgram services need wait = yes"
    ]


def test_port_from_services_and_unlisted_rule() -> None:
    """Port comes from /etc/services; a different port needs UNLISTED; port 0 is allowed."""
    assert _one(**ECHO).port == 7
    assert _one(**ECHO, port="7").port == 7
    assert _one(**dict(ECHO, type="INTERNAL UNLISTED"), port="0").port == 0
    assert _errors(**ECHO, port="8") == [
        f"{F}:6: service echo: port: service echo expects port 7, not 8 (/etc/services); "
        "add UNLISTED to type to use another port"
    ]
    assert _errors(**dict(ECHO, type="INTERNAL UNLISTED")) == [
        f"{F}:1: service echo: port: missing: UNLISTED services need port = N"
    ]


def test_services_not_in_etc_services_need_unlisted() -> None:
    """An unknown service name without UNLISTED is an error even with a port."""
    assert _errors("myapp", **SSH, port="2222") == [
        f"{F}:7: service myapp: port: myapp/tcp is not in /etc/services; "
        "write type = UNLISTED and port = N to run it anyway"
    ]
    assert _one("myapp", **SSH, type="UNLISTED", port="2222").port == 2222


def test_bind_several_addresses_hostnames_and_interface_alias() -> None:
    """Several bind addresses; names resolved at load; ``interface`` is the same thing."""
    assert _one(**ECHO, bind="192.0.2.1 ::1").bind == ("192.0.2.1", "::1")
    assert _one(**ECHO, bind="localhost").bind == ("127.0.0.1", "::1")
    assert _one(**ECHO, bind="localhost", flags="IPv4").bind == ("127.0.0.1",)
    assert _one(**ECHO, interface="127.0.0.5").bind == ("127.0.0.5",)
    assert _errors(**ECHO, bind="::1", flags="IPv4") == [
        f"{F}:6: service echo: bind: ::1 is an IPv6 address but flags has IPv4"
    ]
    assert _errors(**ECHO, bind="nowhere.example") == [
        f"{F}:6: service echo: bind: cannot resolve 'nowhere.example': Name or service not known"
    ]
    assert _errors(**ECHO, bind="1.2.3.4", interface="::1") == [
        f"{F}:7: service echo: interface: set twice (first at line 6); write it once"
    ]


def test_v6only_is_kept_as_written() -> None:
    """v6only yes/no are both kept (xinetd sets V6ONLY whenever it is written)."""
    assert _one(**ECHO, v6only="no").v6only is False
    assert _one(**ECHO, v6only="yes").v6only is True
    assert _one(**ECHO).v6only is None


def test_every_value_attribute_parses_into_the_model() -> None:
    """The limits, logging, environment and resource attributes land in the model."""
    s = _one(
        "ssh", **SSH, server_args="-i -o X=1", instances="4", per_source="UNLIMITED",
        cps="30 10", max_load="1.5", access_times="08:00-12:00 22:00-06:00",
        log_type="SYSLOG authpriv warning", log_on_success="HOST PID EXIT DURATION USERID",
        log_on_failure="HOST ATTEMPT USERID", env="A=1 B=", passenv="PATH LANG", nice="-5",
        umask="077", rlimit_as="64M", rlimit_cpu="30", rlimit_files="1K",
        rlimit_data="UNLIMITED", rlimit_rss="1024", rlimit_stack="8M",
        banner="/etc/banner", banner_success="/etc/ok", banner_fail="/etc/no",
        deny_time="FOREVER", libwrap="sshd", group="staff", groups="yes",
    )  # fmt: skip
    assert (s.server, s.server_args) == ("/usr/sbin/sshd", ("-i", "-o", "X=1"))
    assert (s.instances, s.per_source, s.cps, s.max_load) == (4, UNLIMITED, CPS(30, 10), 1.5)
    assert s.access_times == (TimeInterval(480, 720), TimeInterval(1320, 360))
    assert s.log_type == SyslogLog("authpriv", "warning")
    assert s.log_on_success == {"HOST", "PID", "EXIT", "DURATION", "USERID"}
    assert s.log_on_failure == {"HOST", "ATTEMPT", "USERID"}
    assert (s.env, s.passenv) == ((("A", "1"), ("B", "")), ("PATH", "LANG"))
    assert (s.nice, s.umask) == (-5, 0o77)
    assert s.rlimits == {"as": 64 << 20, "cpu": 30, "files": 1024, "data": UNLIMITED,
                         "rss": 1024, "stack": 8 << 20}  # fmt: skip
    assert (s.banner, s.banner_success, s.banner_fail) == ("/etc/banner", "/etc/ok", "/etc/no")
    assert (s.deny_time, s.libwrap) == (FOREVER, "sshd")
    assert s.credentials == Credentials("root", 0, "staff", 50, True)
    assert s.line_of("umask").line == 19


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("instances", "-1", "expected a number >= 0 or UNLIMITED, got '-1'"),
        ("cps", "10", "expected 2 values, got 1"),
        ("cps", "x 10", "expected an integer >= 0, got 'x'"),
        ("max_load", "0", "expected a number > 0, got '0'"),
        ("nice", "20", "expected an integer from -20 to 19, got '20'"),
        ("umask", "999", "expected an octal mode from 000 to 777, got '999'"),
        ("rlimit_cpu", "1K", "expected a number or UNLIMITED, got '1K'"),
        ("env", "NOEQUALS", "expected NAME=VALUE, got 'NOEQUALS'"),
        ("server_args", "", "expected at least 1 value, got 0"),
        ("flags", "IPV4", "unknown flag 'IPV4' (expected INTERCEPT, NORETRY, IDONLY, "
         "NAMEINARGS, NODELAY, KEEPALIVE, NOLIBWRAP, SENSOR, IPv4, IPv6, LABELED, REUSE)"),
        ("type", "internal", "unknown type 'internal' (expected INTERNAL, UNLISTED, TCPMUX, "
         "TCPMUXPLUS)"),
        ("log_on_failure", "PID", "unknown flag 'PID' (expected HOST, USERID, ATTEMPT)"),
        ("log_type", "FILE", "expected at least 2 values, got 1"),
        ("deny_time", "-3", "expected minutes, FOREVER or NEVER, got '-3'"),
        ("redirect", "10.0.0.1 0", "expected an integer from 1 to 65535, got '0'"),
        ("only_from", "10.0.0.1 bad!", "'bad!' is not an address, network, host name or "
         ".domain (forms: 10.0.0.1, 10.0.0.0/8, 10.0.{1,2}, ::1, fe80::/10, host.example.com, "
         ".example.com)"),
        ("server", "sshd", "expected an absolute path, got 'sshd'"),
        ("groups", "true", "expected yes or no, got 'true'"),
        ("port", "ssh", "expected an integer from 0 to 65535, got 'ssh'"),
        ("bind", "1.2.3.4.5", "'1.2.3.4.5' is not a valid IP address"),
    ],
)  # fmt: skip
def test_bad_values_name_the_attribute_and_the_value(
    attribute: str, value: str, message: str
) -> None:
    """Each bad value gives FILE:LINE: service NAME: ATTRIBUTE: problem."""
    attributes = {**SSH, attribute: value}
    line = 3 + list(attributes).index(attribute)
    errors = _errors("ssh", **attributes)
    assert errors[0] == f"{F}:{line}: service ssh: {attribute}: {message}"


def test_nameinargs_needs_server_args_and_no_internal() -> None:
    """NAMEINARGS needs server_args and is refused on INTERNAL services."""
    assert _one("ssh", **SSH, flags="NAMEINARGS", server_args="sshd -i").server_args == (
        "sshd", "-i",
    )  # fmt: skip
    assert _errors("ssh", **SSH, flags="NAMEINARGS") == [
        f"{F}:7: service ssh: flags: NAMEINARGS needs server_args (argv[0] comes from it)"
    ]
    assert _errors(**ECHO, flags="NAMEINARGS", server_args="x") == [
        f"{F}:6: service echo: flags: NAMEINARGS is not allowed on INTERNAL or redirect services"
    ]


def test_sensor_needs_internal_or_server_but_not_user() -> None:
    """A SENSOR needs type = INTERNAL or a server; user is optional; any name works."""
    sensor = _one("telnet", socket_type="stream", wait="no", flags="SENSOR", type="INTERNAL")
    assert (sensor.kind, sensor.port) == (ServiceKind.SENSOR, 23)
    assert _errors("telnet", socket_type="stream", wait="no", flags="SENSOR") == [
        f"{F}:5: service telnet: flags: a SENSOR service needs type = INTERNAL (or a server line)"
    ]


def test_redirect_rules() -> None:
    """redirect: host resolved at load, port number or tcp name; stream + wait = no only."""
    base = {"socket_type": "stream", "wait": "no", "user": "nobody"}
    assert _one("http", **base, redirect="localhost http").redirect == Redirect("127.0.0.1", 80)
    assert _one("http", **base, redirect="::1 8080").redirect == Redirect("::1", 8080)
    assert _errors("http", **dict(base, wait="yes"), redirect="10.0.0.1 80") == [
        f"{F}:6: service http: redirect: redirect needs wait = no"
    ]
    assert _errors("http", **base, redirect="10.0.0.1 nosuch") == [
        f"{F}:6: service http: redirect: 'nosuch' is not a tcp service in /etc/services"
    ]
    assert _errors("http", **base, log_on_success="TRAFFIC") == [
        f"{F}:1: service http: server: missing: write server = /path/to/program "
        "(or type = INTERNAL)",
        f"{F}:6: service http: log_on_success: TRAFFIC is only allowed on redirect services",
    ]


def test_server_must_be_executable() -> None:
    """A server that is not an executable file is refused at load."""
    assert _errors("ssh", **dict(SSH, server="/usr/sbin/nothere")) == [
        f"{F}:6: service ssh: server: /usr/sbin/nothere is not an executable file"
    ]


def test_numeric_user_sets_group_and_names_resolve() -> None:
    """A numeric user gives gid = uid unless group is set; names resolve via the lookup."""
    assert _one("ssh", **dict(SSH, user="1000")).credentials == Credentials(
        "alice", 1000, None, 1000
    )
    assert _one("ssh", **dict(SSH, user="4242")).credentials == Credentials(None, 4242, None, 4242)
    assert _one("ssh", **dict(SSH, user="4242"), group="0").credentials.gid == 0
    assert _one("ssh", **dict(SSH, user="nobody")).credentials == Credentials(
        "nobody", 65534, None, 65534
    )
    assert _errors("ssh", **dict(SSH, user="bob"), group="wheel") == [
        f"{F}:5: service ssh: user: unknown user 'bob'",
        f"{F}:7: service ssh: group: unknown group 'wheel'",
    ]


def test_non_root_superd_refuses_other_users() -> None:
    """When superd is not root, a user (or group) other than its own is an error."""
    text = service_text("ssh", **SSH)
    assert errors_of(text, euid=1000, egid=1000) == [
        f"{F}:5: service ssh: user: superd runs as uid 1000, not root, so it cannot start "
        "servers as 'root' (uid 0); remove the user line or run superd as root"
    ]
    own = load_text(service_text("ssh", **dict(SSH, user="alice")), euid=1000, egid=1000)
    assert own.services[0].credentials == Credentials(user="alice")
    no_user = {k: v for k, v in SSH.items() if k != "user"}
    unprivileged = load_text(service_text("ssh", **no_user), euid=1000, egid=1000)
    assert unprivileged.services[0].credentials == Credentials()
    builtin = load_text(service_text("echo", **ECHO, user="root"), euid=1000, egid=1000)
    assert builtin.services[0].kind is ServiceKind.BUILTIN


def test_intercept_and_labeled_are_warned_as_unsupported() -> None:
    """Flags superd does not implement load with a warning, not silently."""
    config = load_text(service_text("ssh", **SSH, flags="INTERCEPT LABELED"))
    assert [w.message for w in config.warnings] == [
        "INTERCEPT is not supported; superd ignores it",
        "LABELED (SELinux) is not supported; superd ignores it",
    ]


def test_tcpmux_clients_have_no_port_of_their_own() -> None:
    """TCPMUX/TCPMUXPLUS services are reached through tcpmux and open no socket."""
    s = _one("myplus", **SSH, type="TCPMUXPLUS UNLISTED")
    assert (s.kind, s.port) == (ServiceKind.TCPMUX_CLIENT, None)


def test_idonly_on_a_service_it_cannot_apply_to_warns() -> None:
    """IDONLY on a wait = yes or dgram service is ignored (as xinetd), with a warning."""
    for attributes in ({"socket_type": "stream", "wait": "yes"},
                       {"socket_type": "dgram", "wait": "yes"}):
        config = load_text(service_text("time", type="INTERNAL", flags="IDONLY", **attributes))
        assert [str(w) for w in config.warnings] == [
            f"{F}:4: service time: flags: IDONLY applies only to socket_type = stream, "
            "wait = no services; clients of this one are not identified"]
    assert load_text(service_text("time", **ECHO, flags="IDONLY")).warnings == ()


def test_internal_tcpmux_clients_need_no_user() -> None:
    """A TCPMUX/TCPMUXPLUS client served inside superd (INTERNAL) runs no program, so
    needs no user; an external one still does."""
    for kind in ("INTERNAL TCPMUX", "INTERNAL TCPMUXPLUS UNLISTED"):
        s = _one("daytime", type=kind, socket_type="stream", wait="no")
        assert (s.kind, s.credentials) == (ServiceKind.TCPMUX_CLIENT, Credentials())
    assert _errors("mine", type="TCPMUX", socket_type="stream", wait="no",
                   server="/usr/sbin/sshd") == [
        f"{F}:1: service mine: user: missing: write user = NAME (the account the server runs as)"
    ]


def test_an_invalid_type_does_not_cascade() -> None:
    """With ``type`` unreadable, only that error is reported, not guesses about the kind."""
    assert _errors("rsync", type="RPC", socket_type="stream", wait="no") == [
        f"{F}:3: service rsync: type: RPC services are not supported"
    ]


def test_redirect_to_an_unknown_host_is_an_error() -> None:
    """A redirect host that does not resolve at load is reported with the resolver's reason."""
    base = {"socket_type": "stream", "wait": "no", "user": "nobody"}
    assert _errors("http", **base, redirect="nowhere.example 80") == [
        f"{F}:6: service http: redirect: cannot resolve 'nowhere.example': "
        "Name or service not known"
    ]


def test_non_root_superd_refuses_other_groups() -> None:
    """A group other than superd's own is refused when superd is not root."""
    no_user = {k: v for k, v in SSH.items() if k != "user"}
    assert errors_of(service_text("ssh", **no_user, group="staff"), euid=1000, egid=1000) == [
        f"{F}:6: service ssh: group: superd runs as gid 1000, not root, so it cannot start "
        "servers with group 'staff' (gid 50); remove the group line or run superd as root"
    ]


def _defaults(**attributes: str) -> str:
    body = "".join(f"    {key} = {value}\n" for key, value in attributes.items())
    return f"defaults\n{{\n{body}}}\n" + service_text("echo", **ECHO)


def test_ban_store_in_defaults_is_the_configuration_s() -> None:
    """ban_store in defaults is kept as written on the Configuration; absent, it is None."""
    url = "redis://:s3cret@127.0.0.1:6380/2"
    assert load_text(_defaults(ban_store=url)).ban_store == url
    assert load_text(service_text("echo", **ECHO)).ban_store is None


def test_ban_store_is_refused_in_a_service_and_checked_as_redis_url() -> None:
    """ban_store is daemon-wide (defaults only), one value, parsed like --ban-store."""
    assert _errors(**ECHO, ban_store="redis://127.0.0.1/0") == [
        f"{F}:6: service echo: ban_store: only allowed in the defaults section"
    ]
    assert errors_of(_defaults(ban_store="http://127.0.0.1/0")) == [
        f"{F}:3: defaults: ban_store: not a redis:// or rediss:// URL: 'http://127.0.0.1/0'"
    ]
    assert errors_of(_defaults(ban_store="redis://127.0.0.1/x")) == [
        f"{F}:3: defaults: ban_store: bad database number 'x'"
    ]
    assert errors_of(_defaults(ban_store="redis://a/0 redis://b/0")) == [
        f"{F}:3: defaults: ban_store: expected 1 value, got 2"
    ]


def test_blocks_sharing_an_id_have_distinct_block_keys() -> None:
    """The seed's two ``service ssh`` on two binds share the id ``ssh`` but
    not the block key that their limits count under; an unbound block says so."""
    text = (service_text("ssh", bind="127.0.0.1", **SSH)
            + service_text("ssh", bind="127.0.0.2", **SSH)
            + service_text("echo", **ECHO))
    first, second, echo = load_text(text).services
    assert first.id == second.id == "ssh"
    assert first.block_key == "ssh tcp/22 127.0.0.1"
    assert second.block_key == "ssh tcp/22 127.0.0.2"
    assert echo.block_key == "echo tcp/7 *"


def test_blocks_without_a_fixed_port_add_their_location_to_the_key() -> None:
    """Two same-id blocks on port 0 (or tcpmux clients, with no port) can
    share id, protocol, port and bind; their keys differ by location."""
    unlisted = {**ECHO, "type": "INTERNAL UNLISTED", "port": "0", "bind": "127.0.0.1"}
    text = service_text("echo", **unlisted) + service_text("echo", **unlisted)
    first, second = load_text(text).services
    assert first.block_key != second.block_key
    assert first.block_key.startswith("echo tcp/0 127.0.0.1 ")
