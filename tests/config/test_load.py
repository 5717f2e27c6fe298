"""
Tests for ``superd.config.load``: ``-c`` as file or directory, includes,
the seed article's configuration and Debian's stock xinetd files.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, TypeVar

import pytest

from superd.config.errors import ConfigError
from superd.config.load import (
    MAX_INCLUDE_DEPTH,
    LoadEnvironment,
    included_names,
    load_configuration,
)
from superd.config.model import ServiceKind, SocketType
from superd.core.files import MAX_CONFIG_FILE
from tests.config.fakes import SERVICES, fake_environment

T = TypeVar("T")

FIXTURES = Path(__file__).parent / "fixtures"
ECHO = "service echo\n{\n type = INTERNAL\n socket_type = stream\n wait = no\n}\n"
DAYTIME = "service daytime\n{\n type = INTERNAL\n socket_type = stream\n wait = no\n}\n"


def _errors(path: str, files: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_configuration(path, environment=fake_environment(files))
    return [str(p) for p in caught.value.problems]


def test_seed_article_loads() -> None:
    """Every block of the seed article loads once its addresses are loopback."""
    services = {**SERVICES, ("rootexternalssh", "tcp"): 33333, ("sftp", "tcp"): 115,
                ("irc", "tcp"): 194}  # fmt: skip
    text = (FIXTURES / "seed.conf").read_text()
    env = fake_environment(
        {"/etc/superd/seed.conf": text},
        services=services,
        executables=("/usr/sbin/sshd", "/usr/lib/dovecot/imap-login"),
    )
    config = load_configuration("/etc/superd/seed.conf", environment=env)
    summary = [(s.id, s.port, s.bind, s.kind.value) for s in config.services]
    assert summary == [
        ("ssh", 22, ("127.0.0.2",), "external"),
        ("ssh", 22, ("127.0.0.1",), "external"),
        ("rootexternalssh", 33333, (), "external"),
        ("imaps", 993, ("127.0.0.2", "127.0.0.1"), "external"),
        ("ftp", 21, ("127.0.0.1",), "sensor"),
        ("sftp", 115, ("127.0.0.1",), "sensor"),
        ("irc", 194, ("127.0.0.1",), "sensor"),
        ("telnet", 23, ("127.0.0.1",), "sensor"),
    ]
    # The trailing-zero wildcards (127.0.0.0 = 127/8) are flagged, twice.
    assert [w.attribute for w in config.warnings] == ["only_from", "only_from"]
    lan_ssh, web_ssh, root_ssh, imaps, ftp = config.services[:5]
    assert [str(s.network) for s in lan_ssh.only_from or ()] == ["127.0.0.0/8"]
    assert (web_ssh.cps.max, web_ssh.cps.wait, web_ssh.per_source) == (30, 10, 5)
    assert web_ssh.log_on_success == {"HOST", "USERID"}
    assert web_ssh.server_args == ("-i", "-o", "PermitRootLogin=no", "-o", "AllowUsers=thisuser")
    assert (root_ssh.per_source, root_ssh.credentials.uid) == (3, 0)
    assert "IPv4" in imaps.flags
    assert [str(s.network) for s in imaps.only_from or ()] == ["127.0.0.0/8", "127.0.0.1/32"]
    assert (ftp.deny_time, ftp.log_on_success) == (1440, {"HOST", "PID"})


def _debian_files(root: str) -> dict[str, str]:
    files = {f"{root}/xinetd.conf": (FIXTURES / "debian" / "xinetd.conf").read_text()}
    for entry in sorted((FIXTURES / "debian" / "xinetd.d").iterdir()):
        files[f"{root}/xinetd.d/{entry.name}"] = entry.read_text()
    return files


def test_debian_stock_xinetd_conf_loads_unchanged() -> None:
    """Debian's /etc/xinetd.conf and /etc/xinetd.d load as shipped (all disabled)."""
    files = _debian_files("/etc")
    config = load_configuration("/etc/xinetd.conf", environment=fake_environment(files))
    assert config.services == ()
    assert config.sources[0] == "/etc/xinetd.conf"
    assert "/etc/xinetd.d/echo-udp" in config.sources
    assert len(config.sources) == 13


