"""
What a benchmark run prints: one table of figures and one of targets.

A figure row holds the median of each compared server; a target compares a
ratio (or an absolute value) with the threshold the issues set and says
PASS or MISS, or n/a when it could not be measured (for example superd did
not start, or a feature the figure depends on is not wired yet).  A target
without a threshold is informational ("info"): a ratio the issues set no goal
for, printed beside the goals it explains (such as where the Python floor lies).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Report", "Row", "Target", "ratio"]

_TITLES = {"spawnloop": "C loop", "pyloop": "Py loop", "twinetd": "tw inetd", "echoloop": "C echo"}


def ratio(num: float | None, den: float | None) -> float | None:
    """num/den, or None when either is missing or den is zero."""
    if num is None or den is None or den == 0:
        return None
    return num / den


# Units whose values are counts, printed without decimals.
_COUNTS = ("probes",)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit in _COUNTS:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


@dataclass(frozen=True)
class Row:
    """One figure: a label, a unit and the median value per column."""

    label: str
    unit: str
    values: dict[str, float | None]
    note: str = ""


@dataclass(frozen=True)
class Target:
    """A goal from the issues: ``value OP threshold``, or n/a with a reason.

    ``threshold=None`` makes it informational: no goal, verdict ``info``.
    """

    issue: int
    text: str
    value: float | None
    threshold: float | None
    at_most: bool = False
    unit: str = "x"
    why_na: str = ""

    @property
    def verdict(self) -> str:
        if self.value is None or self.why_na:
            return "n/a"
        if self.threshold is None:
            return "info"
        ok = self.value <= self.threshold if self.at_most else self.value >= self.threshold
        return "PASS" if ok else "MISS"

    def line(self) -> str:
        op = "<=" if self.at_most else ">="
        goal = "no goal" if self.threshold is None else f"{op} {_fmt(self.threshold, self.unit)}"
        got = _fmt(self.value, self.unit) + (f" {self.unit}" if self.unit not in ("x", "") else "")
        extra = f"  ({self.why_na})" if self.why_na else ""
        return f"  #{self.issue} {self.text:<50} {goal:>10} {got:>12}  {self.verdict}{extra}"


@dataclass
class Report:
    """Collects rows and targets as figures finish; renders them at the end."""

    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets_title: str = "TARGETS"

    def row_line(self, row: Row) -> str:
        cells = "".join(f"{_fmt(row.values.get(c), row.unit):>12}" for c in self.columns)
        base = row.values.get("superd"), row.values.get("xinetd")
        r = _fmt(ratio(*base), "x") if None not in base else ""
        label = f"{row.label} [{row.unit}]"
        note = f"  {row.note}" if row.note else ""
        return f"  {label:<58}{cells}{r:>10}{note}"

    def header(self) -> str:
        cells = "".join(f"{_TITLES.get(c, c):>12}" for c in self.columns)
        return f"  {'figure (median)':<58}{cells}{'sd/xi':>10}"

    def render(self) -> str:
        out = ["", "FIGURES", self.header()]
        out += [self.row_line(r) for r in self.rows]
        out += ["", self.targets_title] + [t.line() for t in self.targets]
        if self.notes:
            out += ["", "NOTES"] + [f"  - {n}" for n in self.notes]
        return "\n".join(out)
