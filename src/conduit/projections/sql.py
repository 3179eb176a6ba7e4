"""SQL read models: handlers that receive a session, checkpoint in the same transaction."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncEngine

from conduit.core.effects import AsyncRuntime, Call, Op, SyncRuntime
from conduit.errors import InvalidArgument
from conduit.events import Event
from conduit.projections.outages import is_outage
from conduit.projections.sqla import (
    AnyEngine,
    Execute,
    ExecuteDriver,
    Flush,
    InsertOnce,
    Transaction,
    Tx,
)
from conduit.subscriptions.dispatch import handlers_for
from conduit.subscriptions.partitions import PARTITION_PREFIX, Partition
from conduit.subscriptions.projector import CheckpointConflict, HandlerFailed

__all__ = [
    "CHECKPOINTS",
    "HOME_MAP",
    "MAX_NAME_LENGTH",
    "PARKED_APPLIED",
    "SQLProjection",
    "own_checkpoints",
]

MAX_NAME_LENGTH = 200
"""The longest projection name its read model's ``conduit_checkpoints`` can hold."""

# Conduit's own tables live in the read model's default schema, also while a
# rebuild translates the read model's tables to another: they carry this
# placeholder schema, which every engine of a projection maps to None.
HOME = "conduit_home"
HOME_MAP: dict[str | None, str | None] = {HOME: None}

_conduit_tables = sa.MetaData(schema=HOME)

