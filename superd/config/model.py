"""
The validated configuration model: what the runtime sees instead of raw text.

Every value here is frozen and already checked.  The parser (``parse.py``)
turns xinetd-syntax text into these values; the loader (``load.py``) supplies
the I/O facts they depend on (accounts, ``/etc/services``, included files).
Nothing under ``superd/`` outside ``superd.config`` ever handles a raw
attribute string.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from typing import Mapping, Optional, Tuple, Union

import attrs

from superd.config.errors import ConfigNote, ConfigWarning, Location, Problem, error_count

__all__ = [
    "CPS",
    "FOREVER",
    "UNLIMITED",
    "AddressKind",
    "AddressSpec",
    "ConfigNote",
    "ConfigWarning",
    "Configuration",
    "Credentials",
    "DisabledReason",
    "DisabledService",
    "Extensions",
    "FailedService",
    "FileLog",
    "Location",
    "LogTarget",
    "ProxySettings",
    "Redirect",
    "Sandbox",
    "ServiceConfig",
    "SocketType",
    "SyslogLog",
    "TimeInterval",
    "TLSSettings",
    "UnixSocket",
    "UpstreamTLS",
]

#: ``UNLIMITED`` for ``instances``/``per_source``/``rlimit_*`` values.
UNLIMITED: int = -1
#: ``deny_time = FOREVER``.
FOREVER: int = -1

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class SocketType(enum.Enum):
    """The ``socket_type`` attribute."""

    STREAM = "stream"
    DGRAM = "dgram"
    RAW = "raw"
    SEQPACKET = "seqpacket"


class ServiceKind(enum.Enum):
    """What serves a service's peers, decided by its attributes."""

    #: ``flags = SENSOR``: a trap that bans whoever connects.
    SENSOR = "sensor"
    #: ``redirect = HOST PORT``: relayed to another server.
    REDIRECT = "redirect"
    #: ``type = TCPMUX``/``TCPMUXPLUS``: reached only through tcpmux.
    TCPMUX_CLIENT = "tcpmux-client"
    #: ``factory``/``plugin``: a user's own Twisted protocol.
    PROTOCOL = "protocol"
    #: ``type = INTERNAL``: served by superd itself.
    BUILTIN = "builtin"
    #: ``server = PATH``: a program started for the peers.
    EXTERNAL = "external"


class AddressKind(enum.Enum):
    """Which xinetd form an ``only_from``/``no_access`` entry was written in."""

    #: A numeric address or network (plain, trailing-zero wildcard, CIDR,
    #: factorized element).  ``AddressSpec.network`` holds it.
    NETWORK = "network"
    #: A host name to be matched by reverse lookup plus forward confirmation.
    HOST = "host"
    #: A ``.domain`` suffix matched against the confirmed reverse name.
    DOMAIN = "domain"


@attrs.frozen
class AddressSpec:
    """
    One parsed ``only_from``/``no_access`` element.

    A factorized entry such as ``10.0.{1,2}`` yields one spec per element.
    ``text`` is what the user wrote (for messages and ``superd check``).
    """

    text: str
    kind: AddressKind
    network: Optional[IPNetwork] = None
    name: Optional[str] = None
    #: True when xinetd's implicit trailing-zero rule widened the mask
    #: (``192.168.0.0`` means 192.168/16); ``superd check`` warns about it.
    implicit_wildcard: bool = False


@attrs.frozen
class CPS:
    """``cps = MAX WAIT``: at most MAX connections per second, else pause WAIT s."""

    max: int = 50
    wait: int = 10


@attrs.frozen
class TimeInterval:
    """One ``access_times`` interval in minutes after local midnight.

    ``end`` may be 1440 (``24:00``); ``start > end`` wraps past midnight.
    Bounds are inclusive at minute granularity, as xinetd.
    """

    start: int
    end: int


@attrs.frozen
class SyslogLog:
    """``log_type = SYSLOG facility [level]``."""

    facility: str
    level: str = "info"


