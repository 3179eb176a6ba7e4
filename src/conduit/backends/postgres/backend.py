"""The PostgreSQL engine, on psycopg 3 and psycopg_pool.

Writers to different streams never wait for each other; the global log stays
gap-free without serializing them (docs/design.md §3.3, docs/postgresql.md):

- an append is one call of the schema's ``append_event`` (one event) or
  ``append_batch`` function, in one autocommitted statement: it takes the
  stream's transaction-scoped advisory lock before anything gives the
  transaction an id, checks the expected version, then inserts; an event's
  position is ``(transaction id << 20) | ordinal``;
- a reader of the global log returns only positions below the oldest
  transaction still running (``pg_snapshot_xmin(pg_current_snapshot())``), so
  nothing can commit behind it later;
- right after a push, the same engine waits (bounded) for that horizon to pass
  its own last transaction, so that a caller reads its own writes.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.errors
import psycopg_pool

from conduit import codec
from conduit.backends.base import EventRewrite
from conduit.backends.common import StreamIds, resolve_retry
from conduit.backends.postgres.sql import SCHEMA_VERSION, Statements, channel, migrations
from conduit.backends.postgres.subscriptions import PostgresSubscriptions
from conduit.backends.url import mask_password
from conduit.errors import (
    BackendError,
    ConduitError,
    ConfigurationError,
    SchemaError,
    WrongExpectedVersion,
)
from conduit.events import (
    Event,
    NewEvent,
    Snapshot,
    StreamInfo,
    StreamKey,
    make_event,
    uuid_from_text,
)

__all__ = ["PostgresBackend"]

log = logging.getLogger("conduit.postgres")

T = TypeVar("T")

_WRONG_VERSION = "CD409"  # raised by the append functions, with the actual version as detail
_UNIQUE_VIOLATION = "23505"  # an event id already recorded

_OPTIONS = {
    "schema": str,
    "pool_size": int,
    "statement_timeout": float,
    "lock_timeout": float,
    "read_your_writes_timeout": float,
    "pool_timeout": float,
    "notify": lambda text: text.lower() in ("1", "true", "yes", "on"),
}


class _Connection(psycopg.Connection[Any]):
    """A pooled connection that keeps one cursor for the engine's small statements.

    ``Connection.execute`` builds a new cursor for every statement; reusing one
    saves 10-20 us of client CPU per append, a tenth of what a push costs the
    client. Results come in binary format (:meth:`run` and :meth:`read`), a few
    microseconds less per append and per page read; every statement therefore
    casts JSON columns to ``text`` (binary ``json`` would be parsed into dicts).
    """

    _cursor: psycopg.Cursor[Any] | None = None

    def run(self, query: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        """Execute a statement whose result is small on the kept cursor, and return it.

        The cursor keeps its last result until the next statement: statements
        that may return many or large rows use :meth:`read` instead.
        """
        cursor = self._cursor
        if cursor is None or cursor.closed:
            cursor = self._cursor = self.cursor(binary=True)
        return cursor.execute(query, params)

    def read(self, query: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        """Execute a statement on a fresh cursor, whose rows go when it does.

        For pages of events and snapshots: a kept cursor would hold them in
        every idle pooled connection (events of up to 16 MiB each). A cursor
        costs a few microseconds, nothing beside a page.
        """
        return self.cursor(binary=True).execute(query, params)


class PostgresBackend(PostgresSubscriptions):
    """Events in a PostgreSQL schema.

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
            for an unreachable server) before raising ``BackendError``.
        notify: announce each append with ``NOTIFY`` (a wake-up hint for
            workers; see docs/postgresql.md for its cost).
    """

    scheme = "postgresql"
    leases_expire = False
    """Leases are session advisory locks: they ignore ``ttl`` and end with the session."""

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
    ) -> None:
        conninfo, options = _split_url(url)
        self.schema: str = schema or options.get("schema") or "conduit"
        self.pool_size: int = pool_size or options.get("pool_size") or 10
        self.statement_timeout: float = _pick(statement_timeout, options, "statement_timeout", 30.0)
        self.lock_timeout: float = _pick(lock_timeout, options, "lock_timeout", 10.0)
        self.read_your_writes_timeout: float = _pick(
            read_your_writes_timeout, options, "read_your_writes_timeout", 5.0
        )
        self.notify: bool = bool(_pick(notify, options, "notify", False))
        self.pool_timeout: float = _pick(pool_timeout, options, "pool_timeout", 10.0)
        if self.pool_size < 1:
            raise ConfigurationError("pool_size must be at least 1")
        _check_names(self.schema, self.notify)
        self.sql = Statements(self.schema)
        self.conninfo = conninfo
        self._ready = False
        self._lease_conn = None
        self._lease_conn_lock = threading.Lock()
        self._lease_holders = {}
        self._leases_lock = threading.Lock()
        self._wakers = set()
        self._listener = None
        self._closing = threading.Event()
        self._xid_lock = threading.Lock()
        self._last_xid = 0  # the newest transaction of this store's own pushes
        self._horizon_seen = 0  # the highest reader horizon seen (it only grows)
        self._gave_up_xid = 0  # the newest own push a read-your-writes wait ran out for
        self._pool = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=min(2, self.pool_size),
            max_size=self.pool_size,
            kwargs={"autocommit": True},
            connection_class=_Connection,
            configure=self._configure,
            timeout=self.pool_timeout,
            open=False,
            name=f"conduit-{self.schema}",
        )
        self._pool.open(wait=False)

    def __repr__(self) -> str:
        return f"<PostgresBackend schema={self.schema!r}>"

    # -- connections -------------------------------------------------------

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "SET default_transaction_isolation = 'read committed';"
            " SET TimeZone = 'UTC';"
            f" SET statement_timeout = {int(self.statement_timeout * 1000)};"
            f" SET lock_timeout = {int(self.lock_timeout * 1000)}"
        )

    def _run(self, work: Callable[[_Connection], T], *, check: bool = True) -> T:
        """Run work on a pooled connection, translating driver errors.

        A connection found broken (the server restarted) is replaced, along
        with the idle ones that died with it, and the work tried once more:
        every operation is safe to repeat, appends included, since a retried
        batch carries the same event ids.
        """
        if check and not self._ready:
            self._check_schema()
        for attempt in (1, 2):
            conn: _Connection | None = None
            try:
                # getconn/putconn rather than the pool's context manager, whose
                # commit() on the way out is a round of locking and waiting for
                # nothing: every statement here autocommits, and a transaction
                # block left open by an error is rolled back by putconn.
                conn = self._pool.getconn()
                try:
                    return work(conn)
                finally:
                    self._pool.putconn(conn)
            except ConduitError:
                raise
            except psycopg_pool.PoolTimeout as exc:
                raise BackendError(self._why_no_connection(exc)) from exc
            except psycopg_pool.PoolClosed as exc:
                raise BackendError("this store is closed") from exc
            except psycopg.Error as exc:
                if attempt == 1 and conn is not None and conn.broken:
                    # The server restarted or dropped us: the other idle
                    # connections are likely dead too; replace them all.
                    log.warning("PostgreSQL connection lost (%s); retrying once", exc)
                    self._pool.check()
                    continue
                raise _translate(exc, self.schema) from exc
        raise AssertionError("unreachable")

    def _why_no_connection(self, timeout: Exception) -> str:
        """The pool only says it timed out: ask the server directly for the cause."""
        try:
            psycopg.connect(self.conninfo, connect_timeout=3).close()
        except psycopg.Error as exc:
            return f"cannot connect to PostgreSQL at {mask_password(self.conninfo)}: {exc}"
        return f"no PostgreSQL connection free in the pool (pool_size {self.pool_size}): {timeout}"

    def _check_schema(self) -> None:
        def check(conn: psycopg.Connection[Any]) -> int | None:
            row = conn.execute(self.sql.schema_exists, (self.sql.version_table,)).fetchone()
            if not row or not row[0]:
                return None
            found = conn.execute(self.sql.schema_version).fetchone()
            return int(found[0]) if found else 0

        found = self._run(check, check=False)
        if found is None:
            raise SchemaError(
                f"the Conduit schema {self.schema!r} does not exist in this database; "
                "create it with `conduit init URL` or EventStore.setup()"
            )
        if found < SCHEMA_VERSION:
            raise SchemaError(
                f"the Conduit schema {self.schema!r} is at version {found}, older than this "
                f"release's {SCHEMA_VERSION}; migrate it with `conduit init URL` or "
                "EventStore.setup()"
            )
        if found > SCHEMA_VERSION:
            raise SchemaError(
                f"the Conduit schema {self.schema!r} is at version {found}, newer than this "
                f"release knows ({SCHEMA_VERSION}); upgrade Conduit"
            )
        self._ready = True

    # -- the protocol ------------------------------------------------------

    def setup(self) -> None:
        def migrate(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute("SET LOCAL statement_timeout = 0")
                # Serializes concurrent setups of one schema, across processes.
                conn.execute(self.sql.setup_lock, (f"setup:{self.schema}",))
                conn.execute(self.sql.create_version_table)
                row = conn.execute(self.sql.schema_version).fetchone()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:
                    raise SchemaError(
                        f"the Conduit schema {self.schema!r} is at version {current}, newer "
                        f"than this release knows ({SCHEMA_VERSION}); upgrade Conduit"
                    )
                for version, text in migrations(self.schema):
                    if version > current:
                        conn.execute(text.encode())
                        conn.execute(self.sql.record_version, (version,))

        self._run(migrate, check=False)
        self._ready = True

    def append(
        self, stream: StreamKey, events: Sequence[NewEvent], expected_version: int | None
    ) -> list[Event]:
        first = events[0]
        sql: str
        params: tuple[Any, ...]
        if len(events) == 1 and first.recorded_at is None:
            sql = self.sql.append_one
            params = (
                stream.text,
                stream.is_uuid,
                expected_version,
                first.id,
                first.name,
                first.data,
                first.metadata,
                self.notify,
            )
        else:
            sql = self.sql.append_batch
            params = (
                stream.text,
                stream.is_uuid,
                expected_version,
                [new.id for new in events],
                [new.name for new in events],
                [new.data for new in events],
                [new.metadata for new in events],
                self.notify,
                [new.recorded_at for new in events]
                if any(new.recorded_at for new in events)
                else None,
            )

        def append(conn: _Connection) -> list[Event] | str:
            try:
                row: tuple[Any, ...] = conn.run(sql, params).fetchone()  # type: ignore[assignment]
            except psycopg.DatabaseError as exc:
                if exc.sqlstate == _WRONG_VERSION:
                    return exc.diag.message_detail or "0"
                if exc.sqlstate == _UNIQUE_VIOLATION:
                    return ""
                raise
            return self._recorded(stream, events, row)

        outcome = self._run(append)
        if isinstance(outcome, list):
            return outcome
        # A conflict: the batch may be a retry of one already recorded.
        ids = [new.id for new in events]
        found = self._run(lambda conn: _events(conn.read(self.sql.by_ids, (ids,))))
        retried = resolve_retry(stream, events, found)
        if retried is not None:
            self._remember_xid(max(event.position for event in retried) >> 20)
            return retried
        if outcome:
            assert expected_version is not None
            raise WrongExpectedVersion(stream.stream_id(), expected_version, int(outcome))
        raise BackendError(
            f"an append to stream {stream.text!r} broke a unique constraint, "
            "yet none of its event ids is recorded"
        )

    def _remember_xid(self, xid: int) -> None:
        """Note this store's newest transaction: its global-log reads wait for it."""
        with self._xid_lock:
            self._last_xid = max(self._last_xid, xid)

    def _recorded(
        self, stream: StreamKey, events: Sequence[NewEvent], row: tuple[Any, ...]
    ) -> list[Event]:
        """The events as recorded, from the append function's one row."""
        first_position, first_version, now, is_uuid = row
        self._remember_xid(first_position >> 20)
        # The stream's id keeps the type it was created with.
        stream_id = uuid_from_text(stream.text) if is_uuid else stream.text
        decode = codec.decode
        return [
            make_event(
                new.id,
                stream_id,
                new.name,
                decode(new.data),
                {} if new.metadata == "{}" else decode(new.metadata),
                first_version + i,
                first_position + i,
                now if new.recorded_at is None else new.recorded_at,
            )
            for i, new in enumerate(events)
        ]

    def read_stream(
        self,
        stream: StreamKey,
        *,
        start: int | None,
        backwards: bool,
        since: datetime | None,
        limit: int,
    ) -> list[Event]:
        sql = self.sql.read_stream(
            forwards=not backwards, start=start is not None, since=since is not None
        )
        params: list[Any] = [stream.text]
        if start is not None:
            params.append(start)
        if since is not None:
            params.append(since)
        params.append(limit)
        return self._run(lambda conn: _events(conn.read(sql, params)))

    def read_all(
        self,
        *,
        after: int,
        names: Sequence[str] | None,
        limit: int,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        wait: bool = True,
    ) -> list[Event]:
        if wait:
            self._wait_for_own_writes()
        sql = self.sql.read_all(
            names=names is not None,
            correlation=correlation_id is not None,
            causation=causation_id is not None,
        )
        params: list[Any] = [after]
        params.extend(value for value in (correlation_id, causation_id) if value is not None)
        params.append(limit)
        if names is not None:
            params = [list(names), *params, limit]
        return self._run(lambda conn: _events(conn.read(sql, params)))

    def _wait_for_own_writes(self) -> None:
        """Wait, bounded, until the reader horizon has passed this store's last push.

        Once a wait has run out for a push (a transaction open elsewhere on the
        server holds the horizon back), later reads do not wait for that push
        again: only a newer push of this store makes them wait, so that a long
        transaction costs one bounded wait per push, not one per read.
        """
        own = self._last_xid
        if own < self._horizon_seen or own <= self._gave_up_xid:
            return
        deadline = time.monotonic() + self.read_your_writes_timeout
        delay = 0.0005
        while True:
            row = self._run(lambda conn: conn.run(self.sql.horizon).fetchone())
            horizon = int(row[0]) if row else 0
            with self._xid_lock:
                self._horizon_seen = max(self._horizon_seen, horizon)
            if own < horizon:
                return
            if time.monotonic() >= deadline:
                with self._xid_lock:
                    self._gave_up_xid = max(self._gave_up_xid, own)
                log.warning(
                    "the global log's reader horizon has not passed this store's last push "
                    "after %.1f s: a transaction is open elsewhere on the server "
                    "(see idle_in_transaction_session_timeout)",
                    self.read_your_writes_timeout,
                )
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def stream_version(self, stream: StreamKey) -> int:
        row = self._run(lambda conn: conn.run(self.sql.stream_version, (stream.text,)).fetchone())
        return int(row[0]) if row else 0

    def streams(self, *, after: str | None, prefix: str | None, limit: int) -> list[StreamInfo]:
        sql = self.sql.streams(after=after is not None, prefix=prefix is not None)
        params: list[Any] = []
        if after is not None:
            params.append(after)
        if prefix is not None:
            params.extend((prefix, prefix))
        params.append(limit)
        rows = self._run(lambda conn: conn.read(sql, params).fetchall())
        ids = StreamIds()
        return [StreamInfo(ids(text, is_uuid), version) for text, is_uuid, version in rows]

    def head_position(self, *, wait: bool = True) -> int:
        if wait:
            self._wait_for_own_writes()
        row = self._run(lambda conn: conn.run(self.sql.head_position).fetchone())
        return int(row[0]) if row else 0

    def count_after(
        self,
        position: int,
        *,
        names: Sequence[str] | None,
        limit: int | None = None,
        wait: bool = True,
    ) -> int:
        if wait:
            self._wait_for_own_writes()
        sql = self.sql.count_after(names=names is not None, limit=limit is not None)
        params: tuple[Any, ...] = (position,) if names is None else (position, list(names))
        if limit is not None:
            params = (*params, limit)
        row = self._run(lambda conn: conn.run(sql, params).fetchone())
        return int(row[0]) if row else 0

    def first_position_since(self, since: datetime) -> int | None:
        self._wait_for_own_writes()
        sql = self.sql.first_position_since
        row = self._run(lambda conn: conn.run(sql, (since,)).fetchone())
        return None if row is None or row[0] is None else int(row[0])

    def read_event(self, event_id: uuid.UUID) -> Event | None:
        found = self._run(lambda conn: _events(conn.read(self.sql.by_ids, ([event_id],))))
        return found[0] if found else None

    def save_snapshot(self, stream: StreamKey, snapshot: Snapshot) -> None:
        params = (
            stream.text,
            snapshot.class_name,
            snapshot.version,
            snapshot.snapshot_version,
            snapshot.data,
        )
        self._run(lambda conn: conn.run(self.sql.save_snapshot, params))

    def load_snapshot(self, stream: StreamKey, class_name: str) -> Snapshot | None:
        row = self._run(
            lambda conn: conn.read(self.sql.load_snapshot, (stream.text, class_name)).fetchone()
        )
        if row is None:
            return None
        version, snapshot_version, data, taken_at = row
        return Snapshot(class_name, version, snapshot_version, data, taken_at)

    def close(self) -> None:
        self._close_leases()
        self._pool.close()

    def rewrite_events(self, changes: Sequence[EventRewrite]) -> int:
        if not changes:
            return 0
        params = (
            [change.id for change in changes],
            [change.name for change in changes],
            [change.data for change in changes],
            [change.metadata for change in changes],
        )
        return self._run(lambda conn: conn.run(self.sql.rewrite_events, params).rowcount)


