"""The three SQLite contenders, behind one small interface.

Every contender turns the same dicts into stored rows (``orjson`` on every
side), writes to the same kind of file (WAL, the same ``synchronous``), and
reports how many events a read returned.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from benchmarks.common import CONDUIT, EVENT_NAME, EVENTSOURCING
from benchmarks.es_events import TOPIC, decoded
from conduit import EventStore, new_id

__all__ = [
    "PAGE",
    "RAW",
    "RAW_DECODED",
    "ConduitSQLite",
    "Contender",
    "EventsourcingSQLite",
    "RawDecodedSQLite",
    "RawSQLite",
]

RAW = "raw sqlite3"
RAW_DECODED = "raw sqlite3, decoded"
PAGE = 500
"""Page size of global-log reads on every side (Conduit's default)."""

_COLUMNS = "id, stream_id, stream_is_uuid, name, data, metadata, version, position, recorded_at"
_INSERT = (
    "INSERT INTO events (id, stream_id, stream_is_uuid, version, name, data, metadata,"
    " recorded_at) VALUES (?, ?, 1, ?, ?, ?, '{}', ?)"
)
_ADVANCE_STREAM = (
    "INSERT INTO streams (stream_id, is_uuid, version, recorded_at) VALUES (?, 1, ?, ?)"
    " ON CONFLICT (stream_id) DO UPDATE SET version = version + excluded.version,"
    " recorded_at = excluded.recorded_at RETURNING version"
)


class Contender(Protocol):
    """What a measurement needs from a library."""

    name: str

    def append(self, stream: uuid.UUID, version: int, batch: Sequence[dict[str, Any]]) -> None:
        """Append ``batch`` to ``stream`` (now at ``version``) in one transaction."""

    def read_stream(self, stream: uuid.UUID) -> int:
        """Read a whole stream; return how many events came back."""

    def read_all(self) -> int:
        """Read the whole global log, a page at a time; return how many events came back."""

    def synchronous(self) -> int:
        """``PRAGMA synchronous`` as this contender's own connection reports it."""

    def close(self) -> None:
        """Release the file."""


class ConduitSQLite:
    """Conduit's public API: ``push``, ``push_many``, ``get``, ``read_all``."""

    name = CONDUIT

    def __init__(self, path: str, synchronous: str) -> None:
        self.store = EventStore(f"sqlite:///{path}?synchronous={synchronous}")

    def append(self, stream: uuid.UUID, version: int, batch: Sequence[dict[str, Any]]) -> None:
        if len(batch) == 1:
            self.store.push(EVENT_NAME, stream, batch[0], expected_version=version)
        else:
            events = [(EVENT_NAME, data) for data in batch]
            self.store.push_many(stream, events, expected_version=version)

    def read_stream(self, stream: uuid.UUID) -> int:
        return len(self.store.get(stream))

    def read_all(self) -> int:
        return sum(1 for _ in self.store.read_all())

    def synchronous(self) -> int:
        # Private access, only to prove the setting the benchmark compares at.
        backend: Any = self.store.backend
        return int(backend._connection().execute("PRAGMA synchronous").fetchone()[0])

    def close(self) -> None:
        self.store.close()


class RawSQLite:
    """The minimal correct hand-written equivalent of Conduit's append.

    On Conduit's own tables (a store creates them, then is closed): ``BEGIN
    IMMEDIATE``; move the ``streams`` row on by the batch's size with an upsert
    that returns the new version (the statements Conduit runs); one ``INSERT``
    per event (``executemany`` for a batch); ``COMMIT``. Event ids are Conduit's
    time-ordered UUIDs (``new_id``: Python 3.11 has no ``uuid7``), so that both
    sides grow the ``id`` index at its end;
    random ``uuid4`` ids would make every insert touch a random index page.
    It returns nothing, checks no input and builds no objects.
    """

    name = RAW
    decode = False
    """Decode what reads fetch (:class:`RawDecodedSQLite`); else count undecoded tuples."""

    def __init__(self, path: str, synchronous: str) -> None:
        EventStore(f"sqlite:///{path}?synchronous={synchronous}").close()
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={synchronous.upper()}")

    def append(self, stream: uuid.UUID, version: int, batch: Sequence[dict[str, Any]]) -> None:
        conn = self.conn
        text = str(stream)
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = time.time_ns() // 1000
            (after,) = conn.execute(_ADVANCE_STREAM, (text, len(batch), now)).fetchone()
            current = after - len(batch)
            rows = [
                (str(new_id()), text, current + i, EVENT_NAME, orjson.dumps(data).decode(), now)
                for i, data in enumerate(batch, 1)
            ]
            if len(rows) == 1:
                conn.execute(_INSERT, rows[0])
            else:
                conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def read_stream(self, stream: uuid.UUID) -> int:
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE stream_id = ? ORDER BY version", (str(stream),)
        ).fetchall()
        return len(_decoded(rows) if self.decode else rows)

    def read_all(self) -> int:
        count = 0
        position = 0
        while True:
            rows = self.conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (position, PAGE),
            ).fetchall()
            count += len(_decoded(rows) if self.decode else rows)
            if len(rows) < PAGE:
                return count
            position = rows[-1][7]

    def synchronous(self) -> int:
        return int(self.conn.execute("PRAGMA synchronous").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


class RawDecodedSQLite(RawSQLite):
    """Raw sqlite3 reading as :class:`RawSQLite`, each row decoded into a tuple of the
    values an ``Event`` holds (a UUID, parsed data and metadata, an aware datetime)."""

    name = RAW_DECODED
    decode = True


def _decoded(rows: list[Any]) -> list[tuple[Any, ...]]:
    loads, uuid_of, moment = orjson.loads, uuid.UUID, datetime.fromtimestamp
    return [
        (uuid_of(i), s, n, loads(d), loads(m), v, p, moment(r / 1_000_000, UTC))
        for i, s, _, n, d, m, v, p, r in rows
    ]


class EventsourcingSQLite:
    """eventsourcing 9.5's ``SQLiteApplicationRecorder``: ``insert_events``, ``select_*``.

    The library has no ``synchronous`` option; SQLite's compiled-in default
    applies (FULL here). To compare at another setting, the benchmark sets it on
    every connection the library's pool opens.
    """

    name = EVENTSOURCING

    def __init__(self, path: str, synchronous: str) -> None:
        self.datastore = SQLiteDatastore(path)
        pool: Any = self.datastore.pool
        create = pool._create_connection
        pragma = f"PRAGMA synchronous={synchronous.upper()}"

        def create_with_pragma() -> Any:
            connection = create()
            connection._sqlite_conn.execute(pragma)
            return connection

        pool._create_connection = create_with_pragma
        self.recorder = SQLiteApplicationRecorder(self.datastore)
        self.recorder.create_table()

    def append(self, stream: uuid.UUID, version: int, batch: Sequence[dict[str, Any]]) -> None:
        self.recorder.insert_events(
            [
                StoredEvent(
                    originator_id=stream,
                    originator_version=version + i,
                    topic=TOPIC,
                    state=orjson.dumps(data),
                )
                for i, data in enumerate(batch, 1)
            ]
        )

    def read_stream(self, stream: uuid.UUID) -> int:
        return len(decoded(self.recorder.select_events(stream)))

    def read_all(self) -> int:
        count = 0
        start = 0
        while True:
            page = self.recorder.select_notifications(start, PAGE, inclusive_of_start=False)
            count += len(decoded(page))
            if len(page) < PAGE:
                return count
            start = page[-1].id

    def synchronous(self) -> int:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute("PRAGMA synchronous")
            return int(cursor.fetchone()[0])

    def close(self) -> None:
        self.datastore.close()
