"""
The PROXY protocol on the real daemon, behind a real HAProxy (``send-proxy``
and ``send-proxy-v2``, loopback, started and stopped by the test): builtins
and external servers see the client HAProxy accepted, access rules and
limits act on it, an untrusted proxy is refused, TLS works behind it,
``redirect_proxy`` tells an upstream; and hand-written headers -- bad ones,
and IPv6 clients of one /64 under ``v6_source_prefix``.

HAProxy connects from 127.0.0.5 (``PROXY_SOURCE``); clients from 127.0.0.2
and 127.0.0.3, so the peer superd sees is never the proxy by accident.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from superd.net.proxywire import V2_SIGNATURE
from tests.certs import PKI
from tests.integration.external import read_all, script, service_block
from tests.integration.haproxy import PROXY_SOURCE, run_haproxy
from tests.integration.harness import Superd
from tests.integration.openssl import s_client_line
from tests.integration.reloading import echo_block as reload_echo
from tests.integration.reloading import latest_port, reload_and_wait

StartSuperd = Callable[..., Superd]
ConfDir = Callable[..., Path]


def echo_block(service_id: str = "echo", extra: str = "") -> str:
    return (f"service echo\n{{\n\tid = {service_id}\n\ttype = INTERNAL UNLISTED\n"
            "\tsocket_type = stream\n\twait = no\n\tport = 0\n\tbind = 127.0.0.1\n"
            "\tlog_on_success = HOST\n\tlog_on_failure = HOST\n"
            f"\tproxy_protocol = any\n\tproxy_from = {PROXY_SOURCE} 127.0.0.1\n{extra}}}\n")


def echoes(conn: socket.socket, payload: bytes = b"ping\n") -> bool:
    """True if the connection echoes ``payload``; False if it was closed or reset."""
    try:
        conn.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = conn.recv(4096)
            if not chunk:
                return False
            got += chunk
        return got == payload
    except OSError:
        return False


def wait_line(superd: Superd, line: str) -> None:
    superd.wait_for_event(lambda e: e.get("xinetd_line") == line)


def fails(superd: Superd) -> list[str]:
    return [line for line in superd.xinetd_lines() if line.startswith("FAIL")]


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_echo_sees_the_client_behind_haproxy(superd_factory: StartSuperd, conf_dir: ConfDir,
                                             tmp_path: Path, send: str) -> None:
    """echo behind HAProxy: the bytes go through and START names the client
    (127.0.0.2), not HAProxy (127.0.0.5)."""
    superd = superd_factory(conf_dir(echo=echo_block()))
    with run_haproxy(tmp_path, superd.port("echo"), send=send) as haproxy, \
            haproxy.connect("127.0.0.2") as client:
        assert echoes(client, b"through the balancer\n")
    wait_line(superd, "START: echo from=127.0.0.2")
    assert fails(superd) == []


def test_external_server_environment(superd_factory: StartSuperd, conf_dir: ConfDir,
                                     tmp_path: Path, world_dir: Path, pki: PKI) -> None:
    """A spawned server behind HAProxy terminating TLS (send-proxy-v2 with
    its TLVs): REMOTE_ADDR/TCPREMOTEIP name the client, PROXY_* the rest --
    ALPN, authority (SNI), the client certificate's CN, the TLS version --
    and the line the client sent with the handshake's end reaches the
    server whole: nothing after the header was lost in the hand-off."""
    server = script(world_dir, "show-env", "read line\n"
                    "env | grep -E '^(REMOTE_ADDR|TCPREMOTEIP|PROXY_)' | sort\n"
                    "echo \"got $line\"\n")
    superd = superd_factory(conf_dir(show=service_block(
        "show", server, extra=f"proxy_protocol = v2\nproxy_from = {PROXY_SOURCE}\n")))
    combined = tmp_path / "front.pem"
    combined.write_bytes(pki.server.cert_pem + pki.server.key_pem)
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    context.load_cert_chain(str(pki.client.cert_path), str(pki.client.key_path))
    context.set_alpn_protocols(["http/1.1"])
    with run_haproxy(
            tmp_path, superd.port("show"), send="send-proxy-v2",
            bind_options=f"ssl crt {combined} alpn h2,http/1.1 verify optional"
                         f" ca-file {pki.ca_path}",
            server_options="proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,"
                           "authority,crc32c") as haproxy, \
            haproxy.connect("127.0.0.3") as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"hello there\n")
        output = read_all(tls).decode()
    lines = output.splitlines()
    assert lines[-1] == "got hello there"
    env = dict(line.split("=", 1) for line in lines[:-1])
    assert (env["REMOTE_ADDR"], env["TCPREMOTEIP"]) == ("127.0.0.3", "127.0.0.3")
    assert (env["PROXY_VERSION"], env["PROXY_COMMAND"]) == ("2", "PROXY")
    assert env["PROXY_ADDR"] == PROXY_SOURCE
    assert (env["PROXY_DST_ADDR"], env["PROXY_DST_PORT"]) == ("127.0.0.1", str(haproxy.port))
    assert env["PROXY_ALPN"] == "http/1.1"
    assert env["PROXY_AUTHORITY"] == "localhost"
    assert (env["PROXY_SSL"], env["PROXY_SSL_CERT_CONN"], env["PROXY_SSL_VERIFY"]) == \
        ("1", "1", "0")
    assert env["PROXY_SSL_CN"] == "client1"
    assert env["PROXY_SSL_VERSION"].startswith("TLSv1.")
    assert env["PROXY_SSL_CIPHER"]
    superd.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("START: show pid=")
                          and str(e.get("xinetd_line")).endswith(" from=127.0.0.3"))


def test_access_rules_and_limits_act_on_the_client(superd_factory: StartSuperd,
                                                   conf_dir: ConfDir, tmp_path: Path) -> None:
    """only_from and per_source judge the client HAProxy names: 127.0.0.2
    is admitted once (per_source = 1) and refused the second time, 127.0.0.3
    is not in only_from -- while every connection comes from HAProxy."""
    superd = superd_factory(conf_dir(echo=echo_block(
        extra="\tonly_from = 127.0.0.2\n\tper_source = 1\n")))
    with run_haproxy(tmp_path, superd.port("echo"), send="send-proxy-v2") as haproxy:
        with haproxy.connect("127.0.0.2") as first:
            assert echoes(first)
            with haproxy.connect("127.0.0.2") as second:
                assert not echoes(second)
            with haproxy.connect("127.0.0.3") as other:
                assert not echoes(other)
        wait_line(superd, "FAIL: echo address from=127.0.0.3")
        assert fails(superd) == ["FAIL: echo per_source_limit from=127.0.0.2",
                                 "FAIL: echo address from=127.0.0.3"]


def test_proxy_not_in_proxy_from_is_refused(superd_factory: StartSuperd, conf_dir: ConfDir,
                                            tmp_path: Path) -> None:
    """A proxy connecting from an address outside proxy_from (127.0.0.6)
    is refused before its header is read: FAIL proxy, from the proxy."""
    superd = superd_factory(conf_dir(echo=echo_block()))
    with run_haproxy(tmp_path, superd.port("echo"), source="127.0.0.6") as haproxy, \
            haproxy.connect("127.0.0.2") as client:
        assert not echoes(client)
    wait_line(superd, "FAIL: echo proxy from=127.0.0.6")
    # HAProxy may retry a server that closes at once: one refusal or more.
    assert {e["detail"] for e in superd.events() if e.get("event") == "refuse"} == {
        "not in proxy_from"}


def test_tls_behind_haproxy_tcp_mode(superd_factory: StartSuperd, conf_dir: ConfDir,
                                     tmp_path: Path, pki: PKI) -> None:
    """superd terminates TLS behind HAProxy in mode tcp (send-proxy): the
    header comes before the handshake, as HAProxy sends it; openssl
    s_client through HAProxy gets its echo, and START names the client."""
    superd = superd_factory(conf_dir(echo=echo_block(
        "techo", f"\ttls_cert = {pki.server.cert_path}\n\ttls_key = {pki.server.key_path}\n")))
    with run_haproxy(tmp_path, superd.port("techo")) as haproxy:
        assert s_client_line(haproxy.port, pki.ca_path, b"hello through TLS\n") == \
            b"hello through TLS\n"
    wait_line(superd, "START: techo from=127.0.0.1")
    assert fails(superd) == []


def test_redirect_proxy_tells_the_upstream(superd_factory: StartSuperd, conf_dir: ConfDir,
                                           tmp_path: Path) -> None:
    """HAProxy -> superd (proxy_protocol v1) -> redirect_proxy = v2 -> a test
    upstream: the upstream reads a v2 header naming the client behind
    HAProxy and the address it connected to, then the client's bytes."""
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        upstream.settimeout(20)
        conn, _ = upstream.accept()
        with conn:
            received.append(read_all(conn))

    reader = threading.Thread(target=serve)
    reader.start()
    relay = (f"service relay\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
             f"\tport = 0\n\tbind = 127.0.0.1\n\tuser = root\n"
             f"\tredirect = 127.0.0.1 {upstream.getsockname()[1]}\n\tredirect_proxy = v2\n"
             f"\tproxy_protocol = v1\n\tproxy_from = {PROXY_SOURCE}\n"
             "\tlog_on_success = HOST\n\tlog_on_failure = HOST\n}\n")
    superd = superd_factory(conf_dir(relay=relay))
    try:
        with run_haproxy(tmp_path, superd.port("relay")) as haproxy, \
                haproxy.connect("127.0.0.2") as client:
            client.sendall(b"payload")
            client.shutdown(socket.SHUT_WR)
            read_all(client)
    finally:
        reader.join(25)
        upstream.close()
    (data,) = received
    addresses = socket.inet_aton("127.0.0.2") + socket.inet_aton("127.0.0.1")
    assert data.startswith(V2_SIGNATURE + b"\x21\x11\x00\x0c" + addresses)
    assert struct.unpack("!H", data[26:28]) == (haproxy.port,)
    assert data[28:] == b"payload"


