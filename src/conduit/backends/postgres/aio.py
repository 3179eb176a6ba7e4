"""The PostgreSQL engine for ``AsyncEventStore``: its statements on psycopg's
AsyncConnectionPool.

The same operations as ``EventStore``'s (:mod:`conduit.backends.postgres.engine`);
this module only performs their effects with psycopg's async connections: the
pool, the session of the engine's leases, and the task that LISTENs for appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
import psycopg_pool

from conduit.backends.postgres.config import PostgresConfig, replica_pool_options
from conduit.backends.postgres.effects import (
    Atomic,
    Query,
    ReplicaUnavailable,
    Session,
    SessionLost,
)
from conduit.backends.postgres.engine import PostgresEngine
from conduit.backends.postgres.errors import translate
from conduit.backends.postgres.policy import (
    QuickBackoff,
    after_failure,
    no_connection,
    replica_failed,
)
from conduit.backends.postgres.sql import channel, quote_ident
from conduit.core.bound import AsyncBound
from conduit.core.effects import AsyncRuntime
from conduit.errors import BackendError, ConduitError

__all__ = ["AsyncExecutor", "AsyncPostgresBackend"]

log = logging.getLogger("conduit.postgres")


class _AsyncConnection(psycopg.AsyncConnection[Any]):
    """A pooled async connection keeping one cursor for small statements (see the sync
    engine's ``_Connection`` for why)."""

    _kept: psycopg.AsyncCursor[Any] | None = None

    async def perform(self, query: Query) -> Any:
        """Run a statement and return what ``query.fetch`` asks for."""
        if not query.binary:
            cursor: psycopg.AsyncCursor[Any] = await self.execute(query.sql, query.params)
        elif query.fresh:
            cursor = self.cursor(binary=True)
            await cursor.execute(query.sql, query.params)
        else:
            kept = self._kept
            if kept is None or kept.closed:
                kept = self._kept = self.cursor(binary=True)
            cursor = kept
            await cursor.execute(query.sql, query.params)
        fetch = query.fetch
        if fetch == "one":
            return await cursor.fetchone()
        if fetch == "all":
            return await cursor.fetchall()
        if fetch == "rowcount":
            return cursor.rowcount
        return None


class _AsyncPool(psycopg_pool.AsyncConnectionPool[Any]):
    """psycopg's async pool, reconnecting after an outage without long backoffs."""

    async def _add_connection(self, attempt: Any, growing: bool = False) -> None:
        if attempt is None:
            attempt = QuickBackoff(timeout=self.reconnect_timeout)
        await super()._add_connection(attempt, growing)


class AsyncExecutor:
    """Performs a PostgreSQL engine's effects as coroutines."""

    def __init__(self, engine: PostgresEngine) -> None:
        self.engine = engine
        config = engine.config
        self.config = config
        self._settings = config.session_settings()
        self.pool = _AsyncPool(
            config.conninfo,
            min_size=min(2, config.pool_size),
            max_size=config.pool_size,
            kwargs={"autocommit": True},
            connection_class=_AsyncConnection,
            configure=self._configure,
            timeout=config.pool_timeout,
            open=False,
            name=f"conduit-async-{config.schema}",
        )
        self._replicas: dict[int, psycopg_pool.AsyncConnectionPool[Any]] = {}
        self._in_use = 0  # connections of the primary's pool taken: is it full?
        self.runtime = AsyncRuntime({Query: self.query, Atomic: self.atomic, Session: self.session})
        self._session: psycopg.AsyncConnection[Any] | None = None
        self._session_lock = asyncio.Lock()
        self._wakers: set[asyncio.Event] = set()
        self._listener: asyncio.Task[None] | None = None
        self._opened = False
        self._closing = False

    async def open(self) -> None:
        """Open the pool (without waiting for its connections)."""
        if not self._opened:
            await self.pool.open(wait=False)
            self._opened = True

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(self._settings)

    # -- statements ------------------------------------------------------------

    async def query(self, query: Query) -> Any:
        """Run one statement on a pooled connection, translating driver errors (a
        broken connection is replaced and the statement tried once more)."""
        if query.check and not self.engine.ready:
            await self.runtime.run(self.engine.check_schema())
        if not self._opened:
            await self.open()
        if query.replica is not None:
            return await self._on_replica(query, query.replica)
        pool = self.pool
        for attempt in (1, 2):
            conn: _AsyncConnection | None = None
            try:
                conn = await pool.getconn()
                assert conn is not None
                self._in_use += 1
                try:
                    return await conn.perform(query)
                finally:
                    self._in_use -= 1
                    await pool.putconn(conn)
            except psycopg_pool.PoolTimeout as exc:
                raise await self._why_no_connection(exc) from exc
            except psycopg_pool.PoolClosed as exc:
                raise BackendError("this store is closed") from exc
            except psycopg.Error as exc:
                broken = conn is not None and conn.broken
                decision = after_failure(exc, query, broken=broken, attempt=attempt)
                if decision == "expected":
                    raise
                if decision == "retry":
                    log.warning("PostgreSQL connection lost (%s); retrying once", exc)
                    await pool.check()
                    continue
                raise translate(
                    exc, self.config.schema, self.config.conninfo, broken=broken
                ) from exc
        raise AssertionError("unreachable")

    async def _on_replica(self, query: Query, index: int) -> Any:
        """Run a read on a replica; one that cannot answer raises ReplicaUnavailable."""
        pool = await self._replica_pool(index)
        conn: _AsyncConnection | None = None
        try:
            conn = await pool.getconn()
            assert conn is not None
            try:
                return await conn.perform(query)
            finally:
                await pool.putconn(conn)
        except psycopg_pool.PoolTimeout as exc:
            raise ReplicaUnavailable(index, f"no connection in time ({exc})") from exc
        except psycopg_pool.PoolClosed as exc:
            raise BackendError("this store is closed") from exc
        except psycopg.Error as exc:
            if replica_failed(exc, broken=conn is not None and conn.broken):
                raise ReplicaUnavailable(index, str(exc)) from exc
            raise translate(exc, self.config.schema, self.config.replicas[index]) from exc

    async def _replica_pool(self, index: int) -> psycopg_pool.AsyncConnectionPool[Any]:
        """The pool of a replica, opened on its first read."""
        pool = self._replicas.get(index)
        if pool is None:
            if self._closing:
                raise BackendError("this store is closed")
            pool = self._replicas[index] = _AsyncPool(
                self.config.replicas[index],
                **replica_pool_options(self.config, index),
                connection_class=_AsyncConnection,
                configure=self._configure,
                open=False,
            )
            await pool.open(wait=False)
        return pool

    async def atomic(self, atomic: Atomic) -> Any:
        """Run an operation's statements in one transaction on one connection."""
        if not self._opened:
            await self.open()
        try:
            async with self.pool.connection() as conn:
                assert isinstance(conn, _AsyncConnection)
                self._in_use += 1

                async def query(query: Query) -> Any:
                    try:
                        return await conn.perform(query)
                    except psycopg.Error as exc:
                        if after_failure(exc, query, broken=False, attempt=2) == "expected":
                            raise
                        raise translate(exc, self.config.schema, self.config.conninfo) from exc

                try:
                    async with conn.transaction():
                        return await self.runtime.extended({Query: query}).run(atomic.op)
                finally:
                    self._in_use -= 1
        except psycopg_pool.PoolTimeout as exc:
            raise await self._why_no_connection(exc) from exc
        except psycopg_pool.PoolClosed as exc:
            raise BackendError("this store is closed") from exc
        except ConduitError:
            raise
        except psycopg.Error as exc:
            raise translate(exc, self.config.schema, self.config.conninfo) from exc

    async def session(self, effect: Session) -> Any:
        """Run a statement on the session holding the engine's leases (opened on first use)."""
        async with self._session_lock:
            try:
                conn = self._session
                if conn is None or conn.closed or conn.broken:
                    await self._drop_session()
                    conn = self._session = await psycopg.AsyncConnection.connect(
                        self.config.conninfo, autocommit=True, connect_timeout=10
                    )
                cursor = await conn.execute(effect.sql, effect.params)
                return await cursor.fetchone()
            except psycopg.Error as exc:
                await self._drop_session()
                raise SessionLost(str(exc)) from exc

    async def _drop_session(self) -> None:
        conn, self._session = self._session, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()  # ending the session releases its advisory locks
            self.engine.lost_session()

    async def _why_no_connection(self, timeout: Exception) -> BackendError:
        """The pool only says it timed out: ask the server directly for the cause."""
        failed: Exception | None = None
        try:
            conn = await psycopg.AsyncConnection.connect(self.config.conninfo, connect_timeout=3)
            await conn.close()
        except psycopg.Error as exc:
            failed = exc
        return no_connection(
            self.config.conninfo, self.config.pool_size, timeout, failed, in_use=self._in_use
        )

    # -- wake-ups ----------------------------------------------------------------

    def add_waker(self, wake: asyncio.Event) -> None:
        """Set ``wake`` whenever an append NOTIFYs (a task LISTENs while any is registered)."""
        self._wakers.add(wake)
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    def remove_waker(self, wake: asyncio.Event) -> None:
        """Stop setting ``wake``."""
        self._wakers.discard(wake)

    async def _listen(self) -> None:
        listen = f"LISTEN {quote_ident(channel(self.config.schema))}"
        while not self._closing:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.config.conninfo, autocommit=True, connect_timeout=10
                )
                async with conn:
                    await conn.execute(listen)
                    while not self._closing:
                        async for _ in conn.notifies(timeout=0.5):
                            for wake in list(self._wakers):
                                wake.set()
            except psycopg.Error:
                await asyncio.sleep(1.0)  # the server is away: try again, polling meanwhile

    async def close(self) -> None:
        """Release the pool, the lease session and the listener."""
        self._closing = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await listener
        async with self._session_lock:
            await self._drop_session()
        await self.pool.close()
        replicas, self._replicas = list(self._replicas.values()), {}
        for pool in replicas:
            await pool.close()


