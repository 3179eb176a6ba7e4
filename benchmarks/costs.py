"""Where Conduit's time goes: microseconds per event, step by step, on SQLite.

Each step is timed on its own (``timeit``, best of several repeats, so that
other work on the machine inflates it as little as possible) with the inputs
the benchmarks use, next to the end-to-end figure of the same path on a
``synchronous=NORMAL`` file (no fsync per commit, so CPU dominates).
"""

from __future__ import annotations

import sqlite3
import time
import timeit
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

from benchmarks.common import CONDUIT, EVENT_NAME, Row, Section, event_data
from conduit import EventStore, codec, new_id
from conduit.backends.common import StreamIds, from_micros, to_micros
from conduit.core.writes import pending_event
from conduit.events import Event, event_name, stream_key

__all__ = ["run"]

BATCH = 100
READ_EVENTS = 10_000
REPEAT = 7
Log = Callable[[str], None]


def _micros(work: Callable[[], object], number: int = 2_000) -> float:
    """Best-of-``REPEAT`` microseconds of this process's CPU time per call.

    CPU time rather than wall time, so that other work on the machine cannot
    stretch a step by taking the core away from it.
    """
    timer = timeit.Timer(work, timer=time.process_time)
    return min(timer.repeat(number=number, repeat=REPEAT)) / number * 1e6


def run(workdir: Path, log: Log) -> Section:
    """Time each step of Conduit's append and read paths on SQLite."""
    section = Section(
        "Where Conduit's time goes (SQLite, µs per event)",
        [CONDUIT],
        extra_title="Steps, each timed alone",
    )
    path = workdir / "costs.db"
    store = EventStore(f"sqlite:///{path}?synchronous=normal")
    try:
        _append_steps(store, section)
        _read_steps(store, str(path), section)
    finally:
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    log("costs: done")
    section.notes.append(
        "Each step runs alone under `timeit` (best of 7, CPU time of the process) on the "
        "benchmark's event "
        f"({len(orjson.dumps(event_data(0)))} bytes of JSON data, empty metadata); the "
        "end-to-end figures run on a `synchronous=NORMAL` file, so they hold little "
        "fsync time. Steps do not add up exactly to the end-to-end figure: the rest is "
        "the calls, loops and generators between them."
    )
    return section


def _add(section: Section, label: str, micros: float) -> None:
    section.extra.append(Row(label, "µs", {CONDUIT: micros}))


def _append_steps(store: EventStore, section: Section) -> None:
    data = event_data(1)
    text = orjson.dumps(data).decode()
    stream = uuid.uuid4()
    store.push(EVENT_NAME, stream, data)
    batch = [(EVENT_NAME, data)] * BATCH
    started = time.perf_counter()
    rounds = 30
    for _ in range(rounds):
        store.push_many(stream, batch)
    _add(section, f"push_many of {BATCH}, end to end, per event", _elapsed(started, rounds * BATCH))
    started = time.perf_counter()
    for _ in range(300):
        store.push(EVENT_NAME, stream, data)
    _add(section, "push of one event, end to end (one transaction)", _elapsed(started, 300))
    now = datetime.now(UTC)
    event_id = new_id()
    steps: list[tuple[str, Callable[[], object]]] = [
        (
            "append: `pending_event` (name, id, encode, `NewEvent`), per event",
            lambda: pending_event(batch[0], 0),
        ),
        ("  of which `new_id()` (UUIDv7)", new_id),
        ("  of which `codec.encode(data)` (validate + orjson)", lambda: codec.encode(data)),
        ("    of which `codec.validate(data)`", lambda: codec.validate(data, "data")),
        ("    of which `orjson.dumps(data)`", lambda: orjson.dumps(data)),
        ("  of which `event_name(name)`", lambda: event_name(EVENT_NAME)),
        ("append: `stream_key(uuid)`, per call", lambda: stream_key(stream)),
        ("append: `str(event_id)` for the row", lambda: str(event_id)),
        ("append: `to_micros(datetime.now(UTC))`, per call", lambda: to_micros(datetime.now(UTC))),
        ("append: returned `Event`: `codec.decode` of data", lambda: codec.decode(text)),
        ("append: returned `Event`: `Event(...)` (frozen dataclass)", lambda: _event(now)),
    ]
    for label, work in steps:
        _add(section, label, _micros(work))


def _read_steps(store: EventStore, path: str, section: Section) -> None:
    stream = uuid.uuid4()
    batch = [(EVENT_NAME, event_data(i)) for i in range(BATCH)]
    for _ in range(READ_EVENTS // BATCH):
        store.push_many(stream, batch)
    store.get(stream)
    started = time.perf_counter()
    count = len(store.get(stream))
    _add(
        section,
        f"read: `get` of a {READ_EVENTS:,}-event stream, end to end, per event",
        _elapsed(started, count),
    )
    conn = sqlite3.connect(path)
    sql = (
        "SELECT id, stream_id, stream_is_uuid, name, data, metadata, version, position,"
        " recorded_at FROM events WHERE stream_id = ? AND version >= ? ORDER BY version LIMIT 500"
    )
    fetch = _micros(lambda: conn.execute(sql, (str(stream), 1)).fetchall(), number=20) / 500
    row = conn.execute(sql, (str(stream), 1)).fetchone()
    conn.close()
    _add(section, "read: SQLite fetch of the row (pages of 500), per event", fetch)
    ids = StreamIds()
    now = datetime.now(UTC)
    steps: list[tuple[str, Callable[[], object]]] = [
        ("read: `uuid.UUID(text)` (event id)", lambda: uuid.UUID(row[0])),
        ("read: `StreamIds` (stream id, cached)", lambda: ids(row[1], True)),
        ("read: `codec.decode(data)` (orjson)", lambda: codec.decode(row[4])),
        ("read: `codec.decode(metadata)` ('{}')", lambda: codec.decode(row[5])),
        ("read: `from_micros(recorded_at)`", lambda: from_micros(row[8])),
        ("read: `Event(...)` (frozen dataclass, 8 fields)", lambda: _event(now)),
        ("  for comparison: a tuple of the same 8 values", lambda: _tuple(now)),
    ]
    for label, work in steps:
        _add(section, label, _micros(work))


def _elapsed(started: float, count: int) -> float:
    return (time.perf_counter() - started) / count * 1e6


_ID = uuid.UUID(int=1)


def _event(now: datetime) -> Event:
    return Event(_ID, "stream", EVENT_NAME, {}, {}, 1, 1, now)


def _tuple(now: datetime) -> tuple[object, ...]:
    return (_ID, "stream", EVENT_NAME, {}, {}, 1, 1, now)
