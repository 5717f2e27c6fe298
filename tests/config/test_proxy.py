"""
``proxy_protocol``, ``proxy_from``, ``proxy_timeout``, ``redirect_proxy`` and
``v6_source_prefix`` through the real loader: the values the runtime gets,
and every problem -- a bad value, a combination that cannot work -- as
``FILE:LINE: service NAME: ATTRIBUTE: problem``.
"""

from __future__ import annotations

from pathlib import Path

from superd.config.load import load_configuration
from superd.config.model import Configuration, ProxySettings
from tests.config.fakes import errors_under

HEAD = ("service {name}\n{{\n\ttype = {type}\n\tsocket_type = {socket}\n\twait = {wait}\n"
        "\tport = 0\n")


def write(tmp_path: Path, body: str, *, name: str = "echo", type: str = "INTERNAL UNLISTED",
          socket: str = "stream", wait: str = "no", defaults: str = "") -> str:
    conf = tmp_path / "svc"
    text = f"defaults\n{{\n{defaults}}}\n" if defaults else ""
    conf.write_text(text + HEAD.format(name=name, type=type, socket=socket, wait=wait)
                    + body + "}\n")
    return str(conf)


def load(tmp_path: Path, body: str, **kw: str) -> Configuration:
    return load_configuration(write(tmp_path, body, **kw))


def problems(tmp_path: Path, body: str, **kw: str) -> list[str]:
    return errors_under(tmp_path, lambda: load(tmp_path, body, **kw))


def test_proxy_settings_loaded(tmp_path: Path) -> None:
    """The three attributes become the service's ProxySettings."""
    config = load(tmp_path, "\tproxy_protocol = any\n\tproxy_from = 10.0.0.0/8 127.0.0.1\n"
                            "\tproxy_timeout = 2.5\n")
    proxy = config.services[0].extensions.proxy
    assert isinstance(proxy, ProxySettings)
    assert proxy.versions == frozenset({1, 2})
    assert [s.text for s in proxy.sources or ()] == ["10.0.0.0/8", "127.0.0.1"]
    assert proxy.timeout == 2.5


def test_no_proxy_by_default(tmp_path: Path) -> None:
    """Without the attributes nothing is read: no settings, prefix 128."""
    service = load(tmp_path, "").services[0]
    assert service.extensions.proxy is None
    assert service.extensions.redirect_proxy is None
    assert service.v6_source_prefix == 128


def test_proxy_v2_any_source(tmp_path: Path) -> None:
    """proxy_protocol alone: that version, from any source, 5 s -- with a
    warning, since anyone reaching the port may then name any client."""
    config = load(tmp_path, "\tproxy_protocol = v2\n")
    assert config.services[0].extensions.proxy == ProxySettings(frozenset({2}), None, 5.0)
    assert [str(w).replace(str(tmp_path) + "/", "") for w in config.warnings] == [
        "svc:7: service echo: proxy_protocol: no proxy_from: any source that reaches the"
        " port may claim to be any client"]
    assert load(tmp_path, "\tproxy_protocol = v2\n\tproxy_from = 10.0.0.1\n").warnings == ()


def test_bad_values(tmp_path: Path) -> None:
    """Each attribute's value is checked where it is written."""
    assert problems(tmp_path, "\tproxy_protocol = v3\n\tproxy_from = nowhere..\n"
                              "\tproxy_timeout = -1\n\tv6_source_prefix = 129\n") == [
        "svc:7: service echo: proxy_protocol: expected v1 or v2 or any, got 'v3'",
        "svc:8: service echo: proxy_from: 'nowhere..' is not an address, network, host name"
        " or .domain (forms: 10.0.0.1, 10.0.0.0/8, 10.0.{1,2}, ::1, fe80::/10,"
        " host.example.com, .example.com)",
        "svc:9: service echo: proxy_timeout: expected a number > 0, got '-1'",
        "svc:10: service echo: v6_source_prefix: expected an integer from 1 to 128,"
        " got '129'",
    ]