@attrs.frozen
class FileLog:
    """``log_type = FILE path [soft [hard]]`` (sizes in bytes, None = no limit)."""

    path: str
    soft: Optional[int] = None
    hard: Optional[int] = None


LogTarget = Union[SyslogLog, FileLog]


@attrs.frozen
class Redirect:
    """``redirect = host port``: relay TCP to another host."""

    host: str
    port: int


@attrs.frozen
class UnixSocket:
    """
    ``bind = unix:PATH``: a UNIX-domain stream socket in the file system,
    with the ``socket_mode`` and ``socket_owner`` its file gets when superd
    binds it (a socket passed by systemd keeps its unit's).
    """

    #: Absolute, normalised, at most 107 bytes (``sun_path``).
    path: str
    #: ``socket_mode``: the file's permission bits (systemd's default).
    mode: int = 0o666
    #: ``socket_owner``: uid and gid given to the file; None = superd's own.
    uid: Optional[int] = None
    gid: Optional[int] = None


@attrs.frozen
class Credentials:
    """
    Who an external server runs as, resolved at load time.

    ``None`` in ``uid``/``gid`` means "unchanged" (superd's own).  ``groups``
    is the ``groups`` attribute: True = initgroups of ``user``, False =
    supplementary groups cleared (only when superd runs as root).
    """

    user: Optional[str] = None
    uid: Optional[int] = None
    group: Optional[str] = None
    gid: Optional[int] = None
    groups: bool = False


@attrs.frozen
class TLSSettings:
    """
    TLS termination for a stream service (the ``tls_*`` attributes).

    The PEM texts are read at load (and again on every reload), so a bad
    file is a configuration error, never a failure at the first connection;
    while the service runs, a change of the files replaces them
    (``superd.handlers.tls.certfiles``).
    """

    cert_pem: bytes
    key_pem: bytes
    #: ``tls_profile``: ``modern``, ``intermediate`` or ``old``
    #: (``superd.config.tlsprofile``).
    profile: str = "intermediate"
    #: ``tls_min_version``, or the profile's: ``1.0`` to ``1.3``.
    min_version: str = "1.2"
    #: ``tls_ciphers``: an OpenSSL cipher string (TLS 1.2 and below); None:
    #: the profile's.
    ciphers: Optional[str] = None
    #: ``tls_client_ca``: PEM of the CA(s) client certificates must chain to.
    client_ca_pem: Optional[bytes] = None
    #: ``tls_verify_client``: ``none``, ``optional`` or ``require``.
    verify_client: str = "none"
    #: ``tls_client_names``: subject CN / SAN names allowed (empty: any).
    client_names: Tuple[str, ...] = ()
    #: ``tls_handshake_timeout`` in seconds.
    handshake_timeout: float = 10.0
    #: ``tls_sni``: the server names (lower case; ``*.domain`` wildcards)
    #: routed to this service on a port TLS services share; () = the port's
    #: default service.
    sni: Tuple[str, ...] = ()
    #: Where the PEM texts were read (``tls_cert``, ``tls_key``,
    #: ``tls_client_ca``): re-read when the files change.
    cert_path: Optional[str] = None
    key_path: Optional[str] = None
    client_ca_path: Optional[str] = None


@attrs.frozen
class UpstreamTLS:
    """``redirect_tls = yes``: talk TLS to the redirect target and verify it."""

    #: ``redirect_tls_name``: the name the upstream certificate must carry.
    name: str
    #: ``redirect_tls_ca``: PEM of the trusted CA(s); None = system trust store.
    ca_pem: Optional[bytes] = None
    #: ``redirect_tls_profile``: what superd offers the upstream, as
    #: ``tls_profile`` says for clients.
    profile: str = "intermediate"