# -- hand-written headers -------------------------------------------------

def v2_header(client: str, port: int = 4321, command: int = 1) -> bytes:
    """A v2 header for an IPv6 ``client`` connecting to [2001:db8::80]:443."""
    if command == 0:
        return V2_SIGNATURE + b"\x20\x00\x00\x00"
    body = (socket.inet_pton(socket.AF_INET6, client)
            + socket.inet_pton(socket.AF_INET6, "2001:db8::80") + struct.pack("!HH", port, 443))
    return V2_SIGNATURE + b"\x21\x21" + struct.pack("!H", len(body)) + body


def send_through(port: int, header: bytes) -> socket.socket:
    """A connection that presents ``header`` as a load balancer would."""
    conn = socket.create_connection(("127.0.0.1", port), 10)
    conn.sendall(header)
    return conn


def test_v6_prefix_limits_and_bans_over_proxy_headers(superd_factory: StartSuperd,
                                                      conf_dir: ConfDir) -> None:
    """IPv6 clients of one /64, presented by hand-written v2 headers (the
    loopback has one IPv6 address): per_source = 2 with v6_source_prefix =
    64 admits two of them and refuses a third address of the same /64,
    while another /64 is served; a sensor hit from 2001:db8:5:6::1 bans
    its /64 daemon-wide, so another address of it is refused by echo."""
    trap = ("service trap\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
            "\twait = no\n\tport = 0\n\tbind = 127.0.0.1\n\tflags = SENSOR\n\tdeny_time = 5\n"
            "\tproxy_protocol = v2\n\tproxy_from = 127.0.0.1\n\tlog_on_failure = HOST\n}\n")
    superd = superd_factory(conf_dir(
        a_defaults="defaults\n{\n\tv6_source_prefix = 64\n}\n",
        echo=echo_block(extra="\tper_source = 2\n"), trap=trap))
    port = superd.port("echo")
    held = [send_through(port, v2_header(h)) for h in ("2001:db8:1:2::1", "2001:db8:1:2::2")]
    try:
        assert all(echoes(c) for c in held)
        with send_through(port, v2_header("2001:db8:1:2:ffff:ffff:ffff:3")) as third:
            assert not echoes(third)
        with send_through(port, v2_header("2001:db8:1:3::1")) as other:
            assert echoes(other)
    finally:
        for conn in held:
            conn.close()
    with send_through(superd.port("trap"), v2_header("2001:db8:5:6::1")) as hit:
        assert hit.recv(10) == b""
    superd.wait_for_event(lambda e: e.get("event") == "ban"
                          and e.get("peer_host") == "2001:db8:5:6::/64")
    with send_through(port, v2_header("2001:db8:5:6:aaaa::99")) as banned:
        assert not echoes(banned)
    wait_line(superd, "FAIL: echo address from=2001:db8:5:6:aaaa::99")
    assert fails(superd) == ["FAIL: echo per_source_limit from=2001:db8:1:2:ffff:ffff:ffff:3",
                             "FAIL: trap address from=2001:db8:5:6::1",
                             "FAIL: echo address from=2001:db8:5:6:aaaa::99"]


