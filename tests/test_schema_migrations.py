"""Stores made by earlier releases are migrated in place, and the new indexes serve the
filtered reads (query plans checked on both SQL engines)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from conduit import EventStore
from conduit.backends import sqlite as sqlite_engine
from conduit.testing.waits import eventually


def _sqlite_v3(path: Path, events: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for version in (1, 2, 3):
        script = sqlite_engine._MIGRATIONS[version]
        assert isinstance(script, str)
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA user_version=3")
    for i in range(1, events + 1):
        conn.execute(
            "INSERT INTO events VALUES (?, ?, 's', 0, ?, 'thing_happened', ?, '{}', ?)",
            (i * 10, str(uuid.uuid4()), i, f'{{"i": {i}}}', 1_700_000_000_000_000 + i),
        )
    conn.execute("INSERT INTO streams VALUES ('s', 0, ?, 1700000000000000)", (events,))
    conn.close()


def test_a_sqlite_store_of_schema_3_is_migrated_with_its_events_and_positions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v3.db"
    _sqlite_v3(path, 5)
    with EventStore(f"sqlite:///{path}") as store:
        events = store.get("s")
        assert [(e.version, e.position, e.data) for e in events] == [
            (i, i * 10, {"i": i}) for i in range(1, 6)
        ]
        assert store.push("thing_happened", "s", {}).position == 51
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (
        sqlite_engine.SCHEMA_VERSION,
    )


def test_sqlite_positions_are_never_reused_once_the_last_events_are_gone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "reuse.db"
    with EventStore(f"sqlite:///{path}") as store:
        last = store.push_many("s", [("thing_happened", {}), ("thing_happened", {})])[-1]
        conn = sqlite3.connect(path)
        conn.execute("DELETE FROM events WHERE position = ?", (last.position,))
        conn.commit()
        conn.execute("VACUUM")
        conn.close()
        assert store.push("thing_happened", "t", {}).position == last.position + 1


def _sqlite_plan(path: Path, sql: str, params: tuple[object, ...]) -> str:
    conn = sqlite3.connect(path)
    rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    conn.close()
    return " | ".join(str(row[-1]) for row in rows)


def test_sqlite_filtered_log_reads_use_their_indexes(tmp_path: Path) -> None:
    path = tmp_path / "plans.db"
    with EventStore(f"sqlite:///{path}") as store:
        store.push("thing_happened", "s", {}, metadata={"correlation_id": "c"})
    cases = {
        "events_name_position": "SELECT * FROM events WHERE name = ? AND position > ?",
        "events_correlation": (
            f"SELECT * FROM events WHERE {sqlite_engine.CORRELATION} = ? AND position > ?"
        ),
        "events_causation": (
            f"SELECT * FROM events WHERE {sqlite_engine.CAUSATION} = ? AND position > ?"
        ),
    }
    for index, sql in cases.items():
        assert index in _sqlite_plan(path, sql, ("x", 0))


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    name = f"migrate_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.mark.postgres
def test_a_postgres_schema_of_version_4_gains_the_log_indexes(
    postgres_url: str, pg_schema: str
) -> None:
    with EventStore(postgres_url, schema=pg_schema) as store:
        store.setup()
        store.push("thing_happened", "s", {}, metadata={"correlation_id": "c"})
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for index in ("events_name_position", "events_correlation", "events_causation"):
            conn.execute(f'DROP INDEX "{pg_schema}".{index}')
        conn.execute(f'DELETE FROM "{pg_schema}".schema_version WHERE version >= 5')
    with EventStore(postgres_url, schema=pg_schema) as store:
        store.setup()
        eventually(  # other transactions of the cluster may hold the horizon a while
            lambda: [e.name for e in store.read_all(correlation_id="c")] == ["thing_happened"],
            "the correlated event is read",
        )
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        found = {
            row[0]
            for row in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (pg_schema,)
            )
        }
    assert {"events_name_position", "events_correlation", "events_causation"} <= found


@pytest.mark.postgres
def test_postgres_filtered_log_reads_use_their_indexes(postgres_url: str, pg_schema: str) -> None:
    with EventStore(postgres_url, schema=pg_schema) as store:
        store.setup()
        sql = store.backend.sql  # type: ignore[attr-defined]
        store.push("thing_happened", "s", {}, metadata={"correlation_id": "c"})
    cases = {
        "events_name_position": (sql.read_all(names=True), [["a", "b"], 0, 10, 10]),
        "events_correlation": (sql.read_all(names=False, correlation=True), [0, "c", 10]),
        "events_causation": (sql.read_all(names=False, causation=True), [0, "c", 10]),
    }
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")  # a tiny table: ask whether an index CAN serve
        for index, (statement, params) in cases.items():
            plan = "\n".join(row[0] for row in conn.execute(f"EXPLAIN {statement}", params))
            assert index in plan, plan
