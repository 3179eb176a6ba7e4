"""Rebuilding a SQL read model from history, and replaying it from a point in time."""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conduit.errors import InvalidArgument, ProjectionError
from conduit.projections.sql import CHECKPOINTS, HOME_MAP, PARKED_APPLIED, SQLProjection
from conduit.subscriptions.runner import Runner

if TYPE_CHECKING:
    from conduit.store import EventStore

__all__ = ["rebuild", "replay_since"]


def rebuild(store: EventStore, projection: SQLProjection, *, batch_size: int | None = None) -> int:
    """Rebuild a read model from the first event; readers never see it half built.

    The events are applied to fresh tables beside the live ones (a schema of
    their own on PostgreSQL, an attached file on SQLite) while the live read
    model keeps serving and updating. Once the fresh tables have caught up,
    one transaction replaces the live tables' content with theirs (re-creating
    the live tables, so a changed shape takes effect) and moves the live
    checkpoint; the live driver goes on from there. Returns the number of
    events read. The projection class must accept ``name=`` and
    ``schema_translate_map=`` in its constructor, as :class:`SQLProjection`
    does.
    """
    base = projection.engine.execution_options(schema_translate_map=HOME_MAP)
    dialect = base.dialect.name
    fresh_schema = f"conduit_rebuild_{projection.name}".replace(".", "_")[:60]
    if dialect == "sqlite":
        database = base.url.database
        if not database or database == ":memory:":
            raise InvalidArgument("rebuild needs a SQLite read model in a file")
        fresh_file = f"{database}.rebuild"
        if os.path.exists(fresh_file):
            os.remove(fresh_file)
        engine = sa.create_engine(base.url).execution_options(schema_translate_map=HOME_MAP)

        @sa.event.listens_for(engine, "connect")
        def attach(dbapi_conn: Any, _: Any) -> None:
            dbapi_conn.execute(f"ATTACH DATABASE '{fresh_file}' AS {fresh_schema}")
            # pysqlite commits DDL at once, outside the transaction: the swap's
            # DROP and CREATE would let the live driver write into the empty
            # live tables before the copy. SQLAlchemy's recipe for SQLite:
            # the driver leaves transactions alone and each one begins here.
            dbapi_conn.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    elif dialect == "postgresql":
        engine = sa.create_engine(base.url).execution_options(schema_translate_map=HOME_MAP)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{fresh_schema}" CASCADE'))
            conn.execute(sa.text(f'CREATE SCHEMA "{fresh_schema}"'))
    else:
        raise ProjectionError(f"rebuild does not support {dialect} read models yet")
    try:
        fresh = type(projection)(
            engine,
            name=f"{projection.name}.rebuild",
            schema_translate_map={None: fresh_schema},
        )
        fresh.reset()
        runner = Runner(
            store,
            fresh,
            batch_size=batch_size or projection.batch_size,
            mirror_checkpoint=False,
        )
        read = _catch_up_to(runner, fresh, store.head_position())
        # What was pushed during the first pass; the live driver applies what
        # comes later. Each pass has a target, so that a rebuild ends even
        # while events arrive faster than it applies them.
        read += _catch_up_to(runner, fresh, store.head_position())
        _swap(engine, projection, fresh, fresh_schema)
    finally:
        if dialect == "postgresql":
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{fresh_schema}" CASCADE'))
        engine.dispose()
        if dialect == "sqlite" and os.path.exists(fresh_file):
            os.remove(fresh_file)
    return read


def _catch_up_to(runner: Runner, fresh: SQLProjection, target: int) -> int:
    if fresh.load_checkpoint() >= target:
        return 0
    return runner.catch_up(keep_going=lambda: fresh.load_checkpoint() < target)


def _swap(engine: sa.Engine, live: SQLProjection, fresh: SQLProjection, fresh_schema: str) -> None:
    position = fresh.load_checkpoint()
    fresh_tables = sa.MetaData()
    with engine.begin() as conn:
        live.metadata.drop_all(conn)
        live.metadata.create_all(conn)
        for table in live.metadata.sorted_tables:
            source = table.to_metadata(fresh_tables, schema=fresh_schema)
            conn.execute(table.insert().from_select(list(table.c.keys()), sa.select(*source.c)))
        conn.execute(CHECKPOINTS.delete().where(CHECKPOINTS.c.name.in_([live.name, fresh.name])))
        conn.execute(CHECKPOINTS.insert().values(name=live.name, position=position))
        conn.execute(PARKED_APPLIED.delete().where(PARKED_APPLIED.c.name == live.name))


def replay_since(store: EventStore, projection: SQLProjection, since: datetime) -> int:
    """Move a read model's checkpoint back to just before the first event recorded at or
    after ``since``, so that its driver applies those events again.

    For a read model restored from a backup taken at ``since``. Returns the
    new checkpoint.
    """
    if since.tzinfo is None:
        raise InvalidArgument("since must be timezone-aware", field="since")
    first = store.backend.first_position_since(since)
    position = projection.load_checkpoint() if first is None else first - 1
    with projection.engine.begin() as conn:
        conn.execute(CHECKPOINTS.delete().where(CHECKPOINTS.c.name == projection.name))
        conn.execute(CHECKPOINTS.insert().values(name=projection.name, position=position))
    projection.load_checkpoint()
    return position
