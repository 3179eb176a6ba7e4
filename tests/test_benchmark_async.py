"""The asyncio benchmark's ``--quick`` run, so that its code cannot rot.

It pushes from tasks and processes on PostgreSQL and SQLite for a fraction of
a second each: nothing about the figures is asserted, only that every row
and target is there and the report renders.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from conftest import postgres_admin_url

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.postgres


def test_quick_async_run_measures_every_row_and_target(tmp_path: Path) -> None:
    # The benchmark's writer processes are spawned: they import benchmarks.* from the
    # parent's sys.path as it is when they start, so ROOT stays on it for the run.
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import async_bench
        from benchmarks.report import console, section_markdown

        database = f"conduit_async_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        url = postgres_admin_url()
        section = async_bench.run(True, tmp_path, url, lambda _: None, database=database)
    finally:
        sys.path.remove(str(ROOT))

    labels = [row.label for row in (*section.rows, *section.extra)]
    assert any("64 tasks; sync and raw: 8 processes" in label for label in labels)
    assert any("read one 1,000-event stream" in label for label in labels)
    assert any(label.startswith("SQLite (synchronous=FULL)") for label in labels)
    assert any("group_commit=False" in label for label in labels)
    assert any("p99" in label for label in labels)
    assert len(section.targets) == 4
    for row in section.rows:
        assert row.values[async_bench.ASYNC] is not None, row.label
    text = "\n".join(section_markdown(section))
    assert "## Asyncio and group commit (issue 13)" in text
    assert ("PASS" in console(section)) or ("MISS" in console(section))
