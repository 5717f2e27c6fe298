"""Tests for ``superd.config.parse``: the xinetd grammar, pure text to raw blocks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from superd.config.model import Location
from superd.config.parse import (
    MAX_LINE_BYTES,
    RawAttribute,
    RawBlock,
    RawDirective,
    parse_text,
)


def _problems(text: str) -> list[str]:
    return [str(p) for p in parse_text("f", text).problems]


def _only_block(text: str) -> RawBlock:
    parsed = parse_text("f", text)
    assert parsed.problems == ()
    (block,) = parsed.items
    assert isinstance(block, RawBlock)
    return block


def test_service_block_with_brace_on_its_own_line() -> None:
    """The classic layout yields one block with located attribute lines."""
    block = _only_block("# c\nservice echo\n{\n\tsocket_type\t= stream\n  wait = no\n}\n")
    assert block.name == "echo"
    assert block.location == Location("f", 2)
    assert block.attributes == (
        RawAttribute("socket_type", "=", ("stream",), Location("f", 4)),
        RawAttribute("wait", "=", ("no",), Location("f", 5)),
    )


def test_brace_on_header_line_and_operators_without_spaces() -> None:
    """``service NAME {`` and ``name=value``/``name+=v``/``name-=v`` are accepted."""
    block = _only_block("service echo {\nwait=no\nonly_from+=1.2.3.4\nno_access-=::1\n}\n")
    assert [(a.name, a.op, a.values) for a in block.attributes] == [
        ("wait", "=", ("no",)),
        ("only_from", "+=", ("1.2.3.4",)),
        ("no_access", "-=", ("::1",)),
    ]


def test_hash_after_values_is_a_value_and_quotes_are_not_special() -> None:
    """Only whole-line comments exist; there is no quoting (xinetd §2)."""
    block = _only_block('service x\n{\n  # comment\nserver_args = a # b "c d"\n}\n')
    assert block.attributes[0].values == ("a", "#", "b", '"c', 'd"')


def test_empty_value_list_and_crlf_lines() -> None:
    """``only_from =`` has no values; CRLF line endings are tolerated."""
    block = _only_block("defaults\r\n{\r\nonly_from =\r\n}\r\n")
    assert block.is_defaults
    assert block.attributes[0].values == ()


def test_include_directives_at_top_level() -> None:
    """``include`` and ``includedir`` are kept in order between blocks."""
    parsed = parse_text("f", "include a\nservice s\n{\n}\nincludedir d\n")
    assert parsed.items[0] == RawDirective("include", "a", Location("f", 1))
    assert parsed.items[2] == RawDirective("includedir", "d", Location("f", 5))


def test_missing_brace_and_unclosed_block_are_reported() -> None:
    """A header not followed by '{', and a block never closed, are both errors."""
    assert _problems("service a\nwait = no\n}\nservice b\n{\nwait = no\n") == [
        "f:2: service a: expected '{' on the line after the header",
        "f:4: service b: block opened here has no closing '}'",
    ]


def test_new_block_inside_open_block_recovers() -> None:
    """A forgotten '}' is reported, and the next block is still read."""
    parsed = parse_text("f", "service a\n{\nwait = no\nservice b\n{\nwait = yes\n}\n")
    assert [str(p) for p in parsed.problems] == [
        "f:1: service a: block opened here has no closing '}'"
    ]
    assert [b.name for b in parsed.items if isinstance(b, RawBlock)] == ["a", "b"]


def test_malformed_lines_are_all_reported() -> None:
    """Every bad line is reported with its number; parsing goes on."""
    text = (
        "junk here\n"
        "}\n"
        "include\n"
        "defaults\n{\n"
        "what is this\n"
        "wait = no }\n"
        "}\n"
        "service\n{\n}\n"
        "service a b\n{\n}\n"
        "service c\n{\ninclude x\n}\n"
    )
    assert _problems(text) == [
        "f:1: expected 'service NAME', 'defaults', 'include FILE' or 'includedir DIR', "
        "got 'junk here'",
        "f:2: unexpected '}' outside a service or defaults block",
        "f:3: include: expected exactly one path",
        "f:6: defaults: expected 'ATTRIBUTE = VALUE' or '}', got 'what is this'",
        "f:9: expected 'service NAME' (one name, no spaces)",
        "f:12: service a: expected 'service NAME' (one name, no spaces)",
        "f:17: service c: include is only allowed outside service and defaults blocks",
    ]


def test_closing_brace_after_values_is_a_value() -> None:
    """``wait = no }`` keeps '}' as a value (xinetd does too), so the block stays open."""
    parsed = parse_text("f", "service a\n{\nwait = no }\n")
    assert [str(p) for p in parsed.problems] == [
        "f:1: service a: block opened here has no closing '}'"
    ]


def test_overlong_line_is_an_error() -> None:
    """Lines over 16 KiB are refused, as xinetd's buffer does."""
    long_line = "server_args = " + "a" * MAX_LINE_BYTES
    assert _problems(f"service a\n{{\n{long_line}\n}}\n") == [
        f"f:3: service a: line longer than {MAX_LINE_BYTES} bytes"
    ]


