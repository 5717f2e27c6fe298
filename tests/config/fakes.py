"""
An in-memory ``LoadEnvironment`` for configuration tests: files, accounts,
``/etc/services`` and host names from dictionaries, no real machine involved.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path
from typing import Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

from superd.config.environment import LoadEnvironment, decode
from superd.config.errors import ConfigError
from superd.config.load import load_configuration
from superd.config.model import Configuration

__all__ = ["CONF", "SERVICES", "errors_of", "errors_under", "fake_environment", "load_text",
           "service_text"]

#: The /etc/services entries tests rely on (Debian's numbers).
SERVICES: Dict[Tuple[str, str], int] = {
    ("tcpmux", "tcp"): 1,
    ("echo", "tcp"): 7,
    ("echo", "udp"): 7,
    ("discard", "tcp"): 9,
    ("discard", "udp"): 9,
    ("daytime", "tcp"): 13,
    ("daytime", "udp"): 13,
    ("chargen", "tcp"): 19,
    ("chargen", "udp"): 19,
    ("ftp", "tcp"): 21,
    ("ssh", "tcp"): 22,
    ("telnet", "tcp"): 23,
    ("time", "tcp"): 37,
    ("time", "udp"): 37,
    ("imaps", "tcp"): 993,
    ("http", "tcp"): 80,
}

_USERS = {"root": (0, 0), "nobody": (65534, 65534), "alice": (1000, 1000),
          "backup": (34, 34)}
_GROUPS = {"root": 0, "nogroup": 65534, "alice": 1000, "staff": 50, "backup": 34}


def _passwd(name: str, uid: int, gid: int) -> pwd.struct_passwd:
    return pwd.struct_passwd((name, "x", uid, gid, "", "/", "/bin/sh"))


def _like_the_os(name: str) -> None:
    """Refuse what the real calls refuse (open(), socket.getservbyname()): a NUL
    byte, text that cannot be encoded."""
    if "\x00" in name:
        raise ValueError("embedded null byte")
    name.encode("utf-8")


def fake_environment(
    files: Optional[Mapping[str, Union[str, bytes]]] = None,
    *,
    services: Optional[Mapping[Tuple[str, str], int]] = None,
    hosts: Optional[Mapping[str, Tuple[str, ...]]] = None,
    executables: Iterable[str] = ("/usr/sbin/sshd", "/bin/cat", "/usr/bin/rsync"),
    euid: int = 0,
    egid: int = 0,
) -> LoadEnvironment:
    """A LoadEnvironment whose whole world is the given dictionaries (a file
    given as bytes is decoded as the real machine's files are)."""
    files = dict(files or {})
    table = dict(SERVICES if services is None else services)
    names = dict(hosts or {"localhost": ("127.0.0.1", "::1")})
    programs = frozenset(executables)

    def read_file(path: str) -> str:
        _like_the_os(path)
        try:
            content = files[os.path.normpath(path)]
        except KeyError:
            raise FileNotFoundError(2, "No such file or directory", path) from None
        return decode(content) if isinstance(content, bytes) else content

    def is_dir(path: str) -> bool:
        prefix = os.path.normpath(path) + "/"
        return any(name.startswith(prefix) for name in files)

    def list_dir(path: str) -> list[str]:
        if not is_dir(path):
            raise FileNotFoundError(2, "No such file or directory", path)
        prefix = os.path.normpath(path) + "/"
        return sorted({n[len(prefix) :].split("/")[0] for n in files if n.startswith(prefix)})

    def getpwnam(name: str) -> pwd.struct_passwd:
        uid, gid = _USERS[name]
        return _passwd(name, uid, gid)

    def getpwuid(uid: int) -> pwd.struct_passwd:
        for name, (u, g) in _USERS.items():
            if u == uid:
                return _passwd(name, u, g)
        raise KeyError(uid)

    def getgrnam(name: str) -> grp.struct_group:
        return grp.struct_group((name, "x", _GROUPS[name], []))

    def getservbyname(name: str, protocol: str) -> int:
        _like_the_os(name)
        try:
            return table[(name, protocol)]
        except KeyError:
            raise OSError("service/proto not found") from None

    def resolve_host(name: str) -> Tuple[str, ...]:
        try:
            return names[name]
        except KeyError:
            raise OSError(-2, "Name or service not known") from None

    return LoadEnvironment(
        read_file=read_file,
        list_dir=list_dir,
        is_dir=is_dir,
        why_not_file=lambda path: None if os.path.normpath(path) in files else (
            "not a regular file (a directory)" if is_dir(path) else "broken symbolic link"),
        getpwnam=getpwnam,
        getpwuid=getpwuid,
        getgrnam=getgrnam,
        getservbyname=getservbyname,
        resolve_host=resolve_host,
        euid=euid,
        egid=egid,
        is_executable=lambda path: path in programs,
    )


#: Where ``load_text`` puts its single file.
CONF = "/etc/superd/test.conf"


def load_text(text: str, *, strict: bool = False, isolate: bool = False,
              **environment: object) -> Configuration:
    """Load ``text`` as the only configuration file (at ``CONF``)."""
    env = fake_environment({CONF: text}, **environment)  # type: ignore[arg-type]
    return load_configuration(CONF, environment=env, strict=strict, isolate=isolate)


def errors_of(text: str, *, strict: bool = False, **environment: object) -> list[str]:
    """The error lines loading ``text`` produces (fails if it loads)."""
    try:
        load_text(text, strict=strict, **environment)  # type: ignore[arg-type]
    except ConfigError as error:
        return [str(problem) for problem in error.problems]
    raise AssertionError("configuration loaded without errors")


def errors_under(directory: Path, load: Callable[[], object]) -> list[str]:
    """The error lines ``load()`` raises for files under ``directory``, with
    the directory cut from their file names (fails if it loads)."""
    try:
        load()
    except ConfigError as error:
        return [str(problem).replace(f"{directory}/", "") for problem in error.problems]
    raise AssertionError("configuration loaded without errors")


def service_text(name: str = "echo", **attributes: str) -> str:
    """A ``service`` block; attributes given as keyword arguments."""
    body = "".join(f"    {key} = {value}\n" for key, value in attributes.items())
    return f"service {name}\n{{\n{body}}}\n"
