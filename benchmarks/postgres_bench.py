"""The PostgreSQL section: Conduit vs raw psycopg vs eventsourcing, in one run.

Everything happens in a database created for the run and dropped afterwards;
each measurement writes into a fresh schema of its own, after a
``CHECKPOINT`` so that no measurement pays for another's dirty pages.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import psycopg

from benchmarks import pg_costs
from benchmarks.common import (
    CONDUIT,
    EVENTSOURCING,
    Row,
    Section,
    Settings,
    Target,
    event_data,
    fresh_database,
    read_rate,
)
from benchmarks.pg_contenders import KINDS, PAGE, RAW, Batch, open_contender, prepare
from benchmarks.pg_workers import WriterPool

__all__ = ["DATABASE", "run"]

DATABASE = "conduit_bench"
BATCH = 100
BATCH_KINDS = (
    "conduit",
    "raw-executemany",
    "raw-values",
    "raw-unnest",
    "raw-copy",
    "eventsourcing",
)
STREAM_READ = "read one 10,000-event stream (events/s)"
GLOBAL_READ = "read the global log (events/s)"
HORIZON_WAIT = 60.0
Log = Callable[[str], None]
Appender = Callable[[uuid.UUID, int, Batch], None]


def writers_label(count: int) -> str:
    """The row label of the concurrent single-event appends."""
    noun = "writer" if count == 1 else "writers"
    return f"appends/s, one event per transaction, {count} {noun}"


BATCHED = f"appends/s, batches of {BATCH}, 1 writer (events/s)"


def run(settings: Settings, server_url: str, log: Log) -> list[Section]:
    """Measure every PostgreSQL figure and check it against the issue's targets.

    Returns the section of side-by-side figures and the breakdown of an append.
    """
    section = Section(
        "PostgreSQL",
        [CONDUIT, RAW, EVENTSOURCING],
        extra_title="Raw psycopg variants and the cost of NOTIFY",
    )
    with fresh_database(server_url, DATABASE) as url, WriterPool(max(settings.writers)) as pool:
        section.versions.update(_server_facts(url))
        best: dict[tuple[str, int, int], float] = {}
        for round_ in range(settings.rounds):
            for writers in settings.writers:
                kinds = ["conduit", "raw-single", "eventsourcing", "raw-notify"]
                if writers == max(settings.writers):
                    kinds.append("conduit-notify")
                _measure(pool, url, kinds, (writers, 1, settings.duration), round_, best, log)
            batches = (1, BATCH, settings.duration)
            _measure(pool, url, list(BATCH_KINDS), batches, round_, best, log)
        _write_rows(section, settings, best)
        _reads(section, settings, url, log)
        try:
            costs = pg_costs.section(
                pg_costs.run(url, settings.cost_calls, log), settings.cost_calls
            )
        except (psycopg.Error, RuntimeError) as exc:  # a breakdown is no reason to lose the rest
            log(f"postgres costs failed: {exc}")
            costs = pg_costs.section([], settings.cost_calls)
            costs.notes.append(f"Not measured: {type(exc).__name__}: {exc}")
    _targets(section, settings)
    _notes(section, settings)
    return [section, costs]


def _server_facts(url: str) -> dict[str, str]:
    """The server's version and the settings that decide commit speed."""
    names = ("synchronous_commit", "fsync", "wal_sync_method", "commit_delay", "shared_buffers")
    with psycopg.connect(url) as conn:

        def show(name: str) -> str:
            row = conn.execute(f"SHOW {name}").fetchone()
            return str(row[0]) if row else "?"

        settings = ", ".join(f"{name}={show(name)}" for name in names)
        return {"PostgreSQL": show("server_version"), "PostgreSQL settings": settings}


