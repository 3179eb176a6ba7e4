"""The PostgreSQL engine for ``EventStore``: its statements on psycopg's ConnectionPool.

This module only performs the effects of the engine's operations
(:mod:`conduit.backends.postgres.engine`): it holds the pool, the session of
the engine's leases, and the thread that LISTENs for appends.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
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
from conduit.core.bound import SyncBound
from conduit.core.effects import SyncRuntime
from conduit.errors import BackendError, ConduitError

__all__ = ["PostgresBackend", "SyncExecutor"]

log = logging.getLogger("conduit.postgres")


class _Connection(psycopg.Connection[Any]):
    """A pooled connection that keeps one cursor for the engine's small statements.

    ``Connection.execute`` builds a new cursor for every statement; reusing one
    saves 10-20 us of client CPU per append, a tenth of what a push costs the
    client. Results come in binary format, a few microseconds less per append
    and per page read; every statement therefore casts JSON columns to
    ``text`` (binary ``json`` would be parsed into dicts).
    """

    _kept: psycopg.Cursor[Any] | None = None

    def perform(self, query: Query) -> Any:
        """Run a statement and return what ``query.fetch`` asks for."""
        if not query.binary:
            cursor: psycopg.Cursor[Any] = self.execute(query.sql, query.params)
        elif query.fresh:
            # Pages of events and snapshots: a kept cursor would hold them in
            # every idle pooled connection (events of up to 16 MiB each).
            cursor = self.cursor(binary=True)
            cursor.execute(query.sql, query.params)
        else:
            cursor = self._kept  # type: ignore[assignment]
            if cursor is None or cursor.closed:
                cursor = self._kept = self.cursor(binary=True)
            cursor.execute(query.sql, query.params)
        fetch = query.fetch
        if fetch == "one":
            return cursor.fetchone()
        if fetch == "all":
            return cursor.fetchall()
        if fetch == "rowcount":
            return cursor.rowcount
        return None


class _Pool(psycopg_pool.ConnectionPool[Any]):
    """psycopg's pool, reconnecting after an outage without long backoffs (QuickBackoff)."""

    def _add_connection(self, attempt: Any, growing: bool = False) -> None:
        if attempt is None:
            attempt = QuickBackoff(timeout=self.reconnect_timeout)
        super()._add_connection(attempt, growing)


