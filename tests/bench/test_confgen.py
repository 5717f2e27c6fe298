"""The generated benchmark configuration: the same services for both daemons."""

from __future__ import annotations

import ipaddress
import os

from benchlib import confgen

from superd.config.load import load_configuration


def _render(tmp_path: object, base: int) -> str:
    return confgen.render(confgen.bench_services(), base, log_dir=str(tmp_path))


def test_renderings_differ_only_in_ports(tmp_path: object) -> None:
    """superd's and xinetd's texts are the same apart from the port range."""
    sd = _render(tmp_path, confgen.SUPERD_BASE).replace("port = 28", "port = PP")
    xi = _render(tmp_path, confgen.XINETD_BASE).replace("port = 27", "port = PP")
    assert sd == xi


def test_address_lists_have_the_size_and_the_admitting_entry_last() -> None:
    """Each list holds LIST_SIZE entries; only the last only_from entry admits 127.0.0.1."""
    only, deny = confgen.address_lists(1000)
    assert len(only) == 1000 and len(deny) == 1000
    client = ipaddress.ip_address("127.0.0.1")
    admits = [e for e in only if client in ipaddress.ip_network(e)]
    assert admits == ["127.0.0.1"] and only[-1] == "127.0.0.1"
    assert not any(client in ipaddress.ip_network(e) for e in deny)
    assert ipaddress.ip_address("127.0.0.2") not in ipaddress.ip_network(only[-1])


def test_superd_loads_the_generated_configuration(tmp_path: os.PathLike[str]) -> None:
    """superd's loader accepts the bench config (as a dot-free file in a directory)."""
    conf_dir = os.path.join(tmp_path, "conf")
    os.mkdir(conf_dir)
    with open(os.path.join(conf_dir, "bench"), "w") as f:
        f.write(_render(tmp_path, confgen.SUPERD_BASE))
    config = load_configuration(conf_dir)
    got = {svc.id: svc.port for svc in config.services}
    want = {svc.ident: svc.port(confgen.SUPERD_BASE) for svc in confgen.bench_services()}
    assert got == want
    lists = next(s for s in config.services if s.id == "daytime-lists")
    assert lists.only_from is not None and len(lists.only_from) == confgen.LIST_SIZE
    assert len(lists.no_access) == confgen.LIST_SIZE


def test_large_address_lists_stay_distinct_and_unambiguous() -> None:
    """100,000 entries per list, none repeated, none reaching 127/8, and no
    no_access host ending in .0 (which xinetd's syntax reads as a network)."""
    only, deny = confgen.address_lists(100_000)
    assert len(set(only)) == len(only) == 100_000
    assert len(set(deny)) == len(deny) == 100_000
    loopback = ipaddress.ip_network("127.0.0.0/8")
    assert not any(ipaddress.ip_network(e).overlaps(loopback) for e in only[:-1] + deny)
    assert not any(e.endswith(".0") for e in deny)


def test_the_udp_echo_is_a_datagram_builtin_both_daemons_get(tmp_path: os.PathLike[str]) -> None:
    """The latency figure floods this service: superd reads it as a UDP builtin
    on the offset the figure uses, and readiness waits for it on /proc/net/udp."""
    svc = confgen.udp_echo(confgen.UDP_ECHO_OFFSET)
    assert svc.udp and not confgen.bench_services()[0].udp
    assert svc in confgen.bench_services()
    path = os.path.join(tmp_path, "udp")
    with open(path, "w") as f:
        f.write(confgen.render([svc], confgen.SUPERD_BASE, log_dir=str(tmp_path)))
    (loaded,) = load_configuration(path, strict=True).services
    assert loaded.port == confgen.SUPERD_BASE + confgen.UDP_ECHO_OFFSET
    assert loaded.socket_type.value == "dgram" and loaded.wait