def _measure(
    pool: WriterPool,
    url: str,
    kinds: list[str],
    shape: tuple[int, int, float],
    round_: int,
    best: dict[tuple[str, int, int], float],
    log: Log,
) -> None:
    """Measure each contender in turn, the first one changing with the round."""
    writers, size, duration = shape
    shift = round_ % len(kinds)
    for kind in kinds[shift:] + kinds[:shift]:
        schema = f"bench_{kind.replace('-', '_')}"
        prepare(kind, url, schema)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        try:
            value = pool.measure(kind, url, schema, writers, size, duration)
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        key = (kind, writers, size)
        best[key] = max(best.get(key, 0.0), value)
        log(f"postgres writers={writers} batch={size} {KINDS[kind]}: {value:,.0f} events/s")


def _write_rows(
    section: Section, settings: Settings, best: dict[tuple[str, int, int], float]
) -> None:
    for writers in settings.writers:
        section.rows.append(
            Row(
                writers_label(writers),
                "events/s",
                {
                    CONDUIT: best["conduit", writers, 1],
                    RAW: best["raw-single", writers, 1],
                    EVENTSOURCING: best["eventsourcing", writers, 1],
                },
            )
        )
    raw_batches = {kind: best[kind, 1, BATCH] for kind in BATCH_KINDS if kind.startswith("raw-")}
    fastest = max(raw_batches, key=raw_batches.__getitem__)
    section.rows.append(
        Row(
            BATCHED,
            "events/s",
            {
                CONDUIT: best["conduit", 1, BATCH],
                RAW: raw_batches[fastest],
                EVENTSOURCING: best["eventsourcing", 1, BATCH],
            },
        )
    )
    section.notes.append(
        f"Batches: the raw psycopg figure is the fastest of its variants ({KINDS[fastest]})."
    )
    for kind, value in raw_batches.items():
        section.extra.append(
            Row(f"{KINDS[kind]}, batches of {BATCH}, 1 writer", "events/s", {RAW: value})
        )
    for writers in settings.writers:
        plain = best["raw-single", writers, 1]
        notified = best["raw-notify", writers, 1]
        noun = "writer" if writers == 1 else "writers"
        section.extra.append(
            Row(f"{KINDS['raw-notify']}, {writers} {noun}", "events/s", {RAW: notified})
        )
        section.extra.append(
            Row(
                f"raw psycopg, {writers} {noun}: rate with pg_notify / without",
                "x",
                {RAW: notified / plain},
            )
        )
    most = max(settings.writers)
    notified = best["conduit-notify", most, 1]
    section.extra.append(
        Row(f"{KINDS['conduit-notify']}, {most} writers", "events/s", {CONDUIT: notified})
    )
    section.extra.append(
        Row(
            f"Conduit, {most} writers: rate with notify=True / notify=False",
            "x",
            {CONDUIT: notified / best["conduit", most, 1]},
        )
    )


def _reads(section: Section, settings: Settings, url: str, log: Log) -> None:
    stream = uuid.uuid4()
    sources = {CONDUIT: "conduit", RAW: "raw-unnest", EVENTSOURCING: "eventsourcing"}
    for name, kind in sources.items():
        prepare(kind, url, f"read_{kind.replace('-', '_')}")
        writer = open_contender(kind, url, f"read_{kind.replace('-', '_')}")
        try:
            _fill(writer.append, stream, settings)
        finally:
            writer.close()
        log(f"postgres reads: {name} filled")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    best: dict[tuple[str, str], float] = {}
    expected = {STREAM_READ: settings.stream_events, GLOBAL_READ: settings.global_events}
    for _ in range(settings.rounds):
        for name, kind in sources.items():
            reader = open_contender(kind, url, f"read_{kind.replace('-', '_')}")
            try:
                for label, read in (
                    (STREAM_READ, lambda r=reader: r.read_stream(stream)),
                    (GLOBAL_READ, reader.read_all),
                ):
                    _check_count(name, label, read, expected[label], log)
                    value = read_rate(settings.duration, read)
                    best[label, name] = max(best.get((label, name), 0.0), value)
                    log(f"postgres {label} {name}: {value:,.0f} events/s")
            finally:
                reader.close()
    for label in (STREAM_READ, GLOBAL_READ):
        values: dict[str, float | None] = {name: best[label, name] for name in sources}
        section.rows.append(Row(label, "events/s", values))