@attrs.frozen
class ProxySettings:
    """
    ``proxy_protocol``: every connection starts with a PROXY protocol
    header from a load balancer, and the client it names is the peer.
    """

    #: The header versions accepted: ``{1}``, ``{2}`` or both (``any``).
    versions: frozenset[int]
    #: ``proxy_from``: the sources allowed to send one (numeric entries
    #: only); None = any source.
    sources: Optional[Tuple[AddressSpec, ...]] = None
    #: ``proxy_timeout``: seconds allowed for the whole header.
    timeout: float = 5.0


@attrs.frozen
class Extensions:
    """The issue-6 settings of one service: TLS, redirect tuning, user
    protocols; and the PROXY protocol, both ways."""

    tls: Optional[TLSSettings] = None
    redirect_tls: Optional[UpstreamTLS] = None
    #: ``redirect_timeout``: seconds allowed for connecting to the upstream.
    redirect_timeout: float = 10.0
    #: ``factory = package.module:callable`` (a user's own protocol).
    factory: Optional[str] = None
    #: ``plugin = NAME``: a user protocol found with ``twisted.plugin``.
    plugin: Optional[str] = None
    #: The user protocol's own attributes, parsed by its declared schema.
    settings: Mapping[str, object] = attrs.field(factory=dict)
    #: ``proxy_protocol``/``proxy_from``/``proxy_timeout`` (None: no header is read).
    proxy: Optional[ProxySettings] = None
    #: ``redirect_proxy``: the PROXY header version sent upstream (1 or 2), or None.
    redirect_proxy: Optional[int] = None

    @property
    def user_protocol(self) -> bool:
        """True when the service is served by a user's own protocol."""
        return self.factory is not None or self.plugin is not None


@attrs.frozen
class Sandbox:
    """
    What an external server's children are confined by, applied before the
    server runs (issue 17): ``no_new_privileges``, ``private_tmp``,
    ``read_only_paths``, and the limits of the service's cgroup.
    """

    no_new_privileges: bool = False
    #: A mount namespace of its own with an empty tmpfs on /tmp.
    private_tmp: bool = False
    #: Absolute paths made read-only (bind-mounted) in that namespace.
    read_only_paths: Tuple[str, ...] = ()
    #: Bytes of memory for all the service's processes together.
    memory_max: Optional[int] = None
    #: Processes and threads of the service together.
    tasks_max: Optional[int] = None

    @property
    def mounts(self) -> bool:
        """True when the server needs a mount namespace of its own."""
        return self.private_tmp or bool(self.read_only_paths)

    @property
    def cgroup_limits(self) -> bool:
        """True when the service's cgroup must be limited."""
        return self.memory_max is not None or self.tasks_max is not None


