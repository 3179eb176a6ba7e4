"""Start-up (issue 12): ``import conduit`` and the ``conduit`` command, each in a new process.

Three commands, run one after the other ``runs`` times (10, or 3 with
``--quick``): ``python -c pass`` (the interpreter alone, the floor),
``python -c 'import conduit'`` and ``conduit --help``. The figures are the
best and the median of the runs, in milliseconds, wall-clock time of the
whole process.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import CONDUIT, Row, Section
from benchmarks.scale_measure import conduit_command

__all__ = ["run"]

Log = Callable[[str], None]


def run(quick: bool, workdir: Path, server_url: str, log: Log) -> Section:
    """Time the start-up commands; returns the section (no target: the issue asks for figures)."""
    runs = 3 if quick else 10
    commands = {
        "`python -c pass`": [sys.executable, "-c", "pass"],
        "`python -c 'import conduit'`": [sys.executable, "-c", "import conduit"],
        "`conduit --help`": [*conduit_command(), "--help"],
    }
    env = {**os.environ, "COLUMNS": "80"}
    found: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, timeout=120, env=env)
            found[label].append((time.perf_counter() - start) * 1000)
    section = Section("Start-up", [CONDUIT])
    section.extra_title = "Each command in a new process (ms)"
    for label, times in found.items():
        section.extra.append(Row(f"{label}, best of {runs}", "ms", {CONDUIT: min(times)}))
        section.extra.append(Row(f"{label}, median", "ms", {CONDUIT: statistics.median(times)}))
        log(f"startup {label}: best {min(times):.0f} ms")
    section.notes.append(
        f"Each command runs {runs} times, the three taking turns; wall-clock time from "
        "starting the process to its exit (the interpreter's own start included: "
        "`python -c pass` is that floor). `conduit --help` imports the CLI (typer, rich) "
        "and renders its help."
    )
    return section