@pytest.mark.parametrize("data, detail", [
    (b"GET / HTTP/1.0\r\n\r\n", "no PROXY header"),
    (b"PROXY TCP4 127.0.0.2 127.0.0.1 70000 7\r\nping\n", "malformed v1 header (ValueError)"),
    (b"PROXY TCP4 " + b"9" * 300, "a v1 header longer than 107 bytes"),
    (V2_SIGNATURE + b"\x21\x11\xff\xf0" + b"\0" * 100, "a v2 header of 65536 bytes"
                                                       " (at most 4096)"),
])
def test_bad_headers_refused(superd_factory: StartSuperd, conf_dir: ConfDir,
                             data: bytes, detail: str) -> None:
    """Missing, malformed and oversized headers: FAIL proxy, a closed
    connection, no descriptor left behind, the daemon still serving."""
    superd = superd_factory(conf_dir(echo=echo_block()))
    port = superd.port("echo")
    baseline = superd.idle_fds()
    with send_through(port, data) as conn:
        assert not echoes(conn)
    wait_line(superd, "FAIL: echo proxy from=127.0.0.1")
    assert [e["detail"] for e in superd.events() if e.get("event") == "refuse"] == [detail]
    assert not superd.fds_beyond(baseline)
    with send_through(port, b"PROXY TCP4 127.0.0.3 127.0.0.1 5 7\r\n") as good:
        assert echoes(good)