class SyncExecutor:
    """Performs a PostgreSQL engine's effects by blocking the calling thread."""

    def __init__(self, engine: PostgresEngine) -> None:
        self.engine = engine
        config = engine.config
        self.config = config
        self._settings = config.session_settings()
        self.pool = _Pool(
            config.conninfo,
            min_size=min(2, config.pool_size),
            max_size=config.pool_size,
            kwargs={"autocommit": True},
            connection_class=_Connection,
            configure=self._configure,
            timeout=config.pool_timeout,
            open=False,
            name=f"conduit-{config.schema}",
        )
        self.pool.open(wait=False)
        self._replicas: dict[int, psycopg_pool.ConnectionPool[Any]] = {}
        self._replicas_lock = threading.Lock()
        self._in_use = 0  # connections of the primary's pool taken: is it full?
        self._in_use_lock = threading.Lock()
        self.runtime = SyncRuntime({Query: self.query, Atomic: self.atomic, Session: self.session})
        self._session: psycopg.Connection[Any] | None = None
        self._session_lock = threading.Lock()
        self._wakers: set[threading.Event] = set()
        self._wakers_lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._closing = threading.Event()

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(self._settings)

    # -- statements ------------------------------------------------------------

    def query(self, query: Query) -> Any:
        """Run one statement on a pooled connection, translating driver errors.

        A connection found broken (the server restarted) is replaced, along
        with the idle ones that died with it, and the statement tried once
        more: every operation is safe to repeat, appends included, since a
        retried batch carries the same event ids.
        """
        if query.check and not self.engine.ready:
            self.runtime.run(self.engine.check_schema())
        if query.replica is not None:
            return self._on_replica(query, query.replica)
        pool = self.pool
        for attempt in (1, 2):
            conn: _Connection | None = None
            try:
                # getconn/putconn rather than the pool's context manager, whose
                # commit() on the way out is a round of locking and waiting for
                # nothing: every statement here autocommits, and a transaction
                # block left open by an error is rolled back by putconn.
                conn = pool.getconn()
                assert conn is not None
                self._taken(1)
                try:
                    return conn.perform(query)
                finally:
                    self._taken(-1)
                    pool.putconn(conn)
            except psycopg_pool.PoolTimeout as exc:
                raise self._why_no_connection(exc) from exc
            except psycopg_pool.PoolClosed as exc:
                raise BackendError("this store is closed") from exc
            except psycopg.Error as exc:
                broken = conn is not None and conn.broken
                decision = after_failure(exc, query, broken=broken, attempt=attempt)
                if decision == "expected":
                    raise
                if decision == "retry":
                    log.warning("PostgreSQL connection lost (%s); retrying once", exc)
                    pool.check()
                    continue
                raise translate(
                    exc, self.config.schema, self.config.conninfo, broken=broken
                ) from exc
        raise AssertionError("unreachable")

    def _on_replica(self, query: Query, index: int) -> Any:
        """Run a read on a replica; one that cannot answer raises ReplicaUnavailable."""
        pool = self._replica_pool(index)
        conn: _Connection | None = None
        try:
            conn = pool.getconn()
            assert conn is not None
            try:
                return conn.perform(query)
            finally:
                pool.putconn(conn)
        except psycopg_pool.PoolTimeout as exc:
            raise ReplicaUnavailable(index, f"no connection in time ({exc})") from exc
        except psycopg_pool.PoolClosed as exc:
            raise BackendError("this store is closed") from exc
        except psycopg.Error as exc:
            if replica_failed(exc, broken=conn is not None and conn.broken):
                raise ReplicaUnavailable(index, str(exc)) from exc
            raise translate(exc, self.config.schema, self.config.replicas[index]) from exc

    def _replica_pool(self, index: int) -> psycopg_pool.ConnectionPool[Any]:
        """The pool of a replica, opened on its first read."""
        with self._replicas_lock:
            pool = self._replicas.get(index)
            if pool is None:
                if self._closing.is_set():
                    raise BackendError("this store is closed")
                pool = self._replicas[index] = _Pool(
                    self.config.replicas[index],
                    **replica_pool_options(self.config, index),
                    connection_class=_Connection,
                    configure=self._configure,
                    open=False,
                )
                pool.open(wait=False)
            return pool

    def atomic(self, atomic: Atomic) -> Any:
        """Run an operation's statements in one transaction on one connection."""
        try:
            with self.pool.connection() as conn, self._holding():
                assert isinstance(conn, _Connection)

                def query(query: Query) -> Any:
                    try:
                        return conn.perform(query)
                    except psycopg.Error as exc:
                        if after_failure(exc, query, broken=False, attempt=2) == "expected":
                            raise
                        raise translate(exc, self.config.schema, self.config.conninfo) from exc

                with conn.transaction():
                    return self.runtime.extended({Query: query}).run(atomic.op)
        except psycopg_pool.PoolTimeout as exc:
            raise self._why_no_connection(exc) from exc
        except psycopg_pool.PoolClosed as exc:
            raise BackendError("this store is closed") from exc
        except ConduitError:
            raise
        except psycopg.Error as exc:
            raise translate(exc, self.config.schema, self.config.conninfo) from exc

    def session(self, effect: Session) -> Any:
        """Run a statement on the session holding the engine's leases (opened on first use)."""
        with self._session_lock:
            try:
                conn = self._session
                if conn is None or conn.closed or conn.broken:
                    self._drop_session()
                    conn = self._session = psycopg.connect(
                        self.config.conninfo, autocommit=True, connect_timeout=10
                    )
                return conn.execute(effect.sql, effect.params).fetchone()
            except psycopg.Error as exc:
                self._drop_session()
                raise SessionLost(str(exc)) from exc

    def _drop_session(self) -> None:
        conn, self._session = self._session, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()  # ending the session releases its advisory locks
            self.engine.lost_session()

    def _taken(self, count: int) -> None:
        with self._in_use_lock:
            self._in_use += count

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        self._taken(1)
        try:
            yield
        finally:
            self._taken(-1)

    def _why_no_connection(self, timeout: Exception) -> BackendError:
        """The pool only says it timed out: ask the server directly for the cause."""
        failed: Exception | None = None
        try:
            psycopg.connect(self.config.conninfo, connect_timeout=3).close()
        except psycopg.Error as exc:
            failed = exc
        return no_connection(
            self.config.conninfo, self.config.pool_size, timeout, failed, in_use=self._in_use
        )

    # -- wake-ups ----------------------------------------------------------------

    def add_waker(self, wake: threading.Event) -> None:
        """Set ``wake`` whenever an append NOTIFYs (stores opened with ``notify=True``).

        A thread LISTENs on the schema's channel while any waker is registered;
        it is only a hint: drivers poll as well.
        """
        with self._wakers_lock:
            self._wakers.add(wake)
            if self._listener is None:
                self._listener = threading.Thread(
                    target=self._listen, name=f"conduit-listen-{self.config.schema}", daemon=True
                )
                self._listener.start()

    def remove_waker(self, wake: threading.Event) -> None:
        """Stop setting ``wake``."""
        with self._wakers_lock:
            self._wakers.discard(wake)

    def _listen(self) -> None:
        listen = f"LISTEN {quote_ident(channel(self.config.schema))}"
        while not self._closing.is_set():
            try:
                with psycopg.connect(
                    self.config.conninfo, autocommit=True, connect_timeout=10
                ) as conn:
                    conn.execute(listen)
                    while not self._closing.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            with self._wakers_lock:
                                wakers = list(self._wakers)
                            for wake in wakers:
                                wake.set()
            except psycopg.Error:
                self._closing.wait(1.0)  # the server is away: try again, polling meanwhile

    def close(self) -> None:
        """Release the pool, the lease session and the listener."""
        self._closing.set()
        with self._session_lock:
            self._drop_session()
        self.pool.close()
        with self._replicas_lock:
            replicas = list(self._replicas.values())
        for pool in replicas:
            pool.close()


