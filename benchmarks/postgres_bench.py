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
    ROUNDS_NOTE,
    Rounds,
    Row,
    Section,
    Settings,
    Target,
    event_data,
    fresh_database,
    median,
    ratio_target,
    read_rate,
)
from benchmarks.pg_contenders import KINDS, PAGE, RAW, Batch, open_contender, prepare
from benchmarks.pg_workers import WriterPool

__all__ = ["DATABASE", "run"]

DATABASE = "conduit_bench"
RAW_DECODED = "raw psycopg, decoded"
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
        best: dict[tuple[str, int, int], list[float]] = {}
        for round_ in range(settings.rounds):
            for writers in settings.writers:
                kinds = ["conduit", "raw-single", "eventsourcing", "raw-notify"]
                if writers == max(settings.writers):
                    kinds.append("conduit-notify")
                _measure(pool, url, kinds, (writers, 1, settings.duration), round_, best, log)
            batches = (1, BATCH, settings.duration)
            _measure(pool, url, list(BATCH_KINDS), batches, round_, best, log)
        _write_rows(section, settings, best)
        reads = _reads(section, settings, url, log)
        try:
            costs = pg_costs.section(
                pg_costs.run(url, settings.cost_calls, log), settings.cost_calls
            )
        except (psycopg.Error, RuntimeError) as exc:  # a breakdown is no reason to lose the rest
            log(f"postgres costs failed: {exc}")
            costs = pg_costs.section([], settings.cost_calls)
            costs.notes.append(f"Not measured: {type(exc).__name__}: {exc}")
    _targets(section, settings, best, reads)
    _notes(section, settings)
    section.notes.append(ROUNDS_NOTE.format(rounds=settings.rounds))
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
    best: dict[tuple[str, int, int], list[float]],
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
        best.setdefault((kind, writers, size), []).append(value)
        log(f"postgres writers={writers} batch={size} {KINDS[kind]}: {value:,.0f} events/s")


def _write_rows(
    section: Section, settings: Settings, rounds: dict[tuple[str, int, int], list[float]]
) -> None:
    best = {key: median(values) for key, values in rounds.items()}
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


def _reads(section: Section, settings: Settings, url: str, log: Log) -> Rounds:
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
    rounds: Rounds = {}
    expected = {STREAM_READ: settings.stream_events, GLOBAL_READ: settings.global_events}
    readers = {**sources, RAW_DECODED: "raw-decoded"}
    schemas = {kind: f"read_{kind.replace('-', '_')}" for kind in sources.values()}
    schemas["raw-decoded"] = schemas["raw-unnest"]  # the same rows, decoded
    names = list(readers)
    for round_ in range(settings.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            kind = readers[name]
            reader = open_contender(kind, url, schemas[kind])
            try:
                for label, read in (
                    (STREAM_READ, lambda r=reader: r.read_stream(stream)),
                    (GLOBAL_READ, reader.read_all),
                ):
                    _check_count(name, label, read, expected[label], log)
                    value = read_rate(settings.duration, read)
                    rounds.setdefault((label, name), []).append(value)
                    log(f"postgres {label} {name}: {value:,.0f} events/s")
            finally:
                reader.close()
    for label in (STREAM_READ, GLOBAL_READ):
        values: dict[str, float | None] = {n: median(rounds[label, n]) for n in sources}
        section.rows.append(Row(label, "events/s", values))
        decoded = median(rounds[label, RAW_DECODED])
        section.extra.append(Row(f"{label}, {RAW_DECODED}", "events/s", {RAW: decoded}))
    return rounds


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


def _targets(
    section: Section,
    settings: Settings,
    writes: dict[tuple[str, int, int], list[float]],
    reads: Rounds,
) -> None:
    most = max(settings.writers)

    def write(text: str, kind: str, other: str, shape: tuple[int, int], required: float) -> Target:
        return ratio_target(text, writes[(kind, *shape)], writes[(other, *shape)], required)

    def read(text: str, label: str, other: str, required: float) -> Target:
        return ratio_target(text, reads[label, CONDUIT], reads[label, other], required)

    raw_batches = [kind for kind in BATCH_KINDS if kind.startswith("raw-")]
    per_kind = (writes[k, 1, BATCH] for k in raw_batches)
    fastest = [max(values) for values in zip(*per_kind, strict=True)]
    section.targets += [
        write(f"{most} writers vs eventsourcing", "conduit", "eventsourcing", (most, 1), 3.0),
        write(
            f"{most} writers vs raw psycopg single-row inserts",
            "conduit",
            "raw-single",
            (most, 1),
            0.8,
        ),
        write(
            "1 writer vs raw psycopg, one transaction per event",
            "conduit",
            "raw-single",
            (1, 1),
            0.8,
        ),
        write("1 writer vs eventsourcing", "conduit", "eventsourcing", (1, 1), 2.0),
        ratio_target(
            "batches of 100 vs raw psycopg's fastest batch insert (each round's fastest)",
            writes["conduit", 1, BATCH],
            fastest,
            0.7,
        ),
        read("stream read vs raw psycopg (undecoded)", STREAM_READ, RAW, 0.7),
        read("global-log read vs raw psycopg (undecoded)", GLOBAL_READ, RAW, 0.7),
        read("stream read vs eventsourcing (decoded)", STREAM_READ, EVENTSOURCING, 1.5),
        read("global-log read vs eventsourcing (decoded)", GLOBAL_READ, EVENTSOURCING, 1.5),
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
        f"`Notification` objects (a stream in one query, the log in pages of {PAGE}), each "
        "turned into its domain event by `Mapper.to_domain_event`, as its applications "
        "read (its states hold no timestamp here: no datetime built); raw psycopg fetches "
        f"tuples (JSON as text), the log in pages of {PAGE}: undecoded (the targets' floor), "
        f"and as `{RAW_DECODED}` with the JSON texts parsed (psycopg builds UUIDs and "
        "datetimes either way).",
    ]