def test_split_header_and_late_header(superd_factory: StartSuperd, conf_dir: ConfDir) -> None:
    """A v1 header sent in pieces is read whole; one not finished within
    proxy_timeout is refused (FAIL proxy) and closed; a v2 LOCAL header
    keeps the proxy's own address as the peer."""
    superd = superd_factory(conf_dir(echo=echo_block(extra="\tproxy_timeout = 1\n")))
    port = superd.port("echo")
    header = b"PROXY TCP4 127.0.0.3 127.0.0.1 5 7\r\n"
    with socket.create_connection(("127.0.0.1", port), 10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(header), 5):
            conn.sendall(header[start:start + 5])
        assert echoes(conn)
    wait_line(superd, "START: echo from=127.0.0.3")
    with send_through(port, header[:12]) as late:
        late.settimeout(10)
        assert late.recv(10) == b""
    superd.wait_for_event(lambda e: e.get("event") == "refuse"
                          and e.get("detail") == "no complete header within 1s")
    with send_through(port, v2_header("", command=0)) as local:
        assert echoes(local)
    wait_line(superd, "START: echo from=127.0.0.1")


def test_hand_off_keeps_what_follows_the_header(superd_factory: StartSuperd,
                                                conf_dir: ConfDir, world_dir: Path) -> None:
    """Header and request in one segment to a spawned server: superd takes
    exactly the header off the socket, the server reads the request that
    followed it, and its REMOTE_ADDR is the client the header named."""
    server = script(world_dir, "greet", 'read line\necho "got $line from $REMOTE_ADDR"\n')
    superd = superd_factory(conf_dir(greet=service_block(
        "greet", server, extra="proxy_protocol = v1\nproxy_from = 127.0.0.1\n")))
    with send_through(superd.port("greet"),
                      b"PROXY TCP4 127.0.0.3 127.0.0.1 5 7\r\nhello\n") as conn:
        assert read_all(conn) == b"got hello from 127.0.0.3\n"


