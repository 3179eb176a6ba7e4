"""SQLAlchemy's side of SQL read models: a transaction and its statements, as effects.

A :class:`~conduit.projections.sql.SQLProjection` says what to do in a
transaction of its read-model database — call the handlers with a session, run
the checkpoint's compare-and-set — as an operation (:mod:`conduit.core.effects`).
:class:`Transaction` performs it, on whichever engine the projection has:

- a sync ``Engine``: in the calling thread under ``EventStore``; on a thread
  of the default executor under ``AsyncEventStore`` (so that its handlers,
  which receive a ``Session``, never block the event loop);
- an ``AsyncEngine`` (``create_async_engine``): awaited, its handlers receiving
  an ``AsyncSession`` (and they may be ``async def``).

The statements inside (:class:`Execute`, :class:`ExecuteDriver`,
:class:`InsertOnce`, :class:`Flush`) are performed on the transaction's own
connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from conduit.core.effects import AsyncRuntime, Effect, Op, Performed, SyncRuntime

__all__ = [
    "AnyEngine",
    "Execute",
    "ExecuteDriver",
    "Flush",
    "InsertOnce",
    "Transaction",
    "Tx",
    "dialect_of",
]

AnyEngine = sa.Engine | AsyncEngine


def dialect_of(engine: AnyEngine) -> sa.Dialect:
    """The engine's dialect (an ``AsyncEngine``'s is its sync engine's)."""
    return engine.dialect


class Tx:
    """The open transaction an operation runs in: its connection's dialect, and the
    session its handlers receive (a ``Session`` or an ``AsyncSession``)."""

    __slots__ = ("dialect", "session")

    def __init__(self, dialect: sa.Dialect, session: Any) -> None:
        self.dialect = dialect
        self.session = session


class Execute(Effect):
    """A SQLAlchemy statement on the transaction's connection; returns the rows it
    touched (``"rowcount"``), its one scalar (``"scalar"``), or the first column of
    every row, as a list (``"names"``)."""

    __slots__ = ("fetch", "statement")

    def __init__(self, statement: sa.Executable, fetch: str = "rowcount") -> None:
        self.statement = statement
        self.fetch = fetch


class ExecuteDriver(Effect):
    """SQL text in the dialect's own paramstyle (``exec_driver_sql``); returns the
    rows it touched."""

    __slots__ = ("params", "sql")

    def __init__(self, sql: str, params: Any) -> None:
        self.sql = sql
        self.params = params


class InsertOnce(Effect):
    """An insert inside a savepoint: True, or False when it broke a unique constraint
    (the savepoint rolled back, the transaction goes on)."""

    __slots__ = ("statement",)

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement


class Flush(Effect):
    """Flush the session (its pending ORM changes reach the database)."""

    __slots__ = ()


class Transaction(Performed):
    """Run ``body(tx)`` in one transaction of ``engine``: committed when it returns,
    rolled back when it raises."""

    __slots__ = ("body", "engine")

    def __init__(self, engine: AnyEngine, body: Callable[[Tx], Op[Any]]) -> None:
        self.engine = engine
        self.body = body

    def perform(self) -> Any:
        engine = self.engine
        if isinstance(engine, AsyncEngine):
            raise TypeError("an AsyncEngine read model runs under AsyncEventStore")
        # The session joins the connection's transaction, which this effect
        # owns: it commits (rows and checkpoint) or rolls back here, whatever a
        # handler asks of the session.
        with (
            engine.connect() as conn,
            conn.begin(),
            Session(bind=conn, join_transaction_mode="rollback_only") as session,
        ):
            tx = Tx(conn.dialect, session)
            return SyncRuntime(_sync_statements(conn, session)).run(self.body(tx))

    async def aperform(self) -> Any:
        engine = self.engine
        if not isinstance(engine, AsyncEngine):
            # A sync engine under asyncio: its blocking work on a thread.
            return await asyncio.get_running_loop().run_in_executor(None, self.perform)
        async with (
            engine.connect() as conn,
            conn.begin(),
            AsyncSession(bind=conn, join_transaction_mode="rollback_only") as session,
        ):
            tx = Tx(conn.dialect, session)
            return await AsyncRuntime(_async_statements(conn, session)).run(self.body(tx))


def _fetched(effect: Execute, result: Any) -> Any:
    if effect.fetch == "scalar":
        return result.scalar_one_or_none()
    if effect.fetch == "names":
        return list(result.scalars())
    return result.rowcount


def _sync_statements(conn: sa.Connection, session: Session) -> dict[type[Effect], Any]:
    def execute(effect: Execute) -> Any:
        return _fetched(effect, conn.execute(effect.statement))

    def execute_driver(effect: ExecuteDriver) -> int:
        return conn.exec_driver_sql(effect.sql, effect.params).rowcount

    def insert_once(effect: InsertOnce) -> bool:
        try:
            with conn.begin_nested():
                conn.execute(effect.statement)
        except sqlalchemy.exc.IntegrityError:
            return False
        return True

    def flush(_: Flush) -> None:
        session.flush()

    return {Execute: execute, ExecuteDriver: execute_driver, InsertOnce: insert_once, Flush: flush}


def _async_statements(conn: AsyncConnection, session: AsyncSession) -> dict[type[Effect], Any]:
    async def execute(effect: Execute) -> Any:
        return _fetched(effect, await conn.execute(effect.statement))

    async def execute_driver(effect: ExecuteDriver) -> int:
        result = await conn.exec_driver_sql(effect.sql, effect.params)
        return result.rowcount

    async def insert_once(effect: InsertOnce) -> bool:
        try:
            async with conn.begin_nested():
                await conn.execute(effect.statement)
        except sqlalchemy.exc.IntegrityError:
            return False
        return True

    async def flush(_: Flush) -> None:
        await session.flush()

    return {Execute: execute, ExecuteDriver: execute_driver, InsertOnce: insert_once, Flush: flush}
