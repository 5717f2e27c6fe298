"""
Tests for ``superd.config.draft``: operators and the two ``defaults``
inheritance mechanisms (copied at parse time vs filled after everything).
"""

from __future__ import annotations

import pytest

from superd.config.errors import ConfigError
from superd.config.load import load_configuration
from superd.config.model import UNLIMITED, ServiceConfig
from tests.config.fakes import errors_of, fake_environment, load_text

ECHO = "service echo\n{{\n type = INTERNAL\n socket_type = stream\n wait = no\n{body}}}\n"


def _echo(body: str = "") -> str:
    return ECHO.format(body=body)


def _only(text: str) -> ServiceConfig:
    (service,) = load_text(text).services
    return service


def _from_texts(only_from: ServiceConfig) -> list[str]:
    assert only_from.only_from is not None
    return [str(spec.network) for spec in only_from.only_from]


def test_service_plus_equals_extends_the_defaults_copy() -> None:
    """defaults only_from 10.0.0.0 plus service += 192.168.1.0 gives both (§4 example)."""
    text = "defaults\n{\n only_from = 10.0.0.0/8\n}\n" + _echo(" only_from += 192.168.1.0/24\n")
    assert _from_texts(_only(text)) == ["10.0.0.0/8", "192.168.1.0/24"]


def test_service_equals_replaces_and_minus_equals_removes() -> None:
    """``=`` replaces the copied value; ``-=`` removes entries by meaning."""
    defaults = "defaults\n{\n only_from = 10.0.0.0/8 127.0.0.1\n}\n"
    assert _from_texts(_only(defaults + _echo(" only_from = ::1\n"))) == ["::1/128"]
    removed = _only(defaults + _echo(" only_from -= 10.0.0.0/8\n"))
    assert _from_texts(removed) == ["127.0.0.1/32"]


def test_copied_attributes_see_defaults_as_they_stood() -> None:
    """A defaults section after a service does not reach its copied attributes."""
    text = _echo() + "defaults\n{\n only_from = 10.0.0.0/8\n no_access = 10.0.0.1\n}\n"
    service = _only(text)
    assert service.only_from is None
    assert service.no_access == ()


def test_filled_attributes_come_from_the_final_defaults() -> None:
    """instances, cps, bind, log_on_* ... fill from defaults wherever the defaults are."""
    text = _echo() + (
        "defaults\n{\n instances = 30\n per_source = 10\n cps = 25 5\n umask = 027\n"
        " max_load = 2.5\n groups = yes\n v6only = yes\n deny_time = 5\n"
        " log_type = SYSLOG daemon\n log_on_success = HOST PID\n log_on_failure = HOST\n"
        " bind = 127.0.0.1\n}\n"
    )
    s = _only(text)
    assert (s.instances, s.per_source, s.cps.max, s.cps.wait) == (30, 10, 25, 5)
    assert (s.umask, s.max_load, s.credentials.groups, s.v6only) == (0o27, 2.5, True, True)
    assert (s.deny_time, s.bind) == (5, ("127.0.0.1",))
    assert s.log_on_success == {"HOST", "PID"}
    assert s.log_on_failure == {"HOST"}
    assert s.line_of("instances").line == 9


def test_service_values_win_over_filled_defaults() -> None:
    """A service's own value is never overwritten by the defaults."""
    text = "defaults\n{\n instances = 30\n}\n" + _echo(" instances = UNLIMITED\n")
    assert _only(text).instances == UNLIMITED


def test_equals_in_defaults_accumulates() -> None:
    """In defaults, ``=`` acts as ``+=`` for cumulative attributes, so lines add up."""
    text = (
        "defaults\n{\n log_on_success = HOST\n log_on_success = PID\n"
        " log_on_success -= HOST\n passenv = PATH\n passenv = LANG\n}\n" + _echo()
    )
    service = _only(text)
    assert service.log_on_success == {"PID"}
    assert service.passenv == ("PATH", "LANG")


def test_defaults_merge_across_files() -> None:
    """A defaults section in an included file merges into the same defaults."""
    files = {
        "/c/a": "defaults\n{\n only_from = 127.0.0.1\n}\n",
        "/c/b": "defaults\n{\n only_from = ::1\n}\n" + _echo(),
    }
    (service,) = load_configuration("/c", environment=fake_environment(files)).services
    assert _from_texts(service) == ["127.0.0.1/32", "::1/128"]