def test_debian_stock_files_enabled_load() -> None:
    """With ``disable = yes`` removed, the stock builtins load (except stubs xinetd removed)."""
    files = {
        name: text.replace("disable\t\t= yes", "disable\t\t= no")
        for name, text in _debian_files("/etc").items()
        if not name.endswith(("/servers", "/services", "-udp"))
    }
    config = load_configuration("/etc/xinetd.d", environment=fake_environment(files))
    ids = sorted(s.id for s in config.services)
    assert ids == sorted(f"{n}-{k}" for n in ("chargen", "daytime", "discard", "echo", "time")
                         for k in ("stream", "dgram"))  # fmt: skip
    assert {s.port for s in config.services} == {7, 9, 13, 19, 37}


def test_directory_reads_like_includedir() -> None:
    """-c DIR reads sorted entries, skipping names with '.' or ending in '~'."""
    assert included_names(["b", "a.conf", "c~", "a", "README.md"]) == ["a", "b"]
    files = {"/c/b": DAYTIME, "/c/a": ECHO, "/c/x.conf": "junk", "/c/y~": "junk"}
    config = load_configuration("/c", environment=fake_environment(files))
    assert config.sources == ("/c/a", "/c/b")
    assert [s.name for s in config.services] == ["echo", "daytime"]


def test_relative_include_resolves_against_including_file() -> None:
    """``include`` and ``includedir`` paths are relative to the including file's directory."""
    files = {
        "/etc/superd/main.conf": "include sub/one\nincludedir more\n",
        "/etc/superd/sub/one": ECHO,
        "/etc/superd/more/two": DAYTIME,
    }
    config = load_configuration("/etc/superd/main.conf", environment=fake_environment(files))
    assert config.sources == (
        "/etc/superd/main.conf",
        "/etc/superd/sub/one",
        "/etc/superd/more/two",
    )


def test_include_cycle_is_an_error_with_location() -> None:
    """A file including itself, directly or not, is reported at the include line."""
    files = {"/e/a": "include b\n", "/e/b": "\ninclude a\n"}
    assert _errors("/e/a", files) == ["/e/b:2: include cycle: /e/a -> /e/b -> /e/a"]


def test_unreadable_include_and_missing_file() -> None:
    """Unreadable includes are errors at their line; a missing -c file is named."""
    files = {"/e/a": "include nothere\nincludedir nodir\n"}
    assert _errors("/e/a", files) == [
        "/e/a:1: cannot read /e/nothere: No such file or directory",
        "/e/a:2: cannot read directory /e/nodir: No such file or directory",
    ]
    assert _errors("/missing.conf", {}) == [
        "/missing.conf: cannot read /missing.conf: No such file or directory"
    ]


def test_errors_from_every_file_in_one_pass() -> None:
    """Problems of several files are all reported together, in file order."""
    files = {
        "/c/a": "service echo\n{\n wait = maybe\n}\n",
        "/c/b": "bogus line\n",
    }
    assert _errors("/c", files) == [
        "/c/a:1: service echo: socket_type: missing: write socket_type = stream (tcp) "
        "or dgram (udp)",
        "/c/a:3: service echo: wait: expected yes or no, got 'maybe'",
        "/c/b:1: expected 'service NAME', 'defaults', 'include FILE' or 'includedir DIR', "
        "got 'bogus line'",
    ]


def test_builtins_resolve_through_the_registry() -> None:
    """``type = INTERNAL`` is checked against superd's builtin table by name and socket type."""
    config = load_configuration("/c", environment=fake_environment({"/c/echo": ECHO}))
    assert config.services[0].socket_type is SocketType.STREAM
    assert config.services[0].kind is ServiceKind.BUILTIN


@pytest.mark.skipif(not os.path.exists("/etc/xinetd.conf"), reason="xinetd not installed")
def test_system_environment_reads_this_machine() -> None:
    """The one test using the real machine: Debian's installed xinetd files load."""
    config = load_configuration("/etc/xinetd.conf", environment=LoadEnvironment.system())
    assert "/etc/xinetd.conf" in config.sources


def test_include_depth_is_bounded() -> None:
    """A chain of includes that never repeats a path still ends, with an error."""
    files = {f"/d/{n}": f"include {n + 1}\n" for n in range(40)}
    assert _errors("/d/0", files) == [f"/d/{MAX_INCLUDE_DEPTH - 1}:1: includes nested more than "
                                      f"{MAX_INCLUDE_DEPTH} deep"]  # fmt: skip