def test_impossible_combinations(tmp_path: Path) -> None:
    """PROXY on a datagram service, on wait = yes, on a tcpmux client, with
    USERID, or proxy_from naming hosts, are errors on the line to fix."""
    assert problems(tmp_path, "\tproxy_protocol = v1\n", socket="dgram", wait="yes") == [
        "svc:7: service echo: proxy_protocol: PROXY headers come only on"
        " socket_type = stream services"]
    assert problems(tmp_path, "\tproxy_protocol = v1\n\tserver = /bin/cat\n\tuser = root\n",
                    type="UNLISTED", wait="yes") == [
        "svc:7: service echo: proxy_protocol: with wait = yes the server accepts its"
        " connections itself; superd never sees their PROXY headers"]
    assert problems(tmp_path, "\tproxy_protocol = v1\n\tserver = /bin/cat\n\tuser = root\n",
                    type="TCPMUX", name="mine") == [
        "svc:7: service mine: proxy_protocol: the header comes before the service name:"
        " set proxy_protocol on the tcpmux service"]
    assert problems(tmp_path, "\tproxy_protocol = v1\n\tlog_on_success = USERID\n") == [
        "svc:7: service echo: proxy_protocol: USERID in log_on_success cannot work behind"
        " a proxy (the client's identd knows its connection to the proxy, not to superd)"]
    assert problems(tmp_path, "\tproxy_protocol = v1\n\tproxy_from = lb.example.org\n") == [
        "svc:8: service echo: proxy_from: lb.example.org: proxy_from takes addresses and"
        " networks, not host names (a proxy is trusted before any lookup)"]


def test_proxy_from_needs_proxy_protocol(tmp_path: Path) -> None:
    """proxy_from or proxy_timeout alone would silently do nothing: an error;
    not repeated when proxy_protocol itself was written wrong."""
    assert problems(tmp_path, "\tproxy_from = 10.0.0.1\n\tproxy_timeout = 3\n") == [
        "svc:7: service echo: proxy_from: proxy_from needs proxy_protocol = v1, v2 or any",
        "svc:8: service echo: proxy_timeout: proxy_timeout needs proxy_protocol = v1,"
        " v2 or any",
    ]
    assert problems(tmp_path, "\tproxy_protocol = yes\n\tproxy_from = 10.0.0.1\n") == [
        "svc:7: service echo: proxy_protocol: expected v1 or v2 or any, got 'yes'"]


def test_redirect_proxy(tmp_path: Path) -> None:
    """redirect_proxy is a version for a redirect; without one, or with an
    upstream TLS it would have to precede, it is an error."""
    ok = load(tmp_path, "\tredirect = 127.0.0.1 7\n\tredirect_proxy = v2\n\tuser = root\n",
              type="UNLISTED")
    assert ok.services[0].extensions.redirect_proxy == 2
    assert problems(tmp_path, "\tredirect_proxy = v1\n") == [
        "svc:7: service echo: redirect_proxy: redirect_proxy needs redirect = host port"]
    found = problems(tmp_path, "\tredirect = 127.0.0.1 7\n\tredirect_proxy = v1\n"
                               "\tredirect_tls = yes\n\tredirect_tls_name = up\n\tuser = root\n",
                     type="UNLISTED")
    assert found == [
        "svc:8: service echo: redirect_proxy: redirect_proxy cannot be combined with"
        " redirect_tls (the header would have to precede the TLS handshake)"]


def test_v6_source_prefix_from_defaults(tmp_path: Path) -> None:
    """v6_source_prefix set in the defaults applies to services that do not
    set their own."""
    config = load_configuration(write(tmp_path, "", defaults="\tv6_source_prefix = 64\n"))
    assert config.services[0].v6_source_prefix == 64
    own = load_configuration(write(tmp_path, "\tv6_source_prefix = 56\n",
                                   defaults="\tv6_source_prefix = 64\n"))
    assert own.services[0].v6_source_prefix == 56