@attrs.frozen
class ServiceConfig:
    """
    One service, fully validated, with defaults already applied.

    ``name`` is what follows ``service``; ``id`` is the unique identifier used
    in logs (defaults to ``name``).  ``lines`` maps each attribute that was
    written to the location of the line that set it last, so runtime errors
    (a bind failure, say) can point at the file and line.
    """

    name: str
    id: str
    location: Location
    socket_type: SocketType
    protocol: str
    wait: bool
    port: Optional[int]
    #: Listen addresses as IP literals (``bind``/``interface``).  Empty means
    #: "any address" (IPv6 dual-stack unless ``IPv4`` is in ``flags``).
    bind: Tuple[str, ...] = ()
    v6only: Optional[bool] = None
    #: ``type`` values: subset of INTERNAL, UNLISTED, TCPMUX, TCPMUXPLUS.
    type: frozenset[str] = frozenset()
    #: ``flags`` values, e.g. NAMEINARGS, SENSOR, IPv4, IPv6, NOLIBWRAP.
    flags: frozenset[str] = frozenset()
    server: Optional[str] = None
    server_args: Tuple[str, ...] = ()
    credentials: Credentials = Credentials()
    umask: Optional[int] = None
    nice: Optional[int] = None
    #: ``rlimit_as``, ``rlimit_cpu`` ...: resource name (``"as"``) -> value
    #: (bytes/seconds/count, or UNLIMITED).  Absent = unchanged.
    rlimits: Mapping[str, int] = attrs.field(factory=dict)
    #: ``env`` as (NAME, VALUE) pairs in order.
    env: Tuple[Tuple[str, str], ...] = ()
    #: ``passenv`` names; None = attribute absent (whole environment passed).
    passenv: Optional[Tuple[str, ...]] = None
    instances: int = UNLIMITED
    per_source: int = UNLIMITED
    #: ``v6_source_prefix``: IPv6 sources are counted (per_source) and
    #: banned (SENSOR) by their network of this length; 128 = by address.
    v6_source_prefix: int = 128
    cps: CPS = CPS()
    max_load: Optional[float] = None
    access_times: Tuple[TimeInterval, ...] = ()
    #: None = attribute absent (everyone); () = written empty (nobody).
    only_from: Optional[Tuple[AddressSpec, ...]] = None
    no_access: Tuple[AddressSpec, ...] = ()
    log_type: Optional[LogTarget] = None
    log_on_success: frozenset[str] = frozenset()
    log_on_failure: frozenset[str] = frozenset()
    banner: Optional[str] = None
    banner_success: Optional[str] = None
    banner_fail: Optional[str] = None
    redirect: Optional[Redirect] = None
    #: Minutes; FOREVER; 0 = NEVER.
    deny_time: int = 0
    libwrap: Optional[str] = None
    #: Attributes not known to superd itself (for users' own protocols, and
    #: for ``superd check`` warnings): name -> values.
    extra: Mapping[str, Tuple[str, ...]] = attrs.field(factory=dict)
    #: TLS, redirect tuning and users' own protocols (superd's own attributes).
    extensions: Extensions = Extensions()
    #: How an external server is confined (issue 17).
    sandbox: Sandbox = Sandbox()
    #: ``bind = unix:PATH``: a UNIX-domain socket instead of ``port``/``bind``
    #: (then ``port`` is None, ``bind`` empty and ``protocol`` ``unix``).
    unix: Optional[UnixSocket] = None
    #: ``only_uid``/``only_gid`` (resolved): a UNIX peer is admitted when its
    #: uid is in ``only_uid`` or one of its groups in ``only_gid``; None =
    #: attribute absent.
    only_uid: Optional[frozenset[int]] = None
    only_gid: Optional[frozenset[int]] = None
    lines: Mapping[str, Location] = attrs.field(factory=dict, eq=False)

    @property
    def is_internal(self) -> bool:
        """True for ``type = INTERNAL`` (builtins and user protocols)."""
        return "INTERNAL" in self.type

    @property
    def is_sensor(self) -> bool:
        """True for ``flags = SENSOR`` traps."""
        return "SENSOR" in self.flags

    @property
    def is_mux_client(self) -> bool:
        """True for services reached only through tcpmux (no socket of their own)."""
        return bool(self.type & {"TCPMUX", "TCPMUXPLUS"})

    @property
    def kind(self) -> ServiceKind:
        """What serves the service's peers."""
        if self.is_sensor:
            return ServiceKind.SENSOR
        if self.redirect is not None:
            return ServiceKind.REDIRECT
        if self.is_mux_client:
            return ServiceKind.TCPMUX_CLIENT
        if self.extensions.user_protocol:
            return ServiceKind.PROTOCOL
        if self.is_internal:
            return ServiceKind.BUILTIN
        return ServiceKind.EXTERNAL

    @functools.cached_property
    def block_key(self) -> str:
        """
        Which block this is among those sharing its ``id`` (the seed's two
        ``service ssh`` on different binds): the id, protocol, port and bind
        addresses, which no two loaded blocks with a fixed port share.
        ``instances``, ``per_source`` and ``cps`` count per block, as xinetd
        counts per service entry, and the key survives a reload that keeps the
        socket.  Blocks with no port of their own (tcpmux clients) or an
        ephemeral one (port 0) may repeat all of that, so their key adds the
        block's location.  A UNIX socket's path is its address: no two loaded
        blocks share one.  Cached: datagram admission asks for it per datagram.
        """
        if self.unix is not None:
            return f"{self.id} unix:{self.unix.path}"
        bind = ",".join(self.bind) or "*"
        key = f"{self.id} {self.protocol}/{self.port} {bind}"
        return key if self.port else f"{key} {self.location}"

    def line_of(self, attribute: str) -> Location:
        """The location of ``attribute``'s line, or of the service header."""
        return self.lines.get(attribute, self.location)