CHECKPOINTS = sa.Table(
    "conduit_checkpoints",
    _conduit_tables,
    sa.Column("name", sa.String(MAX_NAME_LENGTH), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)
"""Each SQL projection's checkpoint, in its read-model database."""

PARKED_APPLIED = sa.Table(
    "conduit_parked_applied",
    _conduit_tables,
    sa.Column("name", sa.String(MAX_NAME_LENGTH), primary_key=True),
    sa.Column("event_id", sa.String(36), primary_key=True),
)
"""Parked events a retry has applied, so that a retry is applied once."""

_MOVE_CHECKPOINT = (
    CHECKPOINTS.update()
    .where(CHECKPOINTS.c.name == sa.bindparam("cp_name"))
    .where(CHECKPOINTS.c.position == sa.bindparam("cp_from"))
    .values(position=sa.bindparam("cp_to"))
)
"""The checkpoint's compare-and-set."""

_RELAX_COMMIT = sa.text("(SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL")
"""PostgreSQL: ``SET LOCAL synchronous_commit = off`` as a condition of the checkpoint's
update, so that it costs no round trip of its own. The uncorrelated sub-select is
evaluated once, before any row is updated (a one-time filter)."""


class SQLProjection:
    """A read model in a SQL database.

    Subclass it, name it, give it the SQLAlchemy ``MetaData`` of its tables, and
    write handlers ``on_<event name>(self, event, session)`` (or
    ``on_event``)::

        metadata = sa.MetaData()
        people = sa.Table("people", metadata, sa.Column("id", sa.String, primary_key=True),
                          sa.Column("first_name", sa.String))

        class People(SQLProjection):
            name = "people"
            metadata = metadata

            def on_person_registered(self, event, session):
                session.execute(people.insert().values(id=str(event.stream_id), **event.data))

        store.subscribe(People("sqlite:///read-model.db"), mode="background")

    Each batch of events (``batch_size``) is applied in one transaction with
    the checkpoint, so effects happen exactly once. An error that means the
    database is unreachable (:meth:`is_transient`: the connection refused or
    lost, the database locked or busy, the server shutting down) is retried
    until it is back; any other error from a handler (a missing table, a
    violated constraint, a bug) is retried, then parked.

    On PostgreSQL, a class attribute ``synchronous_commit = False`` commits
    each batch with ``synchronous_commit = off`` (for that transaction only):
    the commit returns before its WAL reaches the disk, which makes small
    batches cheaper. A crash of the database server or its machine may then
    lose the last batches committed; their rows and their checkpoint are lost
    together, so the projection applies those events again when it resumes,
    still exactly once, though readers may see the read model step back
    meanwhile. Off by default; other databases ignore it.
    """

    name: str
    """The projection's name: its subscription, checkpoint and lease."""
    metadata: ClassVar[sa.MetaData]
    batch_size: ClassVar[int] = 100
    transient_errors: tuple[type[BaseException], ...] = ()
    """Further error classes that mean the read model's storage is away (see
    :meth:`is_transient`), for a subclass whose handlers reach other services."""
    synchronous_commit: ClassVar[bool] = True
    """False: PostgreSQL commits without waiting for the disk (see above)."""
    _move_rendered: tuple[sa.Dialect, bool, str, tuple[str, ...]] | None = None

    def __init__(
        self,
        engine: AnyEngine | str,
        *,
        name: str | None = None,
        schema_translate_map: dict[str | None, str | None] | None = None,
    ) -> None:
        base: AnyEngine = sa.create_engine(engine) if isinstance(engine, str) else engine
        self.engine: Any = base.execution_options(
            schema_translate_map={**(schema_translate_map or {}), **HOME_MAP}
        )
        if name is not None:
            self.name = name
        if not getattr(self, "name", None):
            raise TypeError(f"{type(self).__name__} needs a name (a class attribute)")
        if not isinstance(self.name, str) or len(self.name) > MAX_NAME_LENGTH:
            raise InvalidArgument(
                f"a projection's name is a string of at most {MAX_NAME_LENGTH} characters",
                field="name",
            )
        if "\x00" in self.name:
            raise InvalidArgument("a projection's name cannot hold NUL characters", field="name")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.engine.url!r}>"

    @property
    def checkpoint_key(self) -> str:
        """The name its checkpoint row is kept under: its name, or a partition's key."""
        return self.__dict__.get("_checkpoint_key") or self.name

    def for_partition(self, partition: Partition) -> SQLProjection:
        """This read model as one partition of itself: its handlers and tables, with the
        partition's checkpoint (:meth:`Partition.key`).

        Raises:
            InvalidArgument: the partition's key is longer than the checkpoint table holds.
        """
        key = partition.key(self.name)
        if len(key) > MAX_NAME_LENGTH:
            raise InvalidArgument(
                f"projection {self.name[:40]!r}…: a partition keeps its checkpoint as "
                f"{key[: -len(self.name)]!r} and the name, at most {MAX_NAME_LENGTH} "
                "characters: give it a shorter name",
                field="name",
            )
        part = copy.copy(self)
        part.__dict__["_checkpoint_key"] = key
        part.__dict__["origin"] = self
        return part

    def checkpoint_names_op(self) -> Op[list[str]]:
        """The names of the checkpoints this read model keeps: its own, its partitions'."""
        query = sa.select(CHECKPOINTS.c.name).where(
            sa.or_(
                CHECKPOINTS.c.name == self.name,
                CHECKPOINTS.c.name.startswith(PARTITION_PREFIX, autoescape=True),
            )
        )

        def body(tx: Tx) -> Op[list[str]]:
            found: list[str] = yield Execute(query, "names")
            return found

        names: list[str] = yield Transaction(self.engine, body)
        return [n for n in names if n == self.name or _of(n) == self.name]

    # -- set-up --------------------------------------------------------------

    def setup(self) -> None:
        """Create the read model's tables and Conduit's checkpoint tables, if missing.

        For an ``AsyncEngine``: ``await projection.setup_async()``.
        """
        engine = self._sync_engine("setup")
        with engine.begin() as conn:
            _create(conn)(self.metadata)

    async def setup_async(self) -> None:
        """:meth:`setup`, awaited (an ``AsyncEngine``, or a sync one on a thread)."""
        await self._async_ddl(lambda conn: _create(conn)(self.metadata))

    def reset(self) -> None:
        """Drop and re-create the read model's tables and forget the checkpoint.

        For an ``AsyncEngine``: ``await projection.reset_async()``.
        """
        engine = self._sync_engine("reset")
        with engine.begin() as conn:
            self._reset(conn)

    async def reset_async(self) -> None:
        """:meth:`reset`, awaited."""
        await self._async_ddl(self._reset)

    def _reset(self, conn: sa.Connection) -> None:
        self.metadata.drop_all(conn)
        _create(conn)(self.metadata)
        conn.execute(CHECKPOINTS.delete().where(own_checkpoints(conn, self.name)))
        conn.execute(PARKED_APPLIED.delete().where(PARKED_APPLIED.c.name == self.name))

    def _sync_engine(self, what: str) -> sa.Engine:
        engine = self.engine
        if isinstance(engine, AsyncEngine):
            raise InvalidArgument(
                f"{type(self).__name__} has an AsyncEngine: await its {what}_async()",
                field="engine",
            )
        sync: sa.Engine = engine
        return sync

    async def _async_ddl(self, work: Callable[[sa.Connection], None]) -> None:
        engine = self.engine
        if isinstance(engine, AsyncEngine):
            async with engine.begin() as conn:
                await conn.run_sync(work)
            return

        def run() -> None:
            with engine.begin() as conn:
                work(conn)

        await asyncio.get_running_loop().run_in_executor(None, run)

    # -- the Projector role ----------------------------------------------------

    def is_transient(self, error: BaseException) -> bool:
        """True when ``error`` means the database is away: retry, never park.

        Asks the DBAPI error underneath (see :func:`conduit.projections.outages.is_outage`):
        SQLAlchemy's ``OperationalError`` alone does not tell a locked SQLite
        database from a missing table. Errors of ``transient_errors`` count too.
        """
        return isinstance(error, self.transient_errors) or is_outage(error)

    def load_checkpoint(self) -> int:
        """The position this read model is up to date with (0 when empty; sync engines)."""
        return SyncRuntime().run(self.load_checkpoint_op()) or 0

    async def load_checkpoint_async(self) -> int:
        """The position this read model is up to date with (0 when empty; any engine)."""
        return (await AsyncRuntime().run(self.load_checkpoint_op())) or 0

    def load_checkpoint_op(self) -> Op[int | None]:
        """The checkpoint kept in the read model (``None`` when it never ran)."""
        query = sa.select(CHECKPOINTS.c.position).where(CHECKPOINTS.c.name == self.checkpoint_key)

        def body(tx: Tx) -> Op[int | None]:
            found: int | None = yield Execute(query, "scalar")
            return found

        found: int | None = yield Transaction(self.engine, body)
        return found

    def apply_op(self, events: Sequence[Event], up_to: int, expected: int | None) -> Op[None]:
        """Apply a batch and move the checkpoint from ``expected``, in one transaction."""
        try:
            yield Transaction(self.engine, lambda tx: self._apply_in(tx, events, up_to, expected))
        except HandlerFailed as failure:
            # The transaction was rolled back: apply what came before the culprit.
            if failure.index:
                yield from self.apply_op(
                    events[: failure.index], events[failure.index - 1].position, expected
                )
            raise
        except CheckpointConflict:
            raise
        except sqlalchemy.exc.SQLAlchemyError as exc:
            if self.is_transient(exc):
                raise
            # Failed at flush or commit (a deferred constraint, say): find the culprit alone.
            if len(events) <= 1:
                raise HandlerFailed(0, exc) from exc
            known = expected
            for index, event in enumerate(events):
                try:
                    yield from self.apply_op([event], event.position, known)
                except HandlerFailed as failure:
                    raise HandlerFailed(index, failure.error) from exc
                known = event.position
            yield from self.apply_op([], up_to, known)

    def _apply_in(
        self, tx: Tx, events: Sequence[Event], up_to: int, expected: int | None
    ) -> Op[None]:
        for index, event in enumerate(events):
            try:
                for handler in handlers_for(self, event.name):
                    yield Call(handler, event, tx.session)
            except Exception as exc:
                if self.is_transient(exc):
                    raise
                raise HandlerFailed(index, exc) from exc
        yield Flush()
        yield from self._move_checkpoint(tx, up_to, expected)

    def _move_checkpoint(self, tx: Tx, position: int, known: int | None) -> Op[None]:
        if known is None:
            if self._relaxed(tx.dialect):
                yield ExecuteDriver("SET LOCAL synchronous_commit = off", ())
            inserted = yield InsertOnce(
                CHECKPOINTS.insert().values(name=self.checkpoint_key, position=position)
            )
            if not inserted:
                raise self._conflict()
        elif position != known:
            sql, order = self._move_sql(tx.dialect)
            values = {"cp_name": self.checkpoint_key, "cp_from": known, "cp_to": position}
            moved = yield ExecuteDriver(
                sql, tuple(values[key] for key in order) if order else values
            )
            if moved != 1:
                raise self._conflict()

    def _conflict(self) -> CheckpointConflict:
        return CheckpointConflict(
            f"projection {self.checkpoint_key!r}: another driver moved the checkpoint"
        )

    def _relaxed(self, dialect: sa.Dialect) -> bool:
        return not self.synchronous_commit and dialect.name == "postgresql"

    def _move_sql(self, dialect: sa.Dialect) -> tuple[str, tuple[str, ...]]:
        """The checkpoint's compare-and-set in the dialect's own SQL, rendered once.

        Sent with ``exec_driver_sql``: the statement SQLAlchemy would send
        (events, echo and errors are SQLAlchemy's), without going through
        its compiled cache for each batch. Returns the SQL and, for a
        positional paramstyle, the order of the parameters.
        """
        relaxed = self._relaxed(dialect)
        rendered = self._move_rendered
        if rendered is None or rendered[0] is not dialect or rendered[1] != relaxed:
            statement = _MOVE_CHECKPOINT.where(_RELAX_COMMIT) if relaxed else _MOVE_CHECKPOINT
            # HOME_MAP as every engine of a projection has it: the default
            # schema, by name (the dialect knows it once it has connected).
            compiled = statement.compile(
                dialect=dialect, schema_translate_map=HOME_MAP, render_schema_translate=True
            )
            order = tuple(compiled.positiontup or ()) if dialect.positional else ()
            rendered = self._move_rendered = (dialect, relaxed, compiled.string, order)
        return rendered[2], rendered[3]

    def apply_parked_op(self, event: Event) -> Op[None]:
        """Apply a parked event once: a marker row in the same transaction says it was."""
        done = sa.select(PARKED_APPLIED.c.event_id).where(
            PARKED_APPLIED.c.name == self.name,
            PARKED_APPLIED.c.event_id == str(event.id),
        )
        mark = PARKED_APPLIED.insert().values(name=self.name, event_id=str(event.id))

        def body(tx: Tx) -> Op[None]:
            if (yield Execute(done, "scalar")) is not None:
                return
            for handler in handlers_for(self, event.name):
                yield Call(handler, event, tx.session)
            yield Flush()
            yield Execute(mark)

        yield Transaction(self.engine, body)


def own_checkpoints(conn: sa.Connection, name: str) -> sa.ColumnElement[bool]:
    """The checkpoint rows of a projection, its own and its partitions' (any count): a
    condition on ``conduit_checkpoints`` naming each of them, looked up on ``conn``."""
    candidates = conn.execute(
        sa.select(CHECKPOINTS.c.name).where(
            CHECKPOINTS.c.name.startswith(PARTITION_PREFIX, autoescape=True),
            CHECKPOINTS.c.name.endswith(f"/{name}", autoescape=True),
        )
    ).scalars()
    keys = [name, *(key for key in candidates if _of(key) == name)]
    return CHECKPOINTS.c.name.in_(keys)


def _of(key: str) -> str | None:
    parsed = Partition.of_key(key)
    return None if parsed is None else parsed[0]


def _create(conn: sa.Connection) -> Callable[[sa.MetaData], None]:
    def create(metadata: sa.MetaData) -> None:
        metadata.create_all(conn)
        _conduit_tables.create_all(conn)

    return create
