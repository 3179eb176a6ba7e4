"""Durable-subscription storage of the SQLite engine: checkpoints, parked events, leases.

A lease is a row with an expiry: its holder renews it; when the holder dies,
another driver takes over once the row has expired.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conduit.backends.common import from_micros, to_micros
from conduit.events import Event, ParkedEvent, SubscriptionState

__all__ = ["SCHEMA_V2", "SCHEMA_V8", "SQLiteSubscriptions"]

SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS subscriptions (
    name       TEXT    PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parked_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription    TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    position        INTEGER NOT NULL,
    error           TEXT    NOT NULL,
    traceback       TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    parked_at       INTEGER NOT NULL,
    retry_requested INTEGER NOT NULL DEFAULT 0,
    UNIQUE (subscription, event_id)
);
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
"""

SCHEMA_V8 = """
CREATE TABLE IF NOT EXISTS subscription_states (
    name       TEXT    PRIMARY KEY,
    state      TEXT    NOT NULL,
    detail     TEXT,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
"""
"""What relays (and any driver) last said they were doing: conduit.events.SubscriptionState."""

_PARKED = (
    "id, subscription, event_id, position, error, traceback, attempts, parked_at, retry_requested"
)


def _now() -> int:
    return to_micros(datetime.now(UTC))


class SQLiteSubscriptions:
    """Mixed into the SQLite engine, whose connection helpers it uses."""

    if TYPE_CHECKING:  # provided by SQLiteBackend

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    def load_checkpoint(self, name: str) -> int | None:
        rows = self._query("SELECT position FROM subscriptions WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    def save_checkpoint(self, name: str, position: int, *, expected: int | None) -> bool:
        with self._write() as conn:
            if expected is None:
                cursor = conn.execute(
                    "INSERT INTO subscriptions (name, position, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO NOTHING",
                    (name, position, _now()),
                )
            else:
                cursor = conn.execute(
                    "UPDATE subscriptions SET position = ?, updated_at = ?"
                    " WHERE name = ? AND position = ?",
                    (position, _now(), name, expected),
                )
            return cursor.rowcount == 1

    def checkpoints(self) -> list[tuple[str, int]]:
        rows = self._query("SELECT name, position FROM subscriptions ORDER BY name")
        return [(name, int(position)) for name, position in rows]

    def save_subscription_state(self, name: str, state: str, detail: str | None) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO subscription_states (name, state, detail, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET state = excluded.state,"
                " detail = excluded.detail, updated_at = excluded.updated_at",
                (name, state, detail, _now()),
            )

    def subscription_states(self) -> list[SubscriptionState]:
        rows = self._query(
            "SELECT name, state, detail, updated_at FROM subscription_states ORDER BY name"
        )
        return [
            SubscriptionState(name, state, detail, from_micros(at))
            for name, state, detail, at in rows
        ]

    def park(
        self, subscription: str, event: Event, *, error: str, traceback: str, attempts: int
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO parked_events (subscription, event_id, position, error, traceback,"
                " attempts, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (subscription, event_id) DO UPDATE SET error = excluded.error,"
                " traceback = excluded.traceback, attempts = excluded.attempts,"
                " parked_at = excluded.parked_at, retry_requested = 0",
                (subscription, str(event.id), event.position, error, traceback, attempts, _now()),
            )

    def parked(self, *, subscription: str | None, after: int, limit: int) -> list[ParkedEvent]:
        if subscription is None:
            rows = self._query(
                f"SELECT {_PARKED} FROM parked_events WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            )
        else:
            rows = self._query(
                f"SELECT {_PARKED} FROM parked_events WHERE subscription = ? AND id > ?"
                " ORDER BY id LIMIT ?",
                (subscription, after, limit),
            )
        return list(_parked(rows))

    def request_retry(self, parked_id: int | None, *, subscription: str | None) -> int:
        where, params = _which(parked_id, subscription)
        with self._write() as conn:
            cursor = conn.execute(f"UPDATE parked_events SET retry_requested = 1{where}", params)
            return cursor.rowcount

    def unpark(self, parked_id: int) -> bool:
        with self._write() as conn:
            cursor = conn.execute("DELETE FROM parked_events WHERE id = ?", (parked_id,))
            return cursor.rowcount == 1

    def try_lease(self, name: str, owner: str, ttl: float) -> bool:
        now = _now()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                " expires_at = excluded.expires_at"
                " WHERE leases.owner = excluded.owner OR leases.expires_at < ?",
                (name, owner, now + int(ttl * 1_000_000), now),
            )
            return cursor.rowcount == 1

    def release_lease(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def leases_held(self, names: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(names))
        held: set[str] = set()
        now = _now()
        for start in range(0, len(wanted), 500):  # within any SQLite's parameter limit
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self._query(
                f"SELECT name FROM leases WHERE expires_at >= ? AND name IN ({marks})",
                [now, *chunk],
            )
            held.update(name for (name,) in rows)
        return held


def _which(parked_id: int | None, subscription: str | None) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if parked_id is not None:
        where.append("id = ?")
        params.append(parked_id)
    if subscription is not None:
        where.append("subscription = ?")
        params.append(subscription)
    return (f" WHERE {' AND '.join(where)}" if where else ""), params


def _parked(rows: list[Any]) -> Iterator[ParkedEvent]:
    for key, subscription, event_id, position, error, tb, attempts, parked_at, retry in rows:
        yield ParkedEvent(
            key,
            subscription,
            uuid.UUID(event_id),
            position,
            error,
            tb,
            attempts,
            from_micros(parked_at),
            bool(retry),
        )