def test_same_id_twice_in_debian_files_when_enabled() -> None:
    """Enabling both of Debian's chargen-dgram definitions is reported as not unique."""
    files = {
        name: text.replace("disable\t\t= yes", "disable\t\t= no")
        for name, text in _debian_files("/etc").items()
        if name.endswith(("/chargen", "/chargen-udp"))
    }
    assert _errors("/etc/xinetd.d", files) == [
        "/etc/xinetd.d/chargen-udp:13: service chargen: port: id chargen-dgram is not unique: "
        "service chargen (/etc/xinetd.d/chargen:19) already listens on udp port 19 on *"
    ]


def test_real_files_are_read_from_disk(tmp_path: Path) -> None:
    """The system environment reads a copy of Debian's files; odd bytes in comments load."""
    (tmp_path / "xinetd.d").mkdir()
    for entry in (FIXTURES / "debian" / "xinetd.d").iterdir():
        (tmp_path / "xinetd.d" / entry.name).write_bytes(entry.read_bytes())
    stock = (FIXTURES / "debian" / "xinetd.conf").read_text()
    (tmp_path / "xinetd.conf").write_bytes(
        b"# Latin-1 comment: caf\xe9\n" + stock.replace("/etc/xinetd.d", "xinetd.d").encode()
    )
    config = load_configuration(str(tmp_path / "xinetd.conf"), environment=LoadEnvironment.system())
    assert config.services == ()
    assert len(config.sources) == 13
    by_dir = load_configuration(str(tmp_path / "xinetd.d"), environment=LoadEnvironment.system())
    assert len(by_dir.sources) == 12


def test_empty_directory_is_an_error() -> None:
    """-c pointing at a directory with no configuration files says so."""
    files = {"/c/README.txt": "not read"}
    assert _errors("/c", files) == ["/c: no configuration files in this directory"]


def test_include_paths_have_no_dot_components() -> None:
    """``includedir .`` (the sample conf/xinetd.conf) names its files
    ``conf/echo``, not ``conf/./echo``, in sources and messages; ``..`` stays."""
    files = {
        "conf/xinetd.conf": "includedir .\ninclude ./../extra/one\n",
        "conf/echo": ECHO,
        "extra/one": DAYTIME,
    }
    config = load_configuration("conf/./xinetd.conf", environment=fake_environment(files))
    assert config.sources == ("conf/xinetd.conf", "conf/echo", "conf/../extra/one")


# -- issue 13 item 9: input that crashed or never ended ----------------------------