def test_empty_only_from_denies_everybody_and_absent_allows() -> None:
    """``only_from =`` is an empty list (nobody); no only_from at all is None (everybody)."""
    assert _only(_echo(" only_from =\n")).only_from == ()
    assert _only(_echo()).only_from is None
    assert _only(_echo(" only_from -= 10.0.0.1\n")).only_from is None


def test_env_equals_in_service_clears_earlier_env_lines() -> None:
    """``env =`` replaces earlier env lines of the service; ``+=`` appends."""
    service = _only(_echo(" env = A=1\n env += B=2\n"))
    assert service.env == (("A", "1"), ("B", "2"))
    assert _only(_echo(" env = A=1\n env = C=3\n")).env == (("C", "3"),)


def test_disabled_and_enabled_lists() -> None:
    """``disabled`` removes ids; ``enabled`` keeps only the listed ids."""
    two = _echo() + "service daytime\n{\n type = INTERNAL\n socket_type = stream\n wait = no\n}\n"
    disabled = load_text("defaults\n{\n disabled = echo\n}\n" + two)
    assert [s.id for s in disabled.services] == ["daytime"]
    enabled = load_text("defaults\n{\n enabled = echo\n}\n" + two)
    assert [s.id for s in enabled.services] == ["echo"]


def test_unknown_ids_in_disabled_are_warned_about() -> None:
    """Listing an id no service has is a warning with the defaults line."""
    config = load_text("defaults\n{\n disabled = nosuch\n}\n" + _echo())
    assert [str(w) for w in config.warnings] == [
        "/etc/superd/test.conf:3: defaults: disabled: no service has id 'nosuch'"
    ]


def test_disable_yes_drops_the_service_unchecked() -> None:
    """``disable = yes`` drops the whole service, as xinetd stops parsing it."""
    text = "service ghost\n{\n disable = yes\n wait = maybe\n}\n" + _echo(" disable = no\n")
    assert [s.name for s in load_text(text).services] == ["echo"]


def test_scope_and_operator_errors() -> None:
    """Service-only attributes in defaults, ``+=`` on single values, repeats: all errors."""
    text = "defaults\n{\n user = root\n instances = 1\n instances = 2\n}\n" + _echo(
        " wait = yes\n nice += 1\n enabled = echo\n env -= A=1\n"
    )
    assert errors_of(text) == [
        "/etc/superd/test.conf:3: defaults: user: not allowed in defaults; set it in each service",
        "/etc/superd/test.conf:5: defaults: instances: set twice (first at line 4); write it once",
        "/etc/superd/test.conf:12: service echo: wait: set twice (first at line 11); write it once",
        "/etc/superd/test.conf:13: service echo: nice: '+=' is not allowed for this attribute; "
        "use '='",
        "/etc/superd/test.conf:14: service echo: enabled: only allowed in the defaults section",
        "/etc/superd/test.conf:15: service echo: env: '-=' is not allowed for this attribute",
    ]


def test_two_defaults_in_one_file_is_an_error() -> None:
    """xinetd allows one defaults section per file."""
    assert errors_of("defaults\n{\n}\ndefaults\n{\n}\n" + _echo()) == [
        "/etc/superd/test.conf:4: defaults: only one defaults section is allowed per file "
        "(first at line 1)"
    ]


def test_unknown_attributes_warn_and_are_kept_in_extra() -> None:
    """Unknown names warn with file and line, are kept, and fail under --strict."""
    text = _echo(" frobnicate = yes\n")
    config = load_text(text)
    assert config.services[0].extra == {"frobnicate": ("yes",)}
    assert config.services[0].lines["frobnicate"].line == 6  # problems point at the line
    assert [str(w) for w in config.warnings] == [
        "/etc/superd/test.conf:6: service echo: frobnicate: unknown attribute, ignored"
    ]
    assert errors_of(text, strict=True) == [
        "/etc/superd/test.conf:6: service echo: frobnicate: unknown attribute"
        " (refused with --strict)"
    ]


def test_attributes_of_other_xinetd_builds_warn_as_such() -> None:
    """mdns (other xinetd builds) is a warning that says so, an error under --strict."""
    text = _echo(" mdns = yes\n")
    assert [str(w) for w in load_text(text).warnings] == [
        "/etc/superd/test.conf:6: service echo: mdns: an attribute of other xinetd builds"
        " that superd does not support; ignored"
    ]
    assert errors_of(text, strict=True) == [
        "/etc/superd/test.conf:6: service echo: mdns: an attribute of other xinetd builds"
        " that superd does not support (refused with --strict)"
    ]


