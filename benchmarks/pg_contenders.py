"""The PostgreSQL contenders: Conduit, raw psycopg (several ways), eventsourcing.

Each is named by a string (a child process opens its own by name), creates
its tables in a schema of its own, and writes the same dicts (``orjson`` on
every side).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

from benchmarks.common import CONDUIT, EVENT_NAME, EVENTSOURCING
from benchmarks.es_events import TOPIC, decoded
from conduit import EventStore, new_id

__all__ = ["KINDS", "PAGE", "RAW", "Batch", "Contender", "open_contender", "prepare"]

RAW = "raw psycopg"
PAGE = 500
"""Page size of global-log reads on every side (Conduit's default)."""

Batch = Sequence[dict[str, Any]]

_RAW_TABLE = """
CREATE TABLE {s}.events (
    position       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             uuid        NOT NULL UNIQUE,
    stream_id      text        COLLATE "C" NOT NULL,
    stream_is_uuid boolean     NOT NULL,
    version        bigint      NOT NULL,
    name           text        NOT NULL,
    data           json        NOT NULL,
    metadata       json        NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
)
"""
_RAW_COLUMNS = "id, stream_id, stream_is_uuid, version, name, data, metadata"
_RAW_READ = (
    "id, stream_id, stream_is_uuid, name, data::text, metadata::text, version, position,"
    " recorded_at"
)


class Contender(Protocol):
    """A writer (and reader) in one process."""

    def append(self, stream: uuid.UUID, version: int, batch: Batch) -> None:
        """Append ``batch`` to ``stream`` (now at ``version``) in one transaction."""

    def read_stream(self, stream: uuid.UUID) -> int:
        """Read a whole stream; return how many events came back."""

    def read_all(self) -> int:
        """Read the whole global log, a page at a time; return the count."""

    def close(self) -> None:
        """Release connections."""


class ConduitPG:
    """Conduit's public API, one store (a pool of one connection) per process."""

    def __init__(self, url: str, schema: str, *, notify: bool = False) -> None:
        self.store = EventStore(url, schema=schema, pool_size=1, notify=notify)

    def append(self, stream: uuid.UUID, version: int, batch: Batch) -> None:
        if len(batch) == 1:
            self.store.push(EVENT_NAME, stream, batch[0], expected_version=version)
        else:
            events = [(EVENT_NAME, data) for data in batch]
            self.store.push_many(stream, events, expected_version=version)

    def read_stream(self, stream: uuid.UUID) -> int:
        return len(self.store.get(stream))

    def read_all(self) -> int:
        return sum(1 for _ in self.store.read_all())

    def close(self) -> None:
        self.store.close()


class RawPG:
    """Hand-written psycopg on a table with Conduit's columns and indexes.

    Positions come from an identity sequence (not gap-free: the very problem
    Conduit's log solves); the writer knows its streams' versions, so it reads
    nothing; the unique indexes still check versions and ids. ``method``:
    ``single`` one autocommitted INSERT (for a batch: one INSERT per event, in
    one transaction), ``notify`` the same INSERT and a ``pg_notify`` in one
    statement, ``values`` one multi-row INSERT, ``unnest`` one INSERT from
    arrays, ``copy`` COPY in a transaction.
    """

    def __init__(self, url: str, schema: str, method: str) -> None:
        self.decode = method == "decoded"
        """Reads parse the JSON texts (psycopg builds the UUIDs and datetimes); else
        they count the fetched tuples, undecoded."""
        method = "single" if self.decode else method
        self.conn = psycopg.connect(url, autocommit=True)
        self.table = f'"{schema}".events'
        self._append: Callable[[uuid.UUID, int, Batch], None] = getattr(self, f"_{method}")
        self._insert = (
            f"INSERT INTO {self.table} ({_RAW_COLUMNS}) VALUES (%s, %s, true, %s, %s, %s, '{{}}')"
        )

    def append(self, stream: uuid.UUID, version: int, batch: Batch) -> None:
        self._append(stream, version, batch)

    @staticmethod
    def _rows(stream: uuid.UUID, version: int, batch: Batch) -> list[tuple[Any, ...]]:
        text = str(stream)
        return [
            (new_id(), text, version + i, EVENT_NAME, orjson.dumps(data).decode())
            for i, data in enumerate(batch, 1)
        ]

    def _single(self, stream: uuid.UUID, version: int, batch: Batch) -> None:
        rows = self._rows(stream, version, batch)
        if len(rows) == 1:
            self.conn.execute(self._insert, rows[0])
            return
        with self.conn.transaction(), self.conn.cursor() as cursor:
            for row in rows:
                cursor.execute(self._insert, row)

    def _notify(self, stream: uuid.UUID, version: int, batch: Batch) -> None:
        (row,) = self._rows(stream, version, batch)
        self.conn.execute(
            f"WITH e AS ({self._insert} RETURNING position)"
            " SELECT pg_notify('conduit_bench', position::text) FROM e",
            row,
        )

    def _executemany(self, stream: uuid.UUID, version: int, batch: Batch) -> None:
        with self.conn.transaction(), self.conn.cursor() as cursor:
            cursor.executemany(self._insert, self._rows(stream, version, batch))

    def _values(self, stream: uuid.UUID, version: int, batch: Batch) -> None:
        rows = self._rows(stream, version, batch)
        marks = ", ".join(["(%s, %s, true, %s, %s, %s, '{}')"] * len(rows))
        params = [value for row in rows for value in row]
        self.conn.execute(f"INSERT INTO {self.table} ({_RAW_COLUMNS}) VALUES {marks}", params)

    def _unnest(self, stream: uuid.UUID, version: int, batch: Batch) -> None:
        rows = self._rows(stream, version, batch)
        ids, streams, versions, names, datas = (list(column) for column in zip(*rows, strict=True))
        self.conn.execute(
            f"INSERT INTO {self.table} ({_RAW_COLUMNS}) SELECT i, s, true, v, n, d::json, '{{}}'"
            " FROM unnest(%s::uuid[], %s::text[], %s::bigint[], %s::text[], %s::text[])"
            " AS t (i, s, v, n, d)",
            (ids, streams, versions, names, datas),
        )

    def _copy(self, stream: uuid.UUID, version: int, batch: Batch) -> None:
        columns = "id, stream_id, stream_is_uuid, version, name, data, metadata"
        with (
            self.conn.transaction(),
            self.conn.cursor() as cursor,
            cursor.copy(f"COPY {self.table} ({columns}) FROM STDIN") as copy,
        ):
            for event_id, text, number, name, data in self._rows(stream, version, batch):
                copy.write_row((event_id, text, True, number, name, data, "{}"))

    def read_stream(self, stream: uuid.UUID) -> int:
        rows = self.conn.execute(
            f"SELECT {_RAW_READ} FROM {self.table} WHERE stream_id = %s ORDER BY version",
            (str(stream),),
        ).fetchall()
        return len(_decoded(rows) if self.decode else rows)

    def read_all(self) -> int:
        count = 0
        position = 0
        while True:
            rows = self.conn.execute(
                f"SELECT {_RAW_READ} FROM {self.table} WHERE position > %s"
                " ORDER BY position LIMIT %s",
                (position, PAGE),
            ).fetchall()
            count += len(_decoded(rows) if self.decode else rows)
            if len(rows) < PAGE:
                return count
            position = rows[-1][7]

    def close(self) -> None:
        self.conn.close()


def _decoded(rows: list[Any]) -> list[tuple[Any, ...]]:
    loads = orjson.loads
    return [(i, s, n, loads(d), loads(m), v, p, r) for i, s, _, n, d, m, v, p, r in rows]


class EventsourcingPG:
    """eventsourcing 9.5's ``PostgresApplicationRecorder``, its default path.

    ``insert_events`` takes ``LOCK TABLE … IN EXCLUSIVE MODE``, sends
    ``NOTIFY`` and inserts from an array of composite values, in one
    pipelined transaction.
    """

    def __init__(self, url: str, schema: str) -> None:
        parts = urlsplit(url)
        self.datastore = PostgresDatastore(
            dbname=parts.path.lstrip("/"),
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password or "",
            schema=schema,
            pool_size=1,
        )
        self.recorder = PostgresApplicationRecorder(self.datastore)

    def append(self, stream: uuid.UUID, version: int, batch: Batch) -> None:
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

    def close(self) -> None:
        self.datastore.close()


KINDS: dict[str, str] = {
    "conduit": CONDUIT,
    "conduit-notify": f"{CONDUIT} (notify=True)",
    "raw-single": f"{RAW}, INSERT per event",
    "raw-notify": f"{RAW}, INSERT + pg_notify",
    "raw-executemany": f"{RAW}, executemany (pipelined)",
    "raw-values": f"{RAW}, one multi-row INSERT",
    "raw-unnest": f"{RAW}, INSERT … unnest(arrays)",
    "raw-copy": f"{RAW}, COPY",
    "raw-decoded": f"{RAW}, reads decoded (JSON parsed)",
    "eventsourcing": EVENTSOURCING,
}
"""Every contender, by the name a child process is given, with its label."""


def open_contender(kind: str, url: str, schema: str) -> Contender:
    """Open the contender ``kind`` on tables ``prepare`` made."""
    if kind.startswith("conduit"):
        return ConduitPG(url, schema, notify=kind == "conduit-notify")
    if kind.startswith("raw-"):
        return RawPG(url, schema, kind.removeprefix("raw-"))
    if kind == "eventsourcing":
        return EventsourcingPG(url, schema)
    raise ValueError(f"unknown contender {kind!r}")


def prepare(kind: str, url: str, schema: str) -> None:
    """Create a fresh schema with the tables ``kind`` writes to."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if kind.startswith("raw-"):
            conn.execute(f'CREATE SCHEMA "{schema}"')
            conn.execute(_RAW_TABLE.format(s=f'"{schema}"'))
        elif kind == "eventsourcing":
            conn.execute(f'CREATE SCHEMA "{schema}"')
    if kind.startswith("conduit"):
        with EventStore(url, schema=schema, pool_size=1) as store:
            store.setup()
    elif kind == "eventsourcing":
        contender = EventsourcingPG(url, schema)
        contender.recorder.create_table()
        contender.close()