def _check_count(name: str, label: str, read: Callable[[], int], expected: int, log: Log) -> None:
    """Insist that a read returns every event, waiting (bounded) for the reader horizon.

    Conduit's global log stops below the oldest transaction open anywhere on
    the server (docs/design.md §3.3): another session's long transaction holds it back.
    """
    deadline = time.monotonic() + HORIZON_WAIT
    while (found := read()) != expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: {label} returned {found} events, not {expected}")
        log(f"postgres {name}: {label} returned {found} of {expected} events; waiting")
        time.sleep(1.0)


def _fill(append: Appender, stream: uuid.UUID, settings: Settings) -> None:
    batch = [event_data(i) for i in range(BATCH)]
    for version in range(0, settings.stream_events, BATCH):
        append(stream, version, batch)
    for _ in range((settings.global_events - settings.stream_events) // 1_000):
        other = uuid.uuid4()
        for version in range(0, 1_000, BATCH):
            append(other, version, batch)


def _targets(section: Section, settings: Settings) -> None:
    def ratio(label: str, other: str) -> float:
        return section.value(label, CONDUIT) / section.value(label, other)

    most = writers_label(max(settings.writers))
    one = writers_label(1)
    section.targets += [
        Target(
            f"{max(settings.writers)} writers vs eventsourcing", ratio(most, EVENTSOURCING), 3.0
        ),
        Target(
            f"{max(settings.writers)} writers vs raw psycopg single-row inserts",
            ratio(most, RAW),
            0.8,
        ),
        Target("1 writer vs raw psycopg, one transaction per event", ratio(one, RAW), 0.8),
        Target("1 writer vs eventsourcing", ratio(one, EVENTSOURCING), 2.0),
        Target("batches of 100 vs raw psycopg's fastest batch insert", ratio(BATCHED, RAW), 0.7),
        Target("stream read vs eventsourcing", ratio(STREAM_READ, EVENTSOURCING), 1.2),
        Target("global-log read vs eventsourcing", ratio(GLOBAL_READ, EVENTSOURCING), 1.2),
    ]


def _notes(section: Section, settings: Settings) -> None:
    section.notes += [
        "Writers are processes (`multiprocessing`, spawn), each with its own store or "
        "connection, appending round-robin to 10 streams of its own for "
        f"{settings.duration:g} s after a warm-up and a barrier; the figure is all events "
        "over the longest writer's time. Every measurement gets a fresh schema, after a "
        "`CHECKPOINT`.",
        "Conduit: `EventStore(url, schema=…, pool_size=1)` per process, `push` / `push_many` "
        "with `expected_version` (one call of its `append_event` or `append_batch` SQL "
        "function: stream advisory lock, version check, insert, `streams` row update).",
        "Raw psycopg: a table with Conduit's columns, types and indexes but an identity "
        "column for the position (a plain sequence, not gap-free); each writer knows its "
        "streams' versions and only INSERTs (autocommit: one transaction per event). "
        "It maintains no `streams` row and checks nothing beyond the unique indexes.",
        "eventsourcing 9.5: `PostgresApplicationRecorder.insert_events` on its default "
        "path (`enable_db_functions=False`): `LOCK TABLE … IN EXCLUSIVE MODE`, `NOTIFY`, "
        "INSERT from an array of composite values, in one pipelined transaction; its "
        "writers also track their own versions.",
        "NOTIFY: raw psycopg runs `WITH e AS (INSERT … RETURNING position) SELECT "
        "pg_notify('conduit_bench', position::text) FROM e`, one statement and one round "
        "trip like the plain INSERT, so the difference is the notification alone.",
        f"Reads: {settings.stream_events:,}-event stream and a {settings.global_events:,}-event "
        f"global log written in batches of {BATCH}, then `VACUUM ANALYZE`. Conduit decodes "
        "every row into an `Event`; eventsourcing's recorder returns `StoredEvent` / "
        f"`Notification` objects with undecoded bytes (a stream in one query, the log in "
        f"pages of {PAGE}); raw psycopg fetches tuples (JSON as text, undecoded), the log "
        f"in pages of {PAGE}.",
    ]
