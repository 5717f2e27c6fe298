"""
superd.daemon.banstoreconfig and the command line: the ban store's password
comes from a file or the environment, never from argv; a URL with a
password on the command line is refused (exit 64).
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from superd.core.exits import EX_CONFIG, EX_USAGE
from superd.daemon.banstoreconfig import settings_for
from superd.daemon.options import Options
from tests.certs import make_pki
from tests.daemon.test_tap import ECHO


def settings(url: str | None, environ: dict[str, str] | None = None, **kw: Any) -> Any:
    warnings: list[str] = []
    result = settings_for(url, environ={} if environ is None else environ,
                          warn=warnings.append, **kw)
    return result, warnings


def secret(tmp_path: Path, text: str = "s3cretPW\n", mode: int = 0o600) -> str:
    path = tmp_path / "redis.password"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_password_from_a_file(tmp_path: Path) -> None:
    """The file's content (one trailing newline off) authenticates; no warning at 0600."""
    result, warnings = settings("redis://superd@127.0.0.1/0",
                                option_password_file=secret(tmp_path))
    assert (result.target.username, result.target.password) == ("superd", "s3cretPW")
    assert warnings == []


def test_password_from_the_environment_is_taken_out_of_it() -> None:
    """SUPERD_BAN_STORE_PASSWORD is used and removed, so nothing superd starts inherits it."""
    environ = {"SUPERD_BAN_STORE_PASSWORD": "envPW", "PATH": "/bin"}
    result, _ = settings("redis://127.0.0.1/0", environ)
    assert result.target.password == "envPW"
    assert environ == {"PATH": "/bin"}
    environ = {"SUPERD_BAN_STORE_PASSWORD": "envPW"}
    assert settings(None, environ)[0] is None and environ == {}


def test_which_password_wins(tmp_path: Path) -> None:
    """The option's file, then the environment, then the configuration's file,
    then a password in the configuration's URL."""
    option = secret(tmp_path, "fromOption")
    config = tmp_path / "config.password"
    config.write_text("fromConfig")
    config.chmod(0o600)
    url = "redis://:fromURL@127.0.0.1/0"
    env = {"SUPERD_BAN_STORE_PASSWORD": "fromEnv"}
    assert settings(url, dict(env), option_password_file=option,
                    config_password_file=str(config))[0].target.password == "fromOption"
    assert settings(url, dict(env), config_password_file=str(config)
                    )[0].target.password == "fromEnv"
    assert settings(url, config_password_file=str(config))[0].target.password == "fromConfig"
    assert settings(url)[0].target.password == "fromURL"


@pytest.mark.parametrize("content,problem", [
    ("", "is empty"), ("\n", "is empty"), ("x" * 5000, "larger than 4096 bytes")])
def test_bad_password_files(tmp_path: Path, content: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        settings("redis://127.0.0.1/0", option_password_file=secret(tmp_path, content))


def test_missing_file_and_fifo_are_refused_without_waiting(tmp_path: Path) -> None:
    """A FIFO is refused unread (opening it must not block superd's start)."""
    with pytest.raises(ValueError, match="No such file"):
        settings("redis://127.0.0.1/0", option_password_file=str(tmp_path / "none"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done: list[str] = []

    def attempt() -> None:
        try:
            settings("redis://127.0.0.1/0", option_password_file=str(fifo))
        except ValueError as e:
            done.append(str(e))

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(5)
    assert done == [f"{fifo} is not a regular file"]


def test_a_password_file_others_can_read_is_a_warning(tmp_path: Path) -> None:
    _, warnings = settings("redis://127.0.0.1/0",
                           option_password_file=secret(tmp_path, mode=0o644))
    assert warnings == [f"the ban store password file {tmp_path}/redis.password can be"
                        " read by other users (chmod 600 it)"]


def test_a_user_needs_a_password() -> None:
    with pytest.raises(ValueError, match="names a user but no password"):
        settings("redis://superd@127.0.0.1/0")


def test_rediss_ca_is_read_and_checked(tmp_path: Path) -> None:
    """?ca= must be a readable PEM certificate file; its PEM is kept for the client."""
    pki = make_pki(tmp_path)
    result, _ = settings(f"rediss://127.0.0.1:6380/0?ca={pki.ca_path}")
    assert result.target.tls and result.ca_pem == pki.ca_pem
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(ValueError, match="no PEM certificate"):
        settings(f"rediss://127.0.0.1/0?ca={tmp_path}/junk.pem")
    with pytest.raises(ValueError, match="cannot read"):
        settings(f"rediss://127.0.0.1/0?ca={tmp_path}/none.pem")


def options_for(tmp_path: Path, *argv: str, environ: dict[str, str] | None = None
                ) -> tuple[int | None, Options, str]:
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "echo").write_text(ECHO)
    options = Options(environ={} if environ is None else environ)
    options.stderr = err = io.StringIO()
    try:
        options.parseOptions(["-c", str(conf), *argv])
    except SystemExit as e:
        return int(e.code or 0), options, err.getvalue()
    return None, options, err.getvalue()


def test_password_in_the_command_line_url_is_refused(tmp_path: Path) -> None:
    """Exit 64, saying how to give it instead, without repeating it."""
    status, _, err = options_for(tmp_path, "--ban-store", "redis://:s3cretPW@127.0.0.1/0")
    assert status == EX_USAGE
    assert "--ban-store-password-file" in err and "SUPERD_BAN_STORE_PASSWORD" in err
    assert "s3cretPW" not in err


def test_options_build_the_ban_store(tmp_path: Path) -> None:
    """--ban-store with --ban-store-password-file gives the daemon its target."""
    status, options, _ = options_for(
        tmp_path, "--ban-store", "redis://superd@127.0.0.1:6390/2",
        "--ban-store-password-file", secret(tmp_path))
    assert status is None and options.ban_store_settings is not None
    target = options.ban_store_settings.target
    assert (target.username, target.password, target.port, target.db) == (
        "superd", "s3cretPW", 6390, 2)


def test_password_file_from_the_configuration(tmp_path: Path) -> None:
    """ban_store_password_file in the defaults section works as the option does."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "fleet").write_text(
        "defaults\n{\n\tban_store = redis://127.0.0.1/0\n"
        f"\tban_store_password_file = {secret(tmp_path, 'cfgPW')}\n}}\n")
    status, options, _ = options_for(tmp_path)
    assert status is None and options.ban_store_settings is not None
    assert options.ban_store_settings.target.password == "cfgPW"


def test_unusable_password_file_exits_78(tmp_path: Path) -> None:
    status, _, err = options_for(tmp_path, "--ban-store", "redis://127.0.0.1/0",
                                 "--ban-store-password-file", str(tmp_path / "none"))
    assert status == EX_CONFIG
    assert err.startswith("superd: ban store: cannot read")


def test_superd_run_refuses_before_exec(tmp_path: Path) -> None:
    """``superd run`` refuses the password before it could reach twistd's argv."""
    from superd.cli.run import main

    execs: list[Any] = []
    err = io.StringIO()
    status = main(["-c", str(tmp_path), "--ban-store", "redis://:s3cretPW@127.0.0.1/0"],
                  io.StringIO(), err, execv=lambda *a: execs.append(a))  # type: ignore
    assert status == EX_USAGE and execs == []
    assert "s3cretPW" not in err.getvalue()