class AsyncPostgresBackend(AsyncBound):
    """Events in a PostgreSQL schema, for ``AsyncEventStore``: the engine's operations
    as coroutines on an async connection pool. Takes the options of
    :class:`~conduit.backends.postgres.sync.PostgresBackend`."""

    scheme = "postgresql"
    leases_expire = False

    def __init__(self, url: str, **options: Any) -> None:
        self._bind(PostgresEngine(PostgresConfig.of(url, **options)))

    @classmethod
    def sharing(cls, engine: PostgresEngine) -> AsyncPostgresBackend:
        """An async backend over ``engine``, the engine of a ``PostgresBackend`` of the
        same store (``EventStore(url).backend.engine``): an async face of that store.

        Its statements run on a pool of its own; the engine's record of the store's
        own pushes is shared, so that reads through either face wait for the pushes
        of both, as the reads of one store do. The engine's record of the leases it
        holds is shared too: take leases (background and worker subscriptions)
        through one of the two faces only.
        """
        backend = cls.__new__(cls)
        backend._bind(engine)
        return backend

    def _bind(self, engine: PostgresEngine) -> None:
        self.executor = AsyncExecutor(engine)
        super().__init__(engine, self.executor.runtime)

    def __repr__(self) -> str:
        return f"<AsyncPostgresBackend schema={self.engine.schema!r}>"

    @property
    def announces(self) -> bool:
        """Whether this store LISTENs for appends (``notify=True``)."""
        notify: bool = self.engine.config.notify
        return notify

    def add_waker(self, wake: asyncio.Event) -> None:
        """See :meth:`AsyncExecutor.add_waker`."""
        self.executor.add_waker(wake)

    def remove_waker(self, wake: asyncio.Event) -> None:
        """See :meth:`AsyncExecutor.remove_waker`."""
        self.executor.remove_waker(wake)

    async def open(self) -> None:
        """Open the connection pool."""
        await self.executor.open()

    async def close(self) -> None:
        """Release connections. The engine is unusable afterwards."""
        await self.executor.close()