def _events(cursor: psycopg.Cursor[Any]) -> list[Event]:
    ids = StreamIds()
    decode = codec.decode
    return [
        make_event(
            event_id,
            ids(stream_text, is_uuid),
            name,
            decode(data),
            {} if metadata == "{}" else decode(metadata),
            version,
            position,
            recorded_at,
        )
        for (
            event_id,
            stream_text,
            is_uuid,
            name,
            data,
            metadata,
            version,
            position,
            recorded_at,
        ) in cursor.fetchall()
    ]


def _translate(exc: psycopg.Error, schema: str) -> ConduitError:
    if isinstance(
        exc,
        psycopg.errors.UndefinedTable
        | psycopg.errors.UndefinedFunction
        | psycopg.errors.InvalidSchemaName,
    ):
        return SchemaError(
            f"the Conduit schema {schema!r} is missing or incomplete ({exc}); "
            "create it with `conduit init URL` or EventStore.setup()"
        )
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return BackendError(f"PostgreSQL cancelled the statement (statement_timeout): {exc}")
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return BackendError(f"the stream stayed locked longer than lock_timeout: {exc}")
    return BackendError(f"PostgreSQL failed: {exc}")


MAX_IDENTIFIER_BYTES = 63
"""PostgreSQL truncates longer identifiers (NAMEDATALEN - 1), channel names included."""


