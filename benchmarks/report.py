"""Turning sections into text: the console summary and docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from benchmarks.common import Row, Section, Target

__all__ = ["Run", "console", "environment", "markdown"]

LIBRARIES = (
    "conduit-eventstore",
    "eventsourcing",
    "psycopg",
    "psycopg-binary",
    "psycopg-pool",
    "orjson",
)


class Run:
    """What a whole run produced, and where and how it was produced."""

    def __init__(self, command: str, quick: bool, workdir: Path) -> None:
        self.command = command
        self.quick = quick
        self.started = datetime.now(UTC)
        self.environment = environment(workdir)
        self.sections: list[Section] = []
        self.skipped: dict[str, str] = {}


def environment(workdir: Path) -> dict[str, str]:
    """The machine, the system and the library versions, as label -> text."""
    found = {
        "CPU": _cpu_model(),
        "Cores": f"{os.cpu_count()} (logical)",
        "RAM": _ram(),
        "OS": platform.platform(),
        "File system (SQLite files)": _filesystem(workdir),
        "Load average at start (1, 5, 15 min)": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "Python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "SQLite": sqlite3.sqlite_version,
    }
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _filesystem(path: Path) -> str:
    best = ("", "unknown", "unknown")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, point, kind = line.split()[:3]
            inside = str(path.resolve()).startswith(point.rstrip("/") + "/") or point == "/"
            if inside and len(point) >= len(best[0]):
                best = (point, kind, device)
    except OSError:
        return "unknown"
    return f"{best[1]} on {best[2]} (mounted at {best[0]})"


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "x":
        return f"{value:.2f}x"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _ratio(row: Row, first: str, other: str) -> str:
    mine, theirs = row.values.get(first), row.values.get(other)
    if mine is None or not theirs:
        return ""
    return f"{mine / theirs:.2f}x"


def _target_line(target: Target) -> tuple[str, str, str, str]:
    sign = "≤" if target.at_most else "≥"
    unit = target.unit if target.unit == "x" else f" {target.unit}"
    return (
        target.label,
        f"{target.measured:.2f}{unit}",
        f"{sign} {target.required:g}{unit}",
        "PASS" if target.passed else "**MISS**",
    )


def _table(header: list[str], lines: list[list[str]], *, right: bool = True) -> list[str]:
    align = ["---:" if i and right else "---" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return out


def section_markdown(section: Section) -> list[str]:
    """One section: results with ratios, targets, stand-alone figures, notes."""
    first, others = section.contenders[0], section.contenders[1:]
    header = ["Measurement", *section.contenders, *(f"{first} / {o}" for o in others)]
    lines = [
        [
            row.label,
            *(_number(row.values.get(name), row.unit) for name in section.contenders),
            *(_ratio(row, first, other) for other in others),
        ]
        for row in section.rows
    ]
    out = [f"## {section.title}", ""]
    if lines:
        out += [*_table(header, lines), ""]
    if section.targets:
        targets = [list(_target_line(t)) for t in section.targets]
        out += [
            "### Targets",
            "",
            *_table(["Target", "Measured", "Required", "Result"], targets),
            "",
        ]
    if section.extra:
        extra = [
            [
                row.label,
                _number(next(v for v in row.values.values() if v is not None), row.unit),
                "ratio" if row.unit == "x" else row.unit,
            ]
            for row in section.extra
        ]
        out += [
            f"### {section.extra_title}",
            "",
            *_table(["Measurement", "Figure", "Unit"], extra),
            "",
        ]
    if section.notes:
        out += ["### How it was measured", "", *(f"- {note}" for note in section.notes), ""]
    return out


def markdown(run: Run, preamble: list[str], closing: list[str]) -> str:
    """The whole of docs/benchmarks.md."""
    minutes = (datetime.now(UTC) - run.started).total_seconds() / 60
    env = dict(run.environment)
    env["Load average at end (1, 5, 15 min)"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    for section in run.sections:
        env.update(section.versions)
    out = [
        "# Benchmarks",
        "",
        *preamble,
        "",
        f"Produced by `{run.command}` on {run.started:%Y-%m-%d %H:%M} UTC, in {minutes:.1f} "
        "minutes" + (" (a `--quick` smoke run: indicative only)." if run.quick else "."),
        "",
        "## Machine and versions",
        "",
        *_table(["Item", "Value"], [[key, value] for key, value in env.items()], right=False),
        "",
    ]
    for section in run.sections:
        out += section_markdown(section)
    for title, reason in run.skipped.items():
        out += [f"## {title}", "", f"Not run: {reason}", ""]
    out += closing
    return "\n".join(out).rstrip() + "\n"


def console(section: Section) -> str:
    """A plain-text summary of one section for the terminal."""
    first, others = section.contenders[0], section.contenders[1:]
    width = max((len(row.label) for row in (*section.rows, *section.extra)), default=0) + 2
    lines = [f"== {section.title} ==", ""]
    header = "".join(f"{name:>16}" for name in section.contenders)
    header += "".join(f"{first + '/' + other:>24}" for other in others)
    if section.rows:
        lines.append(" " * width + header)
    for row in section.rows:
        text = f"{row.label:<{width}}"
        text += "".join(f"{_number(row.values.get(n), row.unit):>16}" for n in section.contenders)
        text += "".join(f"{_ratio(row, first, o):>24}" for o in others)
        lines.append(text)
    for row in section.extra:
        value = next(v for v in row.values.values() if v is not None)
        unit = "" if row.unit == "x" else row.unit
        lines.append(f"{row.label:<{width}}{_number(value, row.unit):>16} {unit}")
    lines.append("")
    for target in section.targets:
        label, measured, required, result = _target_line(target)
        lines.append(f"  {result.strip('*'):<5} {label}: {measured} (target {required})")
    return "\n".join(lines)
