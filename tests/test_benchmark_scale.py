"""The scale benchmark's ``--quick`` run, so that its code cannot rot.

``python -m benchmarks --only scale --quick`` builds 100,000 events on SQLite
and PostgreSQL and measures every figure of the full run. Nothing about the
figures is asserted (they mean nothing at this size, on a busy machine): only
that the run completes and writes every row, target and plan it should, in
its own block of the page and nowhere else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import postgres_admin_url

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.postgres

LABELS = (
    "appends/s, one event per push, 1 writer",
    "appends/s, one event per push, 2 writers",
    "`read_all(after=middle)`",
    "`get` of a 100-event stream, p99",
    "`read(since=...)` of one stream",
    "`read_all(names=[rare])`, every match",
    "`read_all(names=[a name of the probe streams only])`, every match",
    "`streams(prefix=...)`, first page of 100",
    "`stream_version`, p99",
    "`head_position`",
    "browser: overview `/`",
    "browser: a stream `/streams/{id}`",
    "browser: the log `/log`",
    "`conduit stats` (in-process)",
    "`conduit stats --fast`, a projection at checkpoint 0",
    "size on disk per event",
    "`conduit --help`",
    "`python -c 'import conduit'`",
)


def test_quick_scale_run_writes_its_block_and_keeps_the_rest_of_the_page(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nThe other sections' figures.\n", encoding="utf-8")
    database = f"conduit_scale_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--only",
        "scale",
        "--quick",
        "--workdir",
        str(tmp_path),
        "--postgres-url",
        postgres_admin_url(),
        "--scale-database",
        database,
        "--write",
        str(page),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-4000:]

    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nThe other sections' figures.\n")
    assert text.count("<!-- scale:start -->") == 1
    assert text.rstrip().endswith("<!-- scale:end -->")
    assert "Not run" not in text
    for engine in ("SQLite", "PostgreSQL"):
        assert f"### {engine}\n" in text
        assert f"#### {engine}: targets at 100 k events" in text
        assert f"#### {engine}: what one call asks of the engine" in text
    for label in LABELS:
        assert label in text, label
    # Every target has a verdict, and the console summary lists them too.
    assert "PASS" in text or "MISS" in text
    assert "does not scan the log" in done.stdout
    # The SQLite files are gone with the run's work directory.
    assert not list(tmp_path.glob("**/*.db"))


def test_a_second_scale_run_replaces_the_block_and_the_default_run_keeps_it() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.scale_report import END, START, keep_block, replace_block
    finally:
        sys.path.remove(str(ROOT))

    first = f"{START}\nold figures\n{END}"
    page = replace_block("# Benchmarks\n\nOther figures.\n", first)
    assert page == f"# Benchmarks\n\nOther figures.\n\n{first}\n"
    second = replace_block(page, f"{START}\nnew figures\n{END}")
    assert "old figures" not in second
    assert second.count(START) == 1
    assert "new figures" in second
    assert "Other figures." in second

    rewritten = keep_block(second, "# Benchmarks\n\nA new default run.\n")
    assert "A new default run." in rewritten
    assert "Other figures." not in rewritten
    assert "new figures" in rewritten