class PostgresBackend(SyncBound):
    """Events in a PostgreSQL schema, for ``EventStore``: the engine's operations
    run on a connection pool, called as plain methods.

    Args:
        url: ``postgresql://user@host:port/database``; Conduit's own options may
            also be given in its query string (``?schema=app&pool_size=20``).
        schema: the PostgreSQL schema holding the store's tables, so that
            several applications can share one database (default ``conduit``).
        pool_size: the most connections the store opens at once.
        statement_timeout: seconds after which the server cancels a statement.
        lock_timeout: seconds an append waits for its stream's lock.
        read_your_writes_timeout: seconds a global-log read waits for the
            server's reader horizon to pass this store's own last push.
        pool_timeout: seconds to wait for a connection from the pool (and so
            for an unreachable server) before raising ``StoreUnavailable``.
        replicas: read replicas (hot standbys of the primary), as URLs or as
            ``host:port`` taking the rest of ``url``; also ``replica=`` in the
            URL's query string, repeated. Reads go to them, writes never (see
            docs/postgresql.md, read replicas).
        replica_timeout: seconds a read waits for a replica's connection before
            it goes to another replica, or to the primary.
        notify: announce each append with ``NOTIFY`` (a wake-up hint for
            workers; see docs/postgresql.md for its cost).
        group_commit: combine concurrent appends of this process into one
            transaction (see docs/postgresql.md).

    Raises:
        ConfigurationError: a malformed option.
    """

    scheme = "postgresql"
    leases_expire = False
    """Leases are session advisory locks: they end with the holder's session, not by ttl."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int | None = None,
        statement_timeout: float | None = None,
        lock_timeout: float | None = None,
        read_your_writes_timeout: float | None = None,
        notify: bool | None = None,
        pool_timeout: float | None = None,
        group_commit: bool | None = None,
        replicas: Sequence[str] | None = None,
        replica_timeout: float | None = None,
    ) -> None:
        config = PostgresConfig.of(
            url,
            schema=schema,
            pool_size=pool_size,
            statement_timeout=statement_timeout,
            lock_timeout=lock_timeout,
            read_your_writes_timeout=read_your_writes_timeout,
            notify=notify,
            pool_timeout=pool_timeout,
            group_commit=group_commit,
            replicas=replicas,
            replica_timeout=replica_timeout,
        )
        engine = PostgresEngine(config)
        self.executor = SyncExecutor(engine)
        super().__init__(engine, self.executor.runtime)

    def __repr__(self) -> str:
        return f"<PostgresBackend schema={self.engine.schema!r}>"

    @property
    def schema(self) -> str:
        """The PostgreSQL schema of the store's tables."""
        schema: str = self.engine.schema
        return schema

    @property
    def announces(self) -> bool:
        """Whether this store LISTENs for appends (``notify=True``)."""
        notify: bool = self.engine.config.notify
        return notify

    def add_waker(self, wake: threading.Event) -> None:
        """See :meth:`SyncExecutor.add_waker`."""
        self.executor.add_waker(wake)

    def remove_waker(self, wake: threading.Event) -> None:
        """See :meth:`SyncExecutor.remove_waker`."""
        self.executor.remove_waker(wake)

    def close(self) -> None:
        """Release connections. The engine is unusable afterwards."""
        self.executor.close()
