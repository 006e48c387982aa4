"""Results of the benchmark sections and the BENCHMARKS.md writer (tables, targets, ASCII charts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from bench.common import Machine


@dataclass
class Table:
    """A Markdown table: a caption, column names and rows of cells (already formatted)."""

    caption: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        """Append a row; every cell is turned into text."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.caption}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        """Return the table as Markdown."""
        lines = [f"**{self.caption}**", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join(" --- " for _ in self.columns) + "|")
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Target:
    """A target of the issue, the value measured for it and whether it holds (None: not measured)."""

    name: str
    measured: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        """Return PASS, FAIL or n/a."""
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


@dataclass
class Section:
    """One benchmark section: its tables, targets, charts and notes on method."""

    key: str
    title: str
    method: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    #: ``(alt text, path relative to BENCHMARKS.md)`` of plots written as image files.
    images: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def markdown(self, machine_line: str) -> str:
        """Return the section as Markdown."""
        out = [f"## {self.title}", ""]
        if self.method:
            out += ["Method:", ""] + [f"- {m}" for m in self.method] + [""]
        if self.error:
            out += ["**This section failed:**", "", "```", self.error.strip(), "```", ""]
        for table in self.tables:
            out += [table.markdown(), ""]
        if self.tables:
            out += [f"_Measured on: {machine_line}._", ""]
        for chart in self.charts:
            out += ["```", chart.rstrip(), "```", ""]
        for alt, path in self.images:
            out += [f"![{alt}]({path})", ""]
        if self.targets:
            targets = Table("Targets", ["Target", "Measured", "Result"])
            for t in self.targets:
                targets.add(t.name, t.measured, f"**{t.verdict}**")
            out += [targets.markdown(), ""]
        if self.notes:
            out += [f"- {n}" for n in self.notes] + [""]
        return "\n".join(out)


def ascii_chart(
    title: str,
    series: dict[str, Sequence[tuple[float, float | None]]],
    *,
    x_label: str,
    y_label: str,
    width: int = 60,
) -> str:
    """Return a horizontal bar chart, one group of bars per x value, on a log10 scale of y.

    :param series: ``{name: [(x, y), ...]}``; a y of None is drawn as "n/a".
    """
    import math

    values = [y for points in series.values() for _, y in points if y is not None and y > 0]
    if not values:
        return f"{title}\n(no data)"
    lo, hi = math.log10(min(values)), math.log10(max(values))
    span = (hi - lo) or 1.0
    name_w = max(len(n) for n in series)
    xs = sorted({x for points in series.values() for x, _ in points})
    lines = [title, f"(bar length: log10 of {y_label}; groups: {x_label})", ""]
    for x in xs:
        lines.append(f"{x_label} = {x:,.0f}")
        for name, points in series.items():
            y = dict(points).get(x)
            if y is None or y <= 0:
                bar, text = "", "n/a"
            else:
                bar = "#" * max(1, round(1 + (math.log10(y) - lo) / span * (width - 1)))
                text = f"{y:,.3g}"
            lines.append(f"  {name:<{name_w}} |{bar} {text}")
    return "\n".join(lines)


def save_figure(section: Section, fig: Any, out_dir: Path, path: str, title: str) -> None:
    """Lay out ``fig``, write it to ``out_dir / path`` (a PNG next to the Markdown), close it, and list it
    in ``section`` under ``title``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    target = out_dir / path
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    section.images.append((title, path))


def write_markdown(
    path: str, machine: Machine, sections: Sequence[Section], *, quick: bool, seconds: float
) -> str:
    """Write BENCHMARKS.md to ``path`` and return its text."""
    mode = "quick (tiny sizes, a smoke run: ratios are not meaningful)" if quick else "full"
    summary = Table("Summary of the targets", ["Section", "Target", "Measured", "Result"])
    for section in sections:
        for t in section.targets:
            summary.add(section.title, t.name, t.measured, f"**{t.verdict}**")
    head = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench.run"
        + (" --quick" if quick else "")
        + "` (`make bench`); do not edit by hand.",
        "",
        f"- Run: {mode}, {seconds:.0f} s in all.",
        f"- Machine: {machine.line()}.",
        "- Every figure is compared with a baseline measured in the same run, on the same machine and "
        "against the same sandbox; the ratios are the result, the absolute times only say where.",
        *[f"- {n}" for n in machine.notes],
        "",
        summary.markdown(),
        "",
    ]
    text = "\n".join(head + [s.markdown(machine.line()) for s in sections]).rstrip() + "\n"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return text


def fmt_s(seconds: float | None) -> str:
    """Format seconds for a table."""
    if seconds is None:
        return "n/a"
    if seconds < 0.1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float | None) -> str:
    """Format a byte count for a table."""
    if n is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def fmt_ratio(x: float | None) -> str:
    """Format a ratio (``12.3x``)."""
    if x is None:
        return "n/a"
    return f"{x:,.1f}x" if x >= 10 else f"{x:.2f}x"