def test_brace_glued_to_the_name() -> None:
    """``service echo{`` opens the block of service ``echo``."""
    assert _only_block("service echo{\nwait = no\n}\n").name == "echo"
    assert _only_block("defaults{\n}\n").is_defaults


def test_lines_with_bytes_that_are_not_text_are_never_used() -> None:
    """A NUL, another control character or a byte that is not UTF-8 (a surrogate
    after decoding) makes its line a problem of its block, never a value; a header
    with such a name still opens its block, named with the bytes escaped."""
    parsed = parse_text("f", "service a\n{\ntls_cert = /x\x00y\nserver_args = \x1b[2J\n"
                             "user = caf\udce9\n}\nservice b\udcff\n{\n}\n")
    assert [str(p) for p in parsed.problems] == [
        "f:3: service a: this line holds a control character (\\x00)",
        "f:4: service a: this line holds a control character (\\x1b)",
        "f:5: service a: this line is not valid UTF-8",
        "f:7: service b\\xff: this line is not valid UTF-8",
    ]
    first, second = parsed.items
    assert isinstance(first, RawBlock) and isinstance(second, RawBlock)
    assert (first.attributes, first.complete) == ((), False)
    assert (second.name, second.complete) == ("b\\xff", False)


def test_a_header_that_is_not_text_inside_an_open_block_still_opens_its_block() -> None:
    """A block left open, then ``service s<control>sh``: the open block is unclosed,
    and the next one is known (and failed) by its escaped name."""
    parsed = parse_text("f", "service a\n{\nwait = no\nservice s\x01sh\n{\nwait = no\n}\n")
    assert [str(p) for p in parsed.problems] == [
        "f:1: service a: block opened here has no closing '}'",
        "f:4: service s\\x01sh: this line holds a control character (\\x01)",
    ]
    assert [b.name for b in parsed.items if isinstance(b, RawBlock)] == ["a", "s\\x01sh"]


def test_misspelt_headers_open_their_block_with_a_suggestion() -> None:
    """``servce echo`` and ``defualts`` are read as the block they meant (which
    cannot run: the problem is the block's); other junk is the file's, and a '{'
    after it opens an unnamed block that is skipped without further noise."""
    parsed = parse_text("f", "servce echo\n{\nwait = no\n}\ndefualts\n{\n}\n"
                             "frobnicate\n{\nonly_from = 10.0.0.1\n}\n")
    assert [str(p) for p in parsed.problems] == [
        "f:1: service echo: unknown keyword 'servce'; did you mean 'service'?",
        "f:5: defaults: unknown keyword 'defualts'; did you mean 'defaults'?",
        "f:8: expected 'service NAME', 'defaults', 'include FILE' or 'includedir DIR', "
        "got 'frobnicate'",
    ]
    assert [str(p) for p in parsed.top_level] == [str(parsed.problems[2])]
    echo, defaults = parsed.items
    assert isinstance(echo, RawBlock) and isinstance(defaults, RawBlock)
    assert (echo.name, echo.complete, defaults.is_defaults) == ("echo", False, True)


@given(st.text(max_size=300))
def test_parse_text_never_raises(text: str) -> None:
    """Syntax problems are returned, never raised, whatever the text."""
    parsed = parse_text("f", text)
    assert all(p.file == "f" for p in parsed.problems)