def test_unknown_attribute_in_defaults_warns_at_its_line() -> None:
    """An unknown name in defaults warns at once (no protocol can declare it there)."""
    config = load_text("defaults\n{\n frobnicate = yes\n}\n" + _echo())
    assert [str(w) for w in config.warnings] == [
        "/etc/superd/test.conf:3: defaults: frobnicate: unknown attribute, ignored"
    ]


def test_banners_and_passenv_are_copied_and_may_be_overridden() -> None:
    """Copied single values (banners) are replaced by the service's own line without a
    'set twice' error; passenv is copied and extended."""
    defaults = "defaults\n{\n banner = /etc/issue\n banner_fail = /etc/no\n passenv = PATH\n}\n"
    service = _only(defaults + _echo(" banner = /etc/motd\n passenv += LANG\n"))
    assert (service.banner, service.banner_fail) == ("/etc/motd", "/etc/no")
    assert service.passenv == ("PATH", "LANG")
    assert service.line_of("banner_fail").line == 4


# -- issue 14: typos are errors; every bad entry and trailing comments explained ----


def test_a_slip_for_a_known_attribute_is_an_error_with_a_suggestion() -> None:
    """bnid, only_form and wiat are errors naming the attribute meant; the missing
    wait is not reported a second time."""
    text = _echo(" bnid = 127.0.0.1\n only_form = 127.0.0.1\n").replace(" wait = no\n",
                                                                         " wiat = no\n")
    assert errors_of(text) == [
        "/etc/superd/test.conf:5: service echo: wiat: unknown attribute; did you mean 'wait'?",
        "/etc/superd/test.conf:6: service echo: bnid: unknown attribute; did you mean 'bind'?",
        "/etc/superd/test.conf:7: service echo: only_form: unknown attribute; "
        "did you mean 'only_from'?",
    ]


def test_a_slip_in_defaults_is_an_error_too() -> None:
    """In defaults the slip is an error at once (and stops every service)."""
    assert errors_of("defaults\n{\n no_acess = 10.0.0.1\n}\n" + _echo()) == [
        "/etc/superd/test.conf:3: defaults: no_acess: unknown attribute; "
        "did you mean 'no_access'?"]


def test_every_warning_is_kept_when_there_are_errors() -> None:
    """ConfigError carries the warnings beside the errors (they were hidden)."""
    with pytest.raises(ConfigError) as caught:
        load_text(_echo(" frobnicate = 1\n wiat = no\n"))
    assert [str(w) for w in caught.value.warnings] == [
        "/etc/superd/test.conf:6: service echo: frobnicate: unknown attribute, ignored"]


def test_every_bad_entry_of_a_list_is_reported() -> None:
    """only_from = 192.168.1.0/33 fe80::zz 10.0.0.0/8 1.2.3 gives three errors."""
    assert errors_of(_echo(" only_from = 192.168.1.0/33 fe80::zz 10.0.0.0/8 1.2.3\n")) == [
        "/etc/superd/test.conf:6: service echo: only_from: '192.168.1.0/33' is not a valid "
        "network (ADDRESS/PREFIX)",
        "/etc/superd/test.conf:6: service echo: only_from: 'fe80::zz' is not a valid IPv6 "
        "address",
        "/etc/superd/test.conf:6: service echo: only_from: '1.2.3': write all four numbers, "
        "or a prefix such as 1.2.3.0/24",
    ]
    assert errors_of(_echo(" log_on_failure = HOST BOGUS ATTEMPT WRONG\n")) == [
        "/etc/superd/test.conf:6: service echo: log_on_failure: unknown flag 'BOGUS' "
        "(expected HOST, USERID, ATTEMPT)",
        "/etc/superd/test.conf:6: service echo: log_on_failure: unknown flag 'WRONG' "
        "(expected HOST, USERID, ATTEMPT)",
    ]


def test_a_comment_after_values_is_explained() -> None:
    """``type = INTERNAL # builtin`` says comments must be on their own line (it said
    "unknown type '#'"); in server_args the words are passed on, with a warning."""
    assert errors_of(ECHO.format(body="").replace("INTERNAL", "INTERNAL # builtin")) == [
        "/etc/superd/test.conf:3: service echo: type: comments must be on their own line "
        "('# builtin' follows the values)"]
    text = ("service cat\n{\n type = UNLISTED\n port = 4000\n socket_type = stream\n"
            " wait = no\n user = root\n server = /bin/cat\n server_args = -u #1\n}\n")
    config = load_text(text)
    assert config.services[0].server_args == ("-u", "#1")
    assert [str(w) for w in config.warnings] == [
        "/etc/superd/test.conf:9: service cat: server_args: comments must be on their own "
        "line ('#1' follows the values); they are passed to the server"]