def _check_names(schema: str, notify: bool) -> None:
    """Refuse a schema name PostgreSQL would truncate, or whose channel it would refuse.

    Raises:
        ConfigurationError: naming the limit.
    """
    if not schema or "\x00" in schema:
        raise ConfigurationError("schema: a non-empty name without NUL characters")
    if len(schema.encode()) > MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"schema: {schema!r} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES} bytes "
            "for a name (it would be cut short, and two stores could share one schema)"
        )
    name = channel(schema)
    if notify and len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"notify: the channel {name!r} of schema {schema!r} is longer than "
            f"PostgreSQL's {MAX_IDENTIFIER_BYTES} bytes, so every append would fail; use a "
            f"schema name of at most {MAX_IDENTIFIER_BYTES - len('conduit.')} bytes, "
            "or notify=False"
        )


def _split_url(url: str) -> tuple[str, dict[str, Any]]:
    """Separate Conduit's options from the libpq connection URL."""
    parts = urlsplit(url)
    ours: dict[str, Any] = {}
    theirs = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OPTIONS:
            try:
                ours[key] = _OPTIONS[key](value)  # type: ignore[operator]
            except ValueError:
                raise ConfigurationError(f"{key}={value!r} in the store URL is not valid") from None
        else:
            theirs.append((key, value))
    scheme = "postgresql"
    # quote, not urlencode's default quote_plus: libpq reads "+" as a plus sign,
    # so a space written "+" would reach the server as one ("-c+search_path").
    query = urlencode(theirs, quote_via=quote)
    return urlunsplit((scheme, parts.netloc, parts.path, query, "")), ours


def _pick(given: Any, options: dict[str, Any], key: str, default: Any) -> Any:
    if given is not None:
        return given
    return options.get(key, default)
