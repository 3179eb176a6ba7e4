"""Durable-subscription storage of the PostgreSQL engine.

Checkpoints and parked events are rows of the store's schema. The driver of a
subscription is elected with a session advisory lock, held on a connection of
its own: when the holder dies, its session ends, the lock is released and
another driver takes over at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from conduit.backends.postgres.sql import SubscriptionStatements, channel, quote_ident
from conduit.events import Event, ParkedEvent

__all__ = ["PostgresSubscriptions"]

T = TypeVar("T")


class PostgresSubscriptions:
    """Mixed into the PostgreSQL engine, whose pooled connections it uses."""

    if TYPE_CHECKING:  # provided by PostgresBackend
        schema: str
        conninfo: str

        def _run(
            self, work: Callable[[psycopg.Connection[Any]], T], *, check: bool = True
        ) -> T: ...

    _leases: dict[tuple[str, str], psycopg.Connection[Any]]
    _leases_lock: threading.Lock
    _wakers: set[threading.Event]
    _listener: threading.Thread | None
    _closing: threading.Event

    def add_waker(self, wake: threading.Event) -> None:
        """Set ``wake`` whenever an append NOTIFYs (stores opened with ``notify=True``).

        A thread LISTENs on the schema's channel while any waker is registered;
        it is only a hint: drivers poll as well.
        """
        with self._leases_lock:
            self._wakers.add(wake)
            if self._listener is None:
                self._listener = threading.Thread(
                    target=self._listen, name=f"conduit-listen-{self.schema}", daemon=True
                )
                self._listener.start()

    def remove_waker(self, wake: threading.Event) -> None:
        with self._leases_lock:
            self._wakers.discard(wake)

    def _listen(self) -> None:
        listen = f"LISTEN {quote_ident(channel(self.schema))}"
        while not self._closing.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(listen)
                    while not self._closing.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            with self._leases_lock:
                                wakers = list(self._wakers)
                            for wake in wakers:
                                wake.set()
            except psycopg.Error:
                self._closing.wait(1.0)  # the server is away: try again, polling meanwhile

    def _subs(self) -> SubscriptionStatements:
        return SubscriptionStatements(self.schema)

    def load_checkpoint(self, name: str) -> int | None:
        sql = self._subs().load_checkpoint
        row = self._run(lambda conn: conn.execute(sql, (name,)).fetchone())
        return int(row[0]) if row else None

    def save_checkpoint(self, name: str, position: int, *, expected: int | None) -> bool:
        subs = self._subs()
        params: tuple[Any, ...]
        if expected is None:
            sql, params = subs.insert_checkpoint, (name, position)
        else:
            sql, params = subs.move_checkpoint, (position, name, expected)
        return self._run(lambda conn: conn.execute(sql, params).rowcount == 1)

    def checkpoints(self) -> list[tuple[str, int]]:
        sql = self._subs().checkpoints
        rows = self._run(lambda conn: conn.execute(sql).fetchall())
        return [(name, int(position)) for name, position in rows]

    def park(
        self, subscription: str, event: Event, *, error: str, traceback: str, attempts: int
    ) -> None:
        sql = self._subs().park
        params = (subscription, event.id, event.position, error, traceback, attempts)
        self._run(lambda conn: conn.execute(sql, params))

    def parked(self, *, subscription: str | None, after: int, limit: int) -> list[ParkedEvent]:
        sql = self._subs().parked(subscription=subscription is not None)
        params: tuple[Any, ...] = (
            (after, limit) if subscription is None else (after, subscription, limit)
        )
        rows = self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [ParkedEvent(*row) for row in rows]

    def request_retry(self, parked_id: int | None, *, subscription: str | None) -> int:
        sql = self._subs().request_retry(
            one=parked_id is not None, subscription=subscription is not None
        )
        params = [value for value in (parked_id, subscription) if value is not None]
        return self._run(lambda conn: conn.execute(sql, params).rowcount)

    def unpark(self, parked_id: int) -> bool:
        sql = self._subs().unpark
        return self._run(lambda conn: conn.execute(sql, (parked_id,)).rowcount == 1)

    def try_lease(self, name: str, owner: str, ttl: float) -> bool:
        key = (name, owner)
        with self._leases_lock:
            held = self._leases.get(key)
        if held is not None:
            if not held.closed and not held.broken:
                try:
                    held.execute("SELECT 1")
                    return True
                except psycopg.Error:
                    pass
            self._drop_lease(key)
        try:
            conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error:
            return False
        row = conn.execute(self._subs().try_leader_lock, (f"{self.schema}:{name}",)).fetchone()
        if not row or not row[0]:
            conn.close()
            return False
        with self._leases_lock:
            self._leases[key] = conn
        return True

    def release_lease(self, name: str, owner: str) -> None:
        self._drop_lease((name, owner))

    def _drop_lease(self, key: tuple[str, str]) -> None:
        with self._leases_lock:
            conn = self._leases.pop(key, None)
        if conn is None:
            return
        # Unlock before closing: the server ends a closed session in its own
        # time, and until it has, another driver would still find the lock held.
        if not conn.closed and not conn.broken:
            with contextlib.suppress(psycopg.Error):  # if gone, its locks went with it
                conn.execute(self._subs().leader_unlock, (f"{self.schema}:{key[0]}",))
        conn.close()

    def _close_leases(self) -> None:
        self._closing.set()
        with self._leases_lock:
            keys = list(self._leases)
        for key in keys:
            self._drop_lease(key)
