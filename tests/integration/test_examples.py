"""
The ready-made service files of conf/examples: every one passes ``superd
check`` as shipped (the TLS one with a certificate where it expects one),
``superd -c conf/`` does not read them, and those whose server CI installs
serve the real client through the real daemon, rewritten only to listen on
an ephemeral loopback port and to use temporary data.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from superd.cli.main import main as superd_cli
from superd.config.load import load_configuration
from tests.certs import PKI, make_pki
from tests.integration.external import needs_root, wait_until
from tests.integration.harness import Superd, require_program
from tests.integration.servers import (
    git,
    rsync_fetch,
    rsync_module,
    run_ssh,
    same_tree,
    ssh_files,
    tftp_get,
)
from tests.integration.shipped import (
    CONF,
    EXAMPLES,
    LOOPBACK,
    example_names,
    rewrite_service,
    shipped,
)

Factory = Callable[..., Superd]
ConfDir = Callable[..., Path]

#: The programs each example starts (checked before `superd check`, which
#: refuses a server that is not installed).
SERVERS = {"ssh": "sshd", "rsync": "rsync", "rsyncs": "rsync", "git": "git",
           "tftp": "in.tftpd", "redirect": None}

#: Where the TLS example expects its certificate and key.
TLS_FILES = ("/etc/superd/tls/rsyncs.pem", "/etc/superd/tls/rsyncs.key")

pytestmark = needs_root  # the examples run servers as root or nobody


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(directory)


def with_test_certificate(text: str, pki: PKI) -> str:
    return rewrite_service(text, {TLS_FILES[0]: str(pki.server.cert_path),
                                  TLS_FILES[1]: str(pki.server.key_path)})


def test_every_example_is_listed_and_checked() -> None:
    """SERVERS names every example (a new one must be added here)."""
    assert example_names() == sorted(SERVERS)


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_example_passes_superd_check(name: str, tmp_path: Path, pki: PKI) -> None:
    """``superd check -c conf/examples/NAME`` exits 0 and lists the service."""
    program = SERVERS[name]
    if program:
        require_program(program)
    path = EXAMPLES / name
    if name == "rsyncs":
        path = tmp_path / name
        path.write_text(with_test_certificate(shipped(f"examples/{name}"), pki))
    out, err = io.StringIO(), io.StringIO()
    status = superd_cli(["check", "-c", str(path)], out, err)
    assert (status, err.getvalue()) == (0, ""), out.getvalue()
    assert out.getvalue().endswith("1 service(s) from 1 file(s)\n")


def test_conf_directory_does_not_read_examples() -> None:
    """``-c conf/`` reads the files in conf/ only, not its subdirectories."""
    configuration = load_configuration(str(CONF))
    assert configuration.sources
    assert all(Path(source).parent == CONF for source in configuration.sources)


def test_ssh_example_serves(superd_factory: Factory, conf_dir: ConfDir,
                            tmp_path: Path) -> None:
    """``ssh root@HOST echo hi`` through the example's ``sshd -i``."""
    setup = ssh_files(tmp_path)
    text = rewrite_service(shipped("examples/ssh"),
                           {"server_args    = -i": f"server_args    = -i -f {setup['config']}"},
                           **LOOPBACK)
    superd = superd_factory(conf_dir(ssh=text))
    result = run_ssh(superd.port("ssh"), setup["key"], "echo", "hi")
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    # sshd -i ends with status 255 when the client closes: any EXIT will do.
    superd.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("EXIT: ssh status="))
    assert any(line.startswith("START: ssh pid=") and line.endswith("from=127.0.0.1")
               for line in superd.xinetd_lines())


def test_rsync_example_serves(superd_factory: Factory, conf_dir: ConfDir,
                              world_dir: Path, tmp_path: Path) -> None:
    """``rsync -a rsync://HOST/data/`` copies the module byte for byte."""
    source, config = rsync_module(world_dir, "uid = nobody\n")
    text = rewrite_service(shipped("examples/rsync"), {"/etc/rsyncd.conf": str(config)},
                           **LOOPBACK)
    superd = superd_factory(conf_dir(rsync=text))
    dest = tmp_path / "dest"
    result = rsync_fetch(superd.port("rsync"), dest)
    assert result.returncode == 0, result.stderr
    assert same_tree(source, dest)
    superd.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("EXIT: rsync status=0"))


def test_rsyncs_example_serves_rsync_ssl(superd_factory: Factory, conf_dir: ConfDir,
                                         world_dir: Path, tmp_path: Path, pki: PKI) -> None:
    """``rsync-ssl`` (rsync's own TLS client, over openssl) verifies the
    certificate and copies the module through the TLS-wrapped daemon."""
    require_program("openssl")
    source, config = rsync_module(world_dir, "uid = nobody\n")
    text = rewrite_service(with_test_certificate(shipped("examples/rsyncs"), pki),
                           {"/etc/rsyncd.conf": str(config)}, **LOOPBACK)
    superd = superd_factory(conf_dir(rsyncs=text))
    dest = tmp_path / "dest"
    env = {**os.environ, "RSYNC_SSL_TYPE": "openssl", "RSYNC_SSL_CA_CERT": str(pki.ca_path)}
    result = rsync_fetch(superd.port("rsyncs"), dest, client="rsync-ssl", host="localhost",
                         env=env)
    assert result.returncode == 0, result.stderr
    assert same_tree(source, dest)
    superd.wait_for_event(
        lambda e: str(e.get("xinetd_line")).startswith("EXIT: rsyncs status=0"))


def test_git_example_serves(superd_factory: Factory, conf_dir: ConfDir,
                            world_dir: Path, tmp_path: Path) -> None:
    """``git clone git://HOST/project.git`` of a root-owned repository, as nobody."""
    repo = world_dir / "project.git"
    work = tmp_path / "work"
    git("init", "-q", str(work))
    (work / "README").write_text("served by the example\n")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    git("clone", "-q", "--bare", str(work), str(repo))
    subprocess.run(["chmod", "-R", "a+rX", str(world_dir)], check=True)
    text = rewrite_service(shipped("examples/git"), {"/srv/git": str(world_dir)}, **LOOPBACK)
    superd = superd_factory(conf_dir(git=text))
    clone = tmp_path / "clone"
    git("clone", "-q", f"git://127.0.0.1:{superd.port('git')}/project.git", str(clone))
    assert (clone / "README").read_text() == "served by the example\n"
    superd.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("EXIT: git status=0"))


def test_tftp_example_serves(superd_factory: Factory, conf_dir: ConfDir,
                             world_dir: Path, tmp_path: Path) -> None:
    """The real tftp client gets a file through the example's wait = yes in.tftpd."""
    serve = world_dir / "tftp"
    serve.mkdir()
    data = os.urandom(50_000)
    (serve / "boot.img").write_bytes(data)
    (serve / "boot.img").chmod(0o644)
    text = rewrite_service(shipped("examples/tftp"), {"/srv/tftp": str(serve)}, **LOOPBACK)
    superd = superd_factory(conf_dir(tftp=text))
    result = tftp_get(superd.port("tftp", "udp"), "boot.img", tmp_path / "boot.img")
    assert (tmp_path / "boot.img").read_bytes() == data, result.stderr
    assert wait_until(lambda: any(line.startswith("START: tftp")
                                  for line in superd.xinetd_lines()))
