"""PostgreSQL's plans of the engine's log reads, on a log whose statistics are real.

The planner chooses by its estimates: on a log of many events where a name is
rare, a read by that name must go through ``events_name_position`` and never
walk the primary key filtering by name (the whole log, at scale). The
statements are checked as psycopg runs them after a few calls: prepared, with
a generic plan, which knows nothing of the name it is given.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from conduit import EventStore

pytestmark = pytest.mark.postgres

STREAMS = 200
RARE = "account_frozen"


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    name = f"plans_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def big_log(postgres_url: str, pg_schema: str) -> Any:
    """20,000 events in 200 streams, 2 of them named RARE; analyzed. Returns the SQL."""
    with EventStore(postgres_url, schema=pg_schema) as store:
        store.setup()
        for n in range(STREAMS):
            names = [RARE if n % 100 == 50 and v == 50 else f"thing_{v % 9}" for v in range(100)]
            store.push_many(f"s-{n}", [(name, {"v": v}) for v, name in enumerate(names)])
        sql = store.backend.sql  # type: ignore[attr-defined]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'ANALYZE "{pg_schema}".events')
    return sql


def _generic_plan(url: str, statement: str, params: list[Any]) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        types = ", ".join(_types(params))
        conn.execute(f"PREPARE probe ({types}) AS {_numbered(statement)}")
        values = ", ".join(_literal(conn, p) for p in params)
        return "\n".join(row[0] for row in conn.execute(f"EXPLAIN EXECUTE probe ({values})"))


def _types(params: list[Any]) -> list[str]:
    return ["text[]" if isinstance(p, list) else "bigint" for p in params]


def _numbered(statement: str) -> str:
    parts = statement.split("%s")
    numbered = [part + f"${i + 1}" for i, part in enumerate(parts[:-1])]
    return "".join(numbered) + parts[-1]


def _literal(conn: psycopg.Connection[Any], value: Any) -> str:
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(f"'{v}'" for v in value) + "]::text[]"
    return str(int(value))


def test_reading_a_rare_name_uses_the_name_index_not_the_primary_key(
    big_log: Any, postgres_url: str
) -> None:
    plan = _generic_plan(postgres_url, big_log.read_all(names=True), [[RARE], 0, 500, 500])
    assert "events_name_position" in plan, plan
    assert "events_pkey" not in plan, plan


def test_counting_a_rare_name_uses_the_name_index_not_the_primary_key(
    big_log: Any, postgres_url: str
) -> None:
    statement = big_log.count_after(names=True, limit=True)
    plan = _generic_plan(postgres_url, statement, [[RARE], 0, 100_001, 100_001])
    assert "events_name_position" in plan, plan
    assert "events_pkey" not in plan, plan