def _finishes(load: Callable[[], T], seconds: float = 20.0) -> T:
    """``load()``'s result, failing (not hanging) if it has not returned in time."""
    result: list[T] = []
    worker = threading.Thread(target=lambda: result.append(load()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"loading did not finish within {seconds} s"
    return result[0]


def _system_errors(path: Path) -> list[str]:
    def load() -> list[str]:
        with pytest.raises(ConfigError) as caught:
            load_configuration(str(path), environment=LoadEnvironment.system())
        return [str(p) for p in caught.value.problems]

    return _finishes(load)


UNLISTED_ECHO = ("service echo\n{\n type = INTERNAL UNLISTED\n port = 0\n socket_type = stream\n"
                 " wait = no\n")


def test_include_of_a_fifo_or_a_device_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """``include`` of a FIFO (no writer) or of /dev/zero is refused at once, at its line."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "conf").write_text(f"include {tmp_path}/fifo\ninclude /dev/zero\n")
    assert _system_errors(tmp_path / "conf") == [
        f"{tmp_path}/conf:1: cannot read {tmp_path}/fifo: not a regular file (a FIFO)",
        f"{tmp_path}/conf:2: cannot read /dev/zero: not a regular file (a character device)",
    ]


def test_tls_files_that_are_fifos_or_devices_are_errors_of_their_line(tmp_path: Path) -> None:
    """tls_cert on a FIFO and tls_key on /dev/zero: FILE:LINE: service: attribute: why."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "conf").write_text(UNLISTED_ECHO + f" tls_cert = {tmp_path}/fifo\n"
                                   " tls_key = /dev/zero\n tls_client_ca = /dev/zero\n}\n")
    conf = tmp_path / "conf"
    assert _system_errors(conf) == [
        f"{conf}:7: service echo: tls_cert: cannot read {tmp_path}/fifo: "
        "not a regular file (a FIFO)",
        f"{conf}:8: service echo: tls_key: cannot read /dev/zero: "
        "not a regular file (a character device)",
        f"{conf}:9: service echo: tls_client_ca: cannot read /dev/zero: "
        "not a regular file (a character device)",
    ]


def test_a_file_over_four_mebibytes_is_refused(tmp_path: Path) -> None:
    """Configuration files are bounded: over 4 MiB is one clear error, nothing is parsed."""
    (tmp_path / "big").write_bytes(b"# padding\n" * (MAX_CONFIG_FILE // 10 + 1))
    (tmp_path / "conf").write_text("include big\n")
    assert _system_errors(tmp_path / "conf") == [
        f"{tmp_path}/conf:1: cannot read {tmp_path}/big: larger than 4 MiB"]


@pytest.mark.parametrize("attribute", ["include", "includedir"])
def test_a_nul_byte_in_an_include_path_is_not_a_traceback(tmp_path: Path,
                                                          attribute: str) -> None:
    """A NUL byte makes the file 'not a text file': one error, naming the line."""
    (tmp_path / "conf").write_bytes(b"# a config\n" + attribute.encode() + b" /etc/a\x00b\n")
    assert _system_errors(tmp_path / "conf") == [
        f"{tmp_path}/conf:2: not a text file (it holds NUL bytes)"]


@pytest.mark.parametrize("attribute", ["tls_cert", "tls_key", "tls_client_ca"])
def test_a_nul_byte_in_a_tls_path_is_not_a_traceback(tmp_path: Path, attribute: str) -> None:
    """The same for the PEM file attributes (open() raised ValueError)."""
    text = UNLISTED_ECHO + f" {attribute} = /etc/a\x00b\n}}\n"
    (tmp_path / "conf").write_text(text)
    assert _system_errors(tmp_path / "conf") == [
        f"{tmp_path}/conf:7: not a text file (it holds NUL bytes)"]


def test_a_service_name_that_is_not_utf8_is_an_error_of_its_block(tmp_path: Path) -> None:
    """The /etc/services lookup of a non-UTF-8 name crashed; now the block fails, and
    its name is shown escaped."""
    (tmp_path / "conf").write_bytes(
        b"service \xff\xfeecho\n{\n socket_type = stream\n wait = no\n type = INTERNAL\n}\n")
    assert _system_errors(tmp_path / "conf") == [
        f"{tmp_path}/conf:1: service \\xff\\xfeecho: this line is not valid UTF-8"]


def test_services_lookup_of_an_impossible_name_is_an_oserror() -> None:
    """The system environment's getservbyname never raises anything but OSError."""
    env = LoadEnvironment.system()
    for name in ("\udcff\udcfeecho", "ec\x00ho"):
        with pytest.raises(OSError):
            env.getservbyname(name, "tcp")


def test_includedir_lists_what_it_skips(tmp_path: Path) -> None:
    """Names with '.' or '~', broken links, link loops and non-files are notes (in
    reading order), never errors and never silent."""
    (tmp_path / "echo").write_text(UNLISTED_ECHO + "}\n")
    (tmp_path / "daytime.conf").write_text("junk\n")
    (tmp_path / "backup~").write_text("junk\n")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "sub").mkdir()
    os.mkfifo(tmp_path / "pipe")
    config = _finishes(lambda: load_configuration(str(tmp_path),
                                                  environment=LoadEnvironment.system()))
    assert [s.name for s in config.services] == ["echo"]
    assert [str(n) for n in config.notes] == [
        f"{tmp_path}/backup~: skipped: includedir reads no name that contains '.' or ends in '~'",
        f"{tmp_path}/daytime.conf: skipped: includedir reads no name that contains '.' or "
        "ends in '~'",
        f"{tmp_path}/gone: skipped: broken symbolic link",
        f"{tmp_path}/loop: skipped: symbolic link loop",
        f"{tmp_path}/pipe: skipped: not a regular file (a FIFO)",
        f"{tmp_path}/sub: skipped: not a regular file (a directory)",
    ]
