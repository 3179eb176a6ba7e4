"""Rebuilding a SQL read model from history, and replaying it from a point in time."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from conduit.core.effects import Op
from conduit.errors import InvalidArgument, ProjectionError
from conduit.projections.outages import lost_a_race
from conduit.projections.sql import (
    CHECKPOINTS,
    HOME_MAP,
    MAX_NAME_LENGTH,
    PARKED_APPLIED,
    SQLProjection,
    own_checkpoints,
)
from conduit.subscriptions.partitions import Partition, check_count
from conduit.subscriptions.runner import Runner

if TYPE_CHECKING:
    from conduit.store import EventStore

__all__ = ["REBUILD_SUFFIX", "fresh_schema_name", "rebuild", "replay_since"]

REBUILD_SUFFIX = ".rebuild"
"""Added to a projection's name for the checkpoint of its rebuild in progress."""


def fresh_schema_name(name: str) -> str:
    """The schema (PostgreSQL) or attached database (SQLite) a rebuild of ``name`` fills.

    Lower-case letters, digits and underscores, at most 59 characters (within
    PostgreSQL's 63), whatever the projection's name holds: a readable part
    of the name and a hash of all of it, so that two names never share one
    (``a.b`` and ``a_b``, or two long names with the same beginning).
    """
    readable = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:30]
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
    return f"conduit_rebuild_{readable}_{digest}" if readable else f"conduit_rebuild_{digest}"


def _check_rebuild_name(name: str) -> None:
    longest = MAX_NAME_LENGTH - len(REBUILD_SUFFIX)
    if len(name) > longest:
        raise InvalidArgument(
            f"projection {name[:40]!r}…: a rebuild keeps its checkpoint as the name and "
            f"{REBUILD_SUFFIX!r}, at most {MAX_NAME_LENGTH} characters: name it in at most "
            f"{longest}",
            field="name",
        )


def rebuild(
    store: EventStore,
    projection: SQLProjection,
    *,
    batch_size: int | None = None,
    partitions: int | None = None,
) -> int:
    """Rebuild a read model from the first event; readers never see it half built.

    The events are applied to fresh tables beside the live ones (a schema of
    their own on PostgreSQL, an attached file on SQLite) while the live read
    model keeps serving and updating. Once the fresh tables have caught up,
    one transaction replaces the live tables' content with theirs (re-creating
    the live tables, so a changed shape takes effect) and moves the live
    checkpoint; the live driver goes on from there. Returns the number of
    events read. The projection class must accept ``name=`` and
    ``schema_translate_map=`` in its constructor, as :class:`SQLProjection`
    does. The fresh schema's name comes from :func:`fresh_schema_name`, so
    any projection name works, quotes and spaces included.

    ``partitions``: the number of partitions the projection runs with from
    now on (see :mod:`conduit.subscriptions.partitions`); the swap replaces its
    checkpoints, of whatever number of partitions, with one per partition,
    each at the position the rebuild reached. ``None`` or 1: unpartitioned.
    This is how a projection changes its number of partitions.

    Raises:
        InvalidArgument: a SQLite read model in memory, or a projection name
            too long for the rebuild's checkpoint.
    """
    _check_rebuild_name(projection.name)
    count = 1 if partitions is None else check_count(partitions)
    if count > 1:
        projection.for_partition(Partition(count - 1, count))  # the key's length is checked
    _sync_only(projection, "rebuild")
    base = projection.engine.execution_options(schema_translate_map=HOME_MAP)
    dialect = base.dialect.name
    fresh_schema = fresh_schema_name(projection.name)
    quoted = base.dialect.identifier_preparer.quote_identifier(fresh_schema)
    if dialect == "sqlite":
        database = base.url.database
        if not database or database == ":memory:":
            raise InvalidArgument("rebuild needs a SQLite read model in a file")
        fresh_file = f"{database}.{fresh_schema[-12:]}{REBUILD_SUFFIX}"
        if os.path.exists(fresh_file):
            os.remove(fresh_file)
        engine = sa.create_engine(base.url).execution_options(schema_translate_map=HOME_MAP)

        @sa.event.listens_for(engine, "connect")
        def attach(dbapi_conn: Any, _: Any) -> None:
            dbapi_conn.execute(f"ATTACH DATABASE ? AS {quoted}", (fresh_file,))
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
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {quoted}")
    else:
        raise ProjectionError(f"rebuild does not support {dialect} read models yet")
    try:
        fresh = type(projection)(
            engine,
            name=f"{projection.name}{REBUILD_SUFFIX}",
            schema_translate_map={None: fresh_schema},
        )
        fresh.reset()
        runner = Runner(
            store._core,
            fresh,
            stopped=threading.Event(),
            batch_size=batch_size or projection.batch_size,
            mirror_checkpoint=False,
        )
        read = _catch_up_to(store, runner, fresh, store.head_position())
        # What was pushed during the first pass; the live driver applies what
        # comes later. Each pass has a target, so that a rebuild ends even
        # while events arrive faster than it applies them.
        read += _catch_up_to(store, runner, fresh, store.head_position())
        _swap(engine, projection, fresh, fresh_schema, count)
    finally:
        if dialect == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
        engine.dispose()
        if dialect == "sqlite" and os.path.exists(fresh_file):
            os.remove(fresh_file)
    return read


