"""What an operation asks of the engine: its statements, their plans and their work.

:func:`capturing` records every statement Conduit's engines run in this
process while an operation runs (the SQLite engine's reads all go through
``SQLiteBackend._query``; the PostgreSQL engine's through its pooled
connection classes, sync and async). :func:`explain` then runs each read again under the
engine's planner: ``EXPLAIN QUERY PLAN`` and a count of virtual-machine steps
on SQLite, ``EXPLAIN (ANALYZE, BUFFERS)`` on PostgreSQL, with the rows it read
from each table. The work of an operation that stays the same from 0 to 10 M
events is the proof that it does not scan the log.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from conduit.backends import sqlite as sqlite_engine
from conduit.backends.postgres import aio as postgres_aio
from conduit.backends.postgres import sync as postgres_engine

__all__ = ["Statement", "Work", "capturing", "explain"]

STEP = 20
"""SQLite's progress handler counts virtual-machine steps in units of this many."""


@dataclass(frozen=True)
class Statement:
    """One statement an operation ran, with its parameters."""

    sql: str
    params: tuple[Any, ...]


@dataclass
class Work:
    """What one run of an operation cost the engine, and the plans of its statements."""

    statements: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    """PostgreSQL: rows read per table (index entries included), over every statement."""
    steps: int = 0
    """SQLite: virtual-machine steps over every statement."""
    plans: dict[str, str] = field(default_factory=dict)
    """Each distinct statement's text -> its plan (the first run's parameters)."""


@contextmanager
def capturing() -> Iterator[list[Statement]]:
    """Record the statements the engines run in this process (every thread) meanwhile."""
    found: list[Statement] = []
    lite: Any = sqlite_engine.SQLiteBackend
    pg: Any = postgres_engine._Connection
    apg: Any = postgres_aio._AsyncConnection  # the browser's store is an AsyncEventStore
    query, perform, aperform = lite._query, pg.perform, apg.perform

    def lite_query(self: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        found.append(Statement(sql, tuple(params)))
        return query(self, sql, params)

    def pg_perform(self: Any, statement: Any) -> Any:
        found.append(Statement(statement.sql, tuple(statement.params or ())))
        return perform(self, statement)

    async def apg_perform(self: Any, statement: Any) -> Any:
        found.append(Statement(statement.sql, tuple(statement.params or ())))
        return await aperform(self, statement)

    lite._query, pg.perform, apg.perform = lite_query, pg_perform, apg_perform
    try:
        yield found
    finally:
        lite._query, pg.perform, apg.perform = query, perform, aperform


def _is_read(sql: str) -> bool:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    return head in ("SELECT", "WITH") and "advisory" not in sql and "append_" not in sql


def explain(engine: str, target: str, statements: list[Statement]) -> Work:
    """The work and plans of ``statements``; ``target``: the SQLite file or PostgreSQL URL."""
    reads = [s for s in statements if _is_read(s.sql)]
    if engine == "sqlite":
        return _explain_sqlite(target, reads)
    return _explain_postgres(target, reads)


def _explain_sqlite(path: str, statements: list[Statement]) -> Work:
    work = Work(statements=len(statements))
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ticks = [0]

        def tick() -> int:
            ticks[0] += 1
            return 0

        for statement in statements:
            if statement.sql not in work.plans:
                rows = conn.execute("EXPLAIN QUERY PLAN " + statement.sql, statement.params)
                work.plans[statement.sql] = _sqlite_plan(rows.fetchall())
            conn.set_progress_handler(tick, STEP)
            try:
                conn.execute(statement.sql, statement.params).fetchall()
            finally:
                conn.set_progress_handler(None, STEP)
        work.steps = ticks[0] * STEP
    finally:
        conn.close()
    return work


def _sqlite_plan(rows: list[Any]) -> str:
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + str(detail))
    return "\n".join(lines)


def _explain_postgres(url: str, statements: list[Statement]) -> Work:
    work = Work(statements=len(statements))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for statement in statements:
            row = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + statement.sql, statement.params
            ).fetchone()
            assert row is not None
            _count_rows(row[0][0]["Plan"], work.rows)
            if statement.sql not in work.plans:
                text = conn.execute(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement.sql, statement.params
                ).fetchall()
                work.plans[statement.sql] = "\n".join(line for (line,) in text)
    return work


def _count_rows(node: dict[str, Any], rows: dict[str, int]) -> None:
    """Add the rows each scan node read (kept and filtered out, every loop) to ``rows``."""
    relation = node.get("Relation Name")
    if relation is not None:
        loops = int(node.get("Actual Loops", 1))
        read = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        read += node.get("Rows Removed by Index Recheck", 0)
        rows[relation] = rows.get(relation, 0) + int(read * loops)
    for child in node.get("Plans", ()):
        _count_rows(child, rows)