def test_tls_external_server_behind_haproxy(superd_factory: StartSuperd, conf_dir: ConfDir,
                                            tmp_path: Path, world_dir: Path,
                                            pki: PKI) -> None:
    """superd's TLS in front of a spawned server (pipe mode) behind HAProxy:
    the server's REMOTE_ADDR is the client, PROXY_ADDR the balancer, and
    the line the client sent reaches it."""
    server = script(world_dir, "who", 'read line\necho "$line $REMOTE_ADDR $PROXY_ADDR"\n')
    superd = superd_factory(conf_dir(who=service_block(
        "who", server, extra=f"proxy_protocol = v2\nproxy_from = {PROXY_SOURCE}\n"
                             f"tls_cert = {pki.server.cert_path}\n"
                             f"tls_key = {pki.server.key_path}\n")))
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    with run_haproxy(tmp_path, superd.port("who"), send="send-proxy-v2") as haproxy, \
            haproxy.connect("127.0.0.2") as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"hi\n")
        assert read_all(tls) == f"hi 127.0.0.2 {PROXY_SOURCE}\n".encode()


def test_tcpmux_behind_a_proxy(superd_factory: StartSuperd, conf_dir: ConfDir,
                               world_dir: Path) -> None:
    """The header comes before tcpmux's service line: the selected service
    judges the client it names (its only_from) and its server sees it."""
    server = script(world_dir, "mux", 'read line\necho "$line $REMOTE_ADDR $PROXY_ADDR"\n')
    tcpmux = ("service tcpmux\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
              "\twait = no\n\tport = 0\n\tbind = 127.0.0.1\n\tproxy_protocol = v1\n"
              "\tproxy_from = 127.0.0.1\n\tlog_on_failure = HOST\n}\n")
    mine = service_block("mine", server, extra="type = TCPMUXPLUS\nonly_from = 127.0.0.3\n")
    mine = mine.replace("\ttype           = UNLISTED\n", "").replace("\tport           = 0\n", "")
    mine = mine.replace("\tbind           = 127.0.0.1\n", "")
    superd = superd_factory(conf_dir(tcpmux=tcpmux, mine=mine))
    port = superd.port("tcpmux")
    with send_through(port, b"PROXY TCP4 127.0.0.3 127.0.0.1 5 1\r\nmine\r\nhi\n") as conn:
        assert read_all(conn) == b"+Go\r\nhi 127.0.0.3 127.0.0.1\n"
    with send_through(port, b"PROXY TCP4 127.0.0.2 127.0.0.1 5 1\r\nmine\r\nhi\n") as conn:
        assert read_all(conn) == b""
    wait_line(superd, "FAIL: mine address from=127.0.0.2")


def test_reload_turns_the_header_on_and_off(superd_factory: StartSuperd,
                                            conf_dir: ConfDir) -> None:
    """A reload that adds proxy_protocol makes the service read headers
    from its next connection on (a client talking first is refused); one
    that removes it serves plain clients again."""
    plain = reload_echo("echo")
    proxied = reload_echo("echo", extra="proxy_protocol = v1\nproxy_from = 127.0.0.1\n"
                                        "log_on_failure = HOST\nlog_on_success = HOST\n")
    directory = conf_dir(echo=plain)
    superd = superd_factory(directory)
    with socket.create_connection(("127.0.0.1", latest_port(superd, "echo")), 10) as conn:
        assert echoes(conn)
    (directory / "echo").write_text(proxied)
    assert reload_and_wait(superd)["ok"]
    port = latest_port(superd, "echo")
    with socket.create_connection(("127.0.0.1", port), 10) as conn:
        assert not echoes(conn)
    with send_through(port, b"PROXY TCP4 127.0.0.3 127.0.0.1 5 7\r\n") as conn:
        assert echoes(conn)
    wait_line(superd, "START: echo from=127.0.0.3")
    (directory / "echo").write_text(plain)
    assert reload_and_wait(superd)["ok"]
    with socket.create_connection(("127.0.0.1", latest_port(superd, "echo")), 10) as conn:
        assert echoes(conn)