def _catch_up_to(store: EventStore, runner: Runner, fresh: SQLProjection, target: int) -> int:
    if fresh.load_checkpoint() >= target:
        return 0

    def below_target() -> Op[bool]:
        return ((yield from fresh.load_checkpoint_op()) or 0) < target

    return store._runtime.run(runner.catch_up(keep_going=below_target))


SWAP_ATTEMPTS = 20
"""How many times the swap's transaction runs before a lost deadlock is raised."""


def _swap(
    engine: sa.Engine,
    live: SQLProjection,
    fresh: SQLProjection,
    fresh_schema: str,
    partitions: int = 1,
) -> None:
    # The live driver keeps writing while the swap runs: its transaction holds
    # row locks on the tables its handlers wrote, in their order, and then
    # wants the next, which the swap may have locked already to drop it.
    # PostgreSQL ends such a deadlock by aborting one transaction; when that
    # is the swap, it runs again (it is all or nothing), once the driver's
    # batch has committed. A driver that loses retries its batch as an outage.
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            _swap_once(engine, live, fresh, fresh_schema, partitions)
            return
        except sa.exc.DBAPIError as exc:
            if attempt == SWAP_ATTEMPTS or not lost_a_race(exc):
                raise
            time.sleep(min(0.01 * 2**attempt, 1.0))


def _swap_once(
    engine: sa.Engine,
    live: SQLProjection,
    fresh: SQLProjection,
    fresh_schema: str,
    partitions: int,
) -> None:
    position = fresh.load_checkpoint()
    fresh_tables = sa.MetaData()
    with engine.begin() as conn:
        existing = [
            table
            for table in live.metadata.sorted_tables
            if sa.inspect(conn).has_table(table.name, schema=table.schema)
        ]
        if conn.dialect.name == "postgresql" and existing:
            # Every live table at once, before anything is dropped: a deadlock,
            # if any, aborts the swap before it has done work to undo.
            preparer = conn.dialect.identifier_preparer
            names = ", ".join(preparer.format_table(table) for table in existing)
            conn.exec_driver_sql(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
        live.metadata.drop_all(conn)
        live.metadata.create_all(conn)
        for table in live.metadata.sorted_tables:
            source = table.to_metadata(fresh_tables, schema=fresh_schema)
            conn.execute(table.insert().from_select(list(table.c.keys()), sa.select(*source.c)))
        conn.execute(CHECKPOINTS.delete().where(own_checkpoints(conn, live.name)))
        conn.execute(CHECKPOINTS.delete().where(CHECKPOINTS.c.name == fresh.name))
        keys = (
            [live.name]
            if partitions == 1
            else [Partition(index, partitions).key(live.name) for index in range(partitions)]
        )
        conn.execute(CHECKPOINTS.insert(), [{"name": key, "position": position} for key in keys])
        conn.execute(PARKED_APPLIED.delete().where(PARKED_APPLIED.c.name == live.name))


def replay_since(store: EventStore, projection: SQLProjection, since: datetime) -> int:
    """Move a read model's checkpoint back to just before the first event recorded at or
    after ``since``, so that its driver applies those events again.

    For a read model restored from a backup taken at ``since``. Returns the
    new checkpoint.
    """
    if since.tzinfo is None:
        raise InvalidArgument("since must be timezone-aware", field="since")
    engine = _sync_only(projection, "replay_since")
    first = store.backend.first_position_since(since)
    position = projection.load_checkpoint() if first is None else first - 1
    if first is None:
        position = min(
            [projection.load_checkpoint()]
            + [row[1] for row in _checkpoint_rows(engine, projection.name)]
        )
    with engine.begin() as conn:
        # Every partition's checkpoint too, when it runs partitioned.
        keys = [row[0] for row in _checkpoint_rows(engine, projection.name)] or [projection.name]
        conn.execute(CHECKPOINTS.delete().where(own_checkpoints(conn, projection.name)))
        conn.execute(CHECKPOINTS.insert(), [{"name": key, "position": position} for key in keys])
    projection.load_checkpoint()
    return position


def _checkpoint_rows(engine: sa.Engine, name: str) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(CHECKPOINTS.c.name, CHECKPOINTS.c.position).where(own_checkpoints(conn, name))
        )
        return [(str(key), int(position)) for key, position in found]


def _sync_only(projection: SQLProjection, what: str) -> sa.Engine:
    engine = projection.engine
    if isinstance(engine, AsyncEngine):
        raise InvalidArgument(
            f"{what} works on a read model's sync engine: give the projection "
            "sa.create_engine(...) of the same database for it",
            field="projection",
        )
    sync: sa.Engine = engine
    return sync