@attrs.frozen
class FailedService:
    """
    A service block that does not run because of ``problems``: its own, or
    those of the defaults or of its file, which may have been meant to
    restrict it.  ``id`` is the block's ``id`` when that line could be read,
    else its name.
    """

    name: str
    id: str
    location: Location
    problems: Tuple[Problem, ...]


class DisabledReason(enum.Enum):
    """Why a service block is switched off on purpose."""

    #: ``disable = yes`` in the block.
    DISABLE = "disable = yes"
    #: Listed in the defaults' ``disabled``.
    DISABLED = "listed in defaults disabled"
    #: Not listed in the defaults' ``enabled``.
    NOT_ENABLED = "not listed in defaults enabled"


@attrs.frozen
class DisabledService:
    """A service block written but switched off, and why."""

    name: str
    id: str
    location: Location
    reason: DisabledReason


@attrs.frozen
class Configuration:
    """Everything superd runs: the enabled services, and what was noticed."""

    services: Tuple[ServiceConfig, ...]
    warnings: Tuple[ConfigWarning, ...] = ()
    #: Files read, in order (for messages and reload diagnostics).
    sources: Tuple[str, ...] = ()
    #: ``ban_store`` of the defaults section: the ``redis://`` URL sharing
    #: SENSOR bans (daemon-wide; ``--ban-store`` on the command line wins).
    ban_store: Optional[str] = None
    #: ``ban_store_password_file`` of the defaults section: the file holding
    #: the ban store's password (read at start; never on a command line).
    ban_store_password_file: Optional[str] = None
    #: ``ban_ends_sessions`` of the defaults section: whether a new ban also
    #: ends the banned source's open sessions (xinetd's behaviour: no).
    ban_ends_sessions: bool = True
    #: ``all_or_nothing`` of the defaults section: whether any error refuses
    #: the whole configuration (at start and at reload), as ``--strict`` does.
    all_or_nothing: bool = False
    #: Every error, in file and line order, at most ``MAX_FILE_ERRORS`` per
    #: file (then one saying how many more): what ``ConfigError`` carries.
    #: Empty unless loaded with ``isolate=True``.
    problems: Tuple[Problem, ...] = ()
    #: The service blocks that do not run because of errors (``isolate=True``).
    failed: Tuple[FailedService, ...] = ()
    #: Files (or directories) whose services could not all be known: unread,
    #: not text, or not fully parsed.  Every service written there is failed,
    #: also those whose names are unknown.
    failed_files: Tuple[str, ...] = ()
    #: The service blocks switched off on purpose.
    disabled: Tuple[DisabledService, ...] = ()
    #: Entries ``includedir`` skipped, and why.
    notes: Tuple[ConfigNote, ...] = ()
    #: True when an error may have been meant for the defaults section (in
    #: it, or in a file holding it): every service is failed, and the
    #: daemon-wide settings above are the built-in ones, not the file's.
    defaults_failed: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing is wrong: every enabled service block runs."""
        return not self.problems

    @property
    def error_count(self) -> int:
        """How many errors were found, also those left out of ``problems``."""
        return error_count(self.problems)

    @property
    def protected_ports(self) -> frozenset[int]:
        """The ports of every UDP builtin: UDP builtins never answer them."""
        return frozenset(
            s.port for s in self.services
            if s.socket_type is SocketType.DGRAM and s.kind is ServiceKind.BUILTIN and s.port
        )
