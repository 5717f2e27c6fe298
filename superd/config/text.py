"""
Small pure helpers about configuration text: is it text at all, how to show a
piece of it safely, and which known word a misspelt one was meant to be.

Files are decoded as UTF-8 with ``surrogateescape``, so a byte that is not
UTF-8 is a lone surrogate (U+DC80..U+DCFF) in the text and survives exactly.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Optional, Tuple

__all__ = [
    "MAX_BAD_PLACES",
    "bad_characters",
    "closest",
    "edit_distance",
    "not_text_reason",
    "printable",
    "service_headers",
]

#: Places (outside comment lines) with invalid UTF-8 or a control character
#: that a file may hold before it counts as "not a text file": a Latin-1
#: word is a mistake to report on its line, a binary file is one error.
MAX_BAD_PLACES = 3

# Control characters other than TAB, and the surrogates standing for bytes
# that are not UTF-8.  CR is handled by the line splitter.
_BAD = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]+")
_HEADER = re.compile(r"^[ \t]*service[ \t]+([^ \t{]+)")


def printable(text: str) -> str:
    r"""``text`` safe for a terminal and a log: each byte that was not UTF-8
    and each control character (TAB excepted) written as ``\xNN``."""
    if _BAD.search(text) is None:
        return text
    return _BAD.sub(lambda m: "".join(_escape(c) for c in m.group()), text)


def _escape(character: str) -> str:
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # the byte it stands for
    return f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"


def bad_characters(line: str) -> Optional[str]:
    """What is wrong with one line's characters, or None if nothing is."""
    match = _BAD.search(line)
    if match is None:
        return None
    if any(0xD800 <= ord(c) <= 0xDFFF for c in match.group()):
        return "this line is not valid UTF-8"
    return f"this line holds a control character ({_escape(match.group()[0])})"


def _is_comment(line: str) -> bool:
    return line.lstrip(" \t").startswith("#")


def not_text_reason(text: str) -> Optional[Tuple[int, str]]:
    """
    ``(line, reason)`` if ``text`` is not a configuration file at all (a NUL
    byte anywhere, or invalid UTF-8 and control characters in more than
    ``MAX_BAD_PLACES`` places outside comments), else None.
    """
    first, places = 0, 0
    for number, line in enumerate(text.split("\n"), start=1):
        if "\x00" in line:
            return number, "not a text file (it holds NUL bytes)"
        if _is_comment(line):
            continue
        found = len(_BAD.findall(line.removesuffix("\r")))
        if found and not first:
            first = number
        places += found
    if places > MAX_BAD_PLACES:
        return first, f"not a text file (invalid UTF-8 or control characters in {places} places)"
    return None


def service_headers(text: str) -> List[Tuple[int, str]]:
    """The ``service NAME`` lines of a file the parser refuses, with their
    numbers: which services the file would have defined."""
    found = []
    for number, line in enumerate(text.split("\n"), start=1):
        match = _HEADER.match(line)
        if match is not None and "\x00" not in match.group(1):
            found.append((number, printable(match.group(1))))
    return found


def edit_distance(a: str, b: str) -> int:
    """
    The optimal-string-alignment distance: insertions, deletions,
    substitutions and swaps of two neighbours each count one (``bnid`` is one
    from ``bind``).  Hand-written: ``difflib`` scores similarity by ratio,
    which says little about two-letter slips in short names.
    """
    previous2: List[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


def closest(word: str, known: Iterable[str]) -> Optional[str]:
    """
    The known word ``word`` is most likely a slip for, or None: case aside,
    within one edit for words of up to four letters, two for longer ones.
    """
    lowered = word.lower()
    limit = 1 if len(word) <= 4 else 2
    scored = sorted((edit_distance(lowered, k.lower()), k) for k in known if k != word)
    if scored and scored[0][0] <= limit:
        return scored[0][1]
    return None
