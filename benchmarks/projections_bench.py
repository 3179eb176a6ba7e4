"""Projections (issue 4): catch-up throughput of a SQL read model, and push-to-projection latency.

The read model is the same everywhere: one row per stream holding the count and
the sum of the events' ``value``, upserted by each event. Conduit runs it as a
:class:`conduit.projections.SQLProjection`; eventsourcing 9.5 runs it as a
``Projection`` driven by its ``ProjectionRunner`` on PostgreSQL, writing the same
upsert and its tracking record in one transaction per event (the runner's way).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
import sqlalchemy as sa
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from psycopg.sql import SQL, Identifier
from sqlalchemy.orm import Session

from benchmarks.common import (
    CONDUIT,
    EVENTSOURCING,
    Row,
    Section,
    Target,
    fresh_database,
    median,
    rate,
    ratio_target,
)
from conduit import EventStore
from conduit.core.effects import Op
from conduit.events import Event
from conduit.projections import SQLProjection
from conduit.subscriptions.drivers import POLL_INTERVAL
from conduit.subscriptions.runner import Runner
from conduit.subscriptions.worker import run_worker

__all__ = ["DATABASE", "ProjectionSettings", "run"]

DATABASE = "conduit_bench_projections"
EVENT = "value_added"
STREAMS = 100
Log = Callable[[str], None]

metadata = sa.MetaData()
totals = sa.Table(
    "bench_totals",
    metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
)
latencies = sa.Table(
    "bench_latency",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("seconds", sa.Float, nullable=False),
)

UPSERT = sa.text(
    "INSERT INTO bench_totals (stream, count, total) VALUES (:stream, 1, :value) "
    "ON CONFLICT (stream) DO UPDATE SET count = bench_totals.count + 1, "
    "total = bench_totals.total + :value"
)
"""The handler's statement, the same on SQLite and PostgreSQL."""


class ProjectionSettings:
    """How big: the default run or ``--quick``."""

    def __init__(self, quick: bool = False) -> None:
        self.events = 20_000 if quick else 100_000
        """Events in the store a catch-up starts from."""
        self.timebox = 3.0 if quick else 10.0
        """Seconds an unbatched (one transaction per event) catch-up runs at most."""
        self.es_timebox = 5.0 if quick else 20.0
        """Seconds eventsourcing's catch-up (one transaction per event) runs at most."""
        self.rounds = 1 if quick else 3
        """Alternating rounds of the PostgreSQL catch-ups (their medians count)."""
        self.latency_events = 50 if quick else 200
        self.pace = 0.01
        """Seconds between two pushes in a latency run."""


# -- the read model -----------------------------------------------------------


class Totals(SQLProjection):
    """Count and sum of ``value`` per stream; records latency when the event carries a send time."""

    name = "totals"
    metadata = metadata
    batch_size: ClassVar[int] = 500
    seen: list[float] | None = None
    """In-process runs: the handler appends seconds since the push (perf_counter)."""

    def on_value_added(self, event: Event, session: Session) -> None:
        data = event.data
        session.execute(UPSERT, {"stream": str(event.stream_id), "value": data["value"]})
        if "sent" in data:
            if self.seen is not None:
                self.seen.append(time.perf_counter() - data["sent_perf"])
            else:  # another process: wall-clock time
                session.execute(
                    latencies.insert().values(seq=data["seq"], seconds=time.time() - data["sent"])
                )


def _fill_conduit(store: EventStore, count: int) -> int:
    per_stream = count // STREAMS
    for stream in range(STREAMS):
        items = [(EVENT, {"value": i}) for i in range(per_stream)]
        for start in range(0, per_stream, 1000):
            store.push_many(f"s-{stream}", items[start : start + 1000])
    return store.head_position()


def _catch_up(store: EventStore, projection: Totals, batch: int, timebox: float | None) -> float:
    """Events per second of an inline catch-up from an empty read model."""
    projection.reset()
    runner = Runner(store._core, projection, stopped=threading.Event(), batch_size=batch)
    deadline = None if timebox is None else time.perf_counter() + timebox

    def before_deadline() -> Op[bool]:
        return deadline is None or time.perf_counter() < deadline
        yield  # an operation that needs nothing done

    start = time.perf_counter()
    store._runtime.run(runner.catch_up(keep_going=before_deadline))
    elapsed = time.perf_counter() - start
    with projection.engine.connect() as conn:
        done = int(conn.execute(sa.select(sa.func.sum(totals.c.count))).scalar_one() or 0)
    if timebox is None and projection.load_checkpoint() != store.head_position():
        raise RuntimeError("the catch-up did not reach the head")
    return rate(done, elapsed)


# -- raw psycopg: the floor of a catch-up of one transaction per event --------

RAW_PG = "raw psycopg"


def _raw_catch_up(url: str, timebox: float) -> float:
    """Events per second of hand-written psycopg doing what ``batch_size=1`` does:
    read the log a page of 500 at a time (JSON parsed), and for each event, in one
    transaction, the same upsert and a checkpoint update."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS raw_totals (stream text PRIMARY KEY,"
            " count bigint NOT NULL, total bigint NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS raw_checkpoint (name text PRIMARY KEY,"
            " position bigint NOT NULL)"
        )
        conn.execute("TRUNCATE raw_totals, raw_checkpoint")
        conn.execute("INSERT INTO raw_checkpoint VALUES ('totals', 0)")
        upsert = (
            "INSERT INTO raw_totals (stream, count, total) VALUES (%s, 1, %s)"
            " ON CONFLICT (stream) DO UPDATE SET count = raw_totals.count + 1,"
            " total = raw_totals.total + excluded.total"
        )
        page_sql = (
            "SELECT position, stream_id, data::text FROM conduit.events"
            " WHERE position > %s ORDER BY position LIMIT 500"
        )
        done, position = 0, 0
        start = time.perf_counter()
        deadline = start + timebox
        while time.perf_counter() < deadline:
            page = conn.execute(page_sql, (position,)).fetchall()
            if not page:
                break
            for position, stream, data in page:
                with conn.transaction():
                    conn.execute(upsert, (stream, orjson.loads(data)["value"]))
                    conn.execute(
                        "UPDATE raw_checkpoint SET position = %s WHERE name = 'totals'",
                        (position,),
                    )
                done += 1
                if time.perf_counter() >= deadline:
                    break
        return rate(done, time.perf_counter() - start)


BARE_SA = "bare SQLAlchemy"


def _bare_sqlalchemy_catch_up(url: str, timebox: float) -> float:
    """Events per second of hand-written SQLAlchemy doing what ``batch_size=1`` does, as an
    application would without Conduit: the log read as :func:`_raw_catch_up` reads it, and
    for each event a connection from the engine's pool, a transaction, a ``Session`` on it
    running the handler's upsert, and the checkpoint update (the floor of a read model
    built on SQLAlchemy)."""
    engine = sa.create_engine(_sa_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE IF NOT EXISTS bare_checkpoint (name text"
                    " PRIMARY KEY, position bigint NOT NULL)"
                )
            )
            totals.create(conn, checkfirst=True)
            conn.execute(sa.text("TRUNCATE bench_totals, bare_checkpoint"))
            conn.execute(sa.text("INSERT INTO bare_checkpoint VALUES ('totals', 0)"))
        update = sa.text("UPDATE bare_checkpoint SET position = :position WHERE name = 'totals'")
        page_sql = (
            "SELECT position, stream_id, data::text FROM conduit.events"
            " WHERE position > %s ORDER BY position LIMIT 500"
        )
        done, position = 0, 0
        with psycopg.connect(url, autocommit=True) as log_conn:
            start = time.perf_counter()
            deadline = start + timebox
            while time.perf_counter() < deadline:
                page = log_conn.execute(page_sql, (position,)).fetchall()
                if not page:
                    break
                for position, stream, data in page:
                    with (
                        engine.connect() as conn,
                        conn.begin(),
                        Session(bind=conn, join_transaction_mode="rollback_only") as session,
                    ):
                        value = orjson.loads(data)["value"]
                        session.execute(UPSERT, {"stream": stream, "value": value})
                        conn.execute(update, {"position": position})
                    done += 1
                    if time.perf_counter() >= deadline:
                        break
            return rate(done, time.perf_counter() - start)
    finally:
        engine.dispose()


# -- eventsourcing ------------------------------------------------------------


class Counter(Aggregate):
    """An eventsourcing aggregate whose events carry a value."""

    @event("Created")
    def __init__(self) -> None:
        self.count = 0

    @event("ValueAdded")
    def add(self, value: int) -> None:
        self.count += 1


class Counters(Application[uuid.UUID]):
    """The application whose events the eventsourcing projection follows."""

    name = "Counters"


class TotalsView(PostgresTrackingRecorder):
    """eventsourcing's materialised view: the same table, upserted with the tracking record."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.es_totals (stream text PRIMARY KEY, "
                "count bigint NOT NULL, total bigint NOT NULL)"
            ).format(Identifier(self.datastore.schema))
        )
        self.upsert = SQL(
            "INSERT INTO {0}.es_totals AS t VALUES (%(stream)s, 1, %(value)s) "
            "ON CONFLICT (stream) DO UPDATE SET count = t.count + 1, total = t.total + %(value)s"
        ).format(Identifier(self.datastore.schema))

    def add(self, stream: str, value: int, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.upsert, {"stream": stream, "value": value}, prepare=True)
            self._insert_tracking(curs, tracking)


class TotalsProjection(Projection[TotalsView]):
    """Upserts each ValueAdded; records the tracking of every other event."""

    name = "es_totals"

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        if isinstance(domain_event, Counter.ValueAdded):  # type: ignore[attr-defined]
            self.view.add(str(domain_event.originator_id), domain_event.value, tracking)
        else:
            self.view.insert_tracking(tracking)


def _es_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/"),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": parts.username or "postgres",
        "POSTGRES_PASSWORD": parts.password or "",
        "POSTGRES_SCHEMA": "es",
    }


def _eventsourcing_fill(url: str, count: int) -> tuple[int, set[str]]:
    """eventsourcing's events for its catch-up: (the log's head, the tables they are in)."""
    env = _es_env(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS es")
    app = Counters(env)
    per_stream = count // STREAMS - 1  # plus the Created event
    for _ in range(STREAMS):
        counter = Counter()
        for i in range(per_stream):
            counter.add(i)
        app.save(counter)
    head = app.recorder.max_notification_id() or 0
    app.close()
    return head, _es_tables(url)


def _es_tables(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'es'").fetchall()
    return {name for (name,) in rows}


def _eventsourcing_catch_up(
    url: str, head: int, events: set[str], timebox: float
) -> tuple[float, int]:
    """eventsourcing's ProjectionRunner from an empty view (every table of ``es`` but the
    application's ``events`` dropped first): (events/s, events handled)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for name in sorted(_es_tables(url) - events):
            conn.execute(SQL("DROP TABLE {0}.{1}").format(Identifier("es"), Identifier(name)))
    start = time.perf_counter()
    with ProjectionRunner(
        application_class=Counters,
        projection_class=TotalsProjection,
        view_class=TotalsView,
        env=_es_env(url),
    ) as runner:
        with suppress(TimeoutError):
            runner.wait(head, timeout=timebox)
        elapsed = time.perf_counter() - start
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT sum(count), count(*) FROM es.es_totals").fetchone()
        done = int(row[0] or 0) + int(row[1] or 0) if row else 0  # value events + Created
    return rate(done, elapsed), done


# -- latency ------------------------------------------------------------------


def _latency_events(store: EventStore, settings: ProjectionSettings) -> None:
    for seq in range(settings.latency_events):
        data = {"value": seq, "seq": seq, "sent": time.time(), "sent_perf": time.perf_counter()}
        store.push(EVENT, "latency", data)
        time.sleep(settings.pace)


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


def _in_process(
    store_url: str, readmodel: str, mode: str, settings: ProjectionSettings
) -> tuple[float, float]:
    projection = Totals(readmodel, name=f"latency_{mode}")
    projection.reset()
    seen: list[float] = []
    projection.seen = seen
    with EventStore(store_url) as store:
        store.setup()
        subscription = store.subscribe(projection, mode=mode)  # type: ignore[call-overload]
        store.push(EVENT, "latency", {"value": 0})  # warm-up, not measured
        subscription.wait_for(store.head_position(), timeout=30)
        _latency_events(store, settings)
        subscription.wait_for(store.head_position(), timeout=30)
    projection.engine.dispose()
    return _percentiles(seen)


def _worker_main(store_url: str, readmodel: str, name: str, poll: float) -> None:
    """The child process: a worker driving one projection until SIGTERM."""
    store = EventStore(store_url)
    run_worker(store, [Totals(readmodel, name=name)], poll_interval=poll)


def _worker(
    store_url: str,
    readmodel: str,
    name: str,
    poll: float,
    notify: bool,
    settings: ProjectionSettings,
) -> tuple[float, float]:
    projection = Totals(readmodel, name=name)
    projection.reset()
    with projection.engine.begin() as conn:
        conn.execute(latencies.delete())
    context = multiprocessing.get_context("spawn")
    store = EventStore(store_url, notify=True) if notify else EventStore(store_url)
    store.setup()
    child = context.Process(target=_worker_main, args=(store_url, readmodel, name, poll))
    child.start()
    try:
        store.push(EVENT, "latency", {"value": 0, "seq": -1, "sent": time.time()})  # warm-up
        _wait_rows(projection, 1, child)
        _latency_events(store, settings)
        _wait_rows(projection, settings.latency_events + 1, child)
    finally:
        child.terminate()
        child.join(30)
        store.close()
    with projection.engine.connect() as conn:
        found = conn.execute(sa.select(latencies.c.seconds).where(latencies.c.seq >= 0)).scalars()
        return _percentiles(list(found))


def _wait_rows(projection: Totals, count: int, child: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with projection.engine.connect() as conn:
            if (
                conn.execute(sa.select(sa.func.count()).select_from(latencies)).scalar_one()
                >= count
            ):
                return
        if not child.is_alive():
            raise RuntimeError("the worker process died")
        time.sleep(0.02)
    raise TimeoutError(f"the worker did not record {count} latencies within {timeout} s")


# -- the section --------------------------------------------------------------

MODES = ("inline", "background")
CATCH_BATCHED = "catch-up, batch_size 500 ({engine}, events/s)"
CATCH_SINGLE = "catch-up, batch_size 1 ({engine}, events/s)"


Rounds = dict[str, list[float]]


def _pg_rounds(
    url: str,
    store: EventStore,
    projection: Totals,
    es_head: int,
    es_events: set[str],
    settings: ProjectionSettings,
    log: Log,
) -> tuple[Rounds, Rounds, int]:
    """The PostgreSQL catch-ups, each contender once a round, their order rotating:
    (batched figures, ``batch_size=1`` figures, events eventsourcing handled in its last)."""
    done = [0]

    def eventsourcing() -> float:
        figure, done[0] = _eventsourcing_catch_up(url, es_head, es_events, settings.es_timebox)
        return figure

    batched: dict[str, Callable[[], float]] = {
        CONDUIT: lambda: _catch_up(store, projection, 500, None),
        EVENTSOURCING: eventsourcing,
    }
    single: dict[str, Callable[[], float]] = {
        CONDUIT: lambda: _catch_up(store, projection, 1, settings.timebox),
        RAW_PG: lambda: _raw_catch_up(url, settings.timebox),
        BARE_SA: lambda: _bare_sqlalchemy_catch_up(url, settings.timebox),
    }
    found: tuple[Rounds, Rounds] = ({n: [] for n in batched}, {n: [] for n in single})
    for round_ in range(settings.rounds):
        for contenders, figures in zip((batched, single), found, strict=True):
            names = list(contenders)
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                figures[name].append(contenders[name]())
        log(
            f"PostgreSQL catch-up, round {round_ + 1}: "
            + ", ".join(f"{n} batched {v[-1]:,.0f}/s" for n, v in found[0].items())
            + "; "
            + ", ".join(f"{n} one per transaction {v[-1]:,.0f}/s" for n, v in found[1].items())
        )
    return found[0], found[1], done[0]


def _sa_url(url: str) -> str:
    """The read model's SQLAlchemy URL on PostgreSQL: the psycopg (3) driver."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _latency_rows(section: Section, engine: str, figures: dict[str, tuple[float, float]]) -> None:
    for driver, (p50, p99) in figures.items():
        section.extra.append(Row(f"latency p50, {driver} ({engine}, ms)", "ms", {CONDUIT: p50}))
        section.extra.append(Row(f"latency p99, {driver} ({engine}, ms)", "ms", {CONDUIT: p99}))


def run(quick: bool, workdir: Path, server_url: str, log: Log) -> Section:
    """Measure the projection figures on SQLite and PostgreSQL."""
    load_start = os.getloadavg()
    settings = ProjectionSettings(quick)
    section = Section(
        "Projections (issue 4)",
        [CONDUIT, RAW_PG, BARE_SA, EVENTSOURCING],
        extra_title="Push-to-projection latency (Conduit)",
    )
    latency: dict[str, dict[str, tuple[float, float]]] = {}

    # SQLite: the events and the read model in two files.
    events_url = f"sqlite:///{workdir / 'projections-events.db'}"
    readmodel = f"sqlite:///{workdir / 'projections-readmodel.db'}"
    with EventStore(events_url) as store:
        store.setup()
        head = _fill_conduit(store, settings.events)
        log(f"SQLite: {head} events written; catching up")
        projection = Totals(readmodel)
        batched = _catch_up(store, projection, 500, None)
        single = _catch_up(store, projection, 1, settings.timebox)
        projection.engine.dispose()
    section.rows.append(Row(CATCH_BATCHED.format(engine="SQLite"), "events/s", {CONDUIT: batched}))
    section.rows.append(Row(CATCH_SINGLE.format(engine="SQLite"), "events/s", {CONDUIT: single}))
    log(f"SQLite catch-up: {batched:,.0f} batched, {single:,.0f} unbatched events/s")

    def lite(driver: str) -> str:
        return f"sqlite:///{workdir / f'projections-latency-{driver}.db'}"

    figures = {mode: _in_process(lite(mode), readmodel, mode, settings) for mode in MODES}
    figures["worker, polling"] = _worker(
        lite("worker"), readmodel, "latency_worker", POLL_INTERVAL, False, settings
    )
    latency["SQLite"] = figures
    _latency_rows(section, "SQLite", figures)
    log(f"SQLite latency: {figures}")

    with fresh_database(server_url, DATABASE) as url:
        with EventStore(url) as store:
            store.setup()
            head = _fill_conduit(store, settings.events)
            es_head, es_events = _eventsourcing_fill(url, settings.events)
            log(
                f"PostgreSQL: events written (log head at position {head}; eventsourcing's at "
                f"{es_head}); catching up in {settings.rounds} rounds"
            )
            projection = Totals(_sa_url(url))
            found = _pg_rounds(url, store, projection, es_head, es_events, settings, log)
            projection.engine.dispose()
        batched_rounds, single_rounds, es_done = found
        section.rows.append(
            Row(
                CATCH_BATCHED.format(engine="PostgreSQL"),
                "events/s",
                {n: median(v) for n, v in batched_rounds.items()},
            )
        )
        section.rows.append(
            Row(
                CATCH_SINGLE.format(engine="PostgreSQL"),
                "events/s",
                {n: median(v) for n, v in single_rounds.items()},
            )
        )

        def pg(driver: str) -> str:
            return urlunsplit((*urlsplit(url)[:3], f"schema=latency_{driver}", ""))

        model = _sa_url(url)
        figures = {mode: _in_process(pg(mode), model, mode, settings) for mode in MODES}
        figures["worker, NOTIFY"] = _worker(
            pg("notify"), model, "latency_worker_notify", POLL_INTERVAL, True, settings
        )
        figures["worker, polling"] = _worker(
            pg("poll"), model, "latency_worker_poll", POLL_INTERVAL, False, settings
        )
        latency["PostgreSQL"] = figures
        _latency_rows(section, "PostgreSQL", figures)
        log(f"PostgreSQL latency: {figures}")

    section.notes.append(_load_note(load_start))
    _targets(section, batched_rounds, single_rounds, latency)
    _notes(section, settings, es_done)
    return section


def _targets(
    section: Section,
    batched: Rounds,
    single: Rounds,
    latency: dict[str, dict[str, tuple[float, float]]],
) -> None:
    section.targets += [
        ratio_target(
            "catch-up on PostgreSQL, batch_size 500, vs eventsourcing's ProjectionRunner",
            batched[CONDUIT],
            batched[EVENTSOURCING],
            3.0,
        ),
        ratio_target(
            "catch-up on PostgreSQL, batch_size 1, vs raw psycopg (the same upsert and "
            "checkpoint update, one transaction per event)",
            single[CONDUIT],
            single[RAW_PG],
            0.8,
        ),
    ]
    for engine, figures in latency.items():
        for driver in ("background", "worker, NOTIFY", "worker, polling"):
            if driver in figures:
                section.targets.append(
                    Target(
                        f"{driver} p99 latency ({engine}) / 50 ms",
                        figures[driver][1] / 50.0,
                        1.0,
                        at_most=True,
                    )
                )


def _notes(section: Section, settings: ProjectionSettings, es_done: int) -> None:
    section.notes += [
        f"The read model: one row per stream (count and sum of `value`), upserted by each "
        f"`{EVENT}` event; {settings.events:,} events over {STREAMS} streams, written "
        "beforehand with `push_many` (1,000 at a time).",
        "Catch-up: an inline subscription made after the events exist, timed from the first "
        "read to the checkpoint reaching the head (an empty read model each time; tables "
        "created before timing). `batch_size 500`: 500 events and the checkpoint per "
        "transaction. `batch_size 1`: one transaction per event, stopped after "
        f"{settings.timebox:.0f} s and reported over the events it handled.",
        "SQLite: the events in one file (Conduit's defaults, WAL, `synchronous=FULL`), the read "
        "model in another through SQLAlchemy's defaults (rollback journal, `synchronous=FULL`). "
        "PostgreSQL: the events and the read model in one database created for the run.",
        "Raw psycopg (PostgreSQL, `batch_size 1` only: the floor of one transaction per "
        "event): one autocommit connection reads Conduit's `events` table a page of 500 at a "
        "time (`data` parsed with orjson) and, for each event, runs in one transaction the "
        "same upsert into a table of its own and an `UPDATE` of its checkpoint row; "
        f"time-boxed at {settings.timebox:.0f} s like Conduit's.",
        f"{BARE_SA} (PostgreSQL, `batch_size 1` only: the floor of a read model built on "
        "SQLAlchemy, as Conduit's are): the log read as raw psycopg reads it and, for each "
        "event, what an application writing that read model with SQLAlchemy alone would do: "
        "a connection from the engine's pool, a transaction, a `Session` on it running the "
        "same upsert (into Conduit's table, emptied first), and an `UPDATE` of a checkpoint "
        f"row; time-boxed at {settings.timebox:.0f} s. Conduit / {BARE_SA} shows what "
        "Conduit adds to SQLAlchemy; {BARE_SA} / raw psycopg what SQLAlchemy adds to the "
        "driver.".replace("{BARE_SA}", BARE_SA),
        "SQLite's two catch-ups run once (100,000 events, or the time box). On PostgreSQL "
        f"each contender runs once a round, in {settings.rounds} rounds, their order "
        "rotating: each figure is the median of its rounds, and each ratio target the median "
        "of the rounds' ratios (each round's Conduit figure over the other's), their "
        "lowest\u2013highest in brackets.",
        f"eventsourcing: 9.5's `ProjectionRunner` with a `Projection` whose view subclasses "
        "`PostgresTrackingRecorder` (single-row tracking) and writes the same upsert and its "
        "tracking record in one transaction per event, as its runner hands events one at a "
        f"time (it has no batch size; its figure stands in both rows). It handled {es_done:,} "
        f"of {settings.events:,} events in its last round (time-boxed at "
        f"{settings.es_timebox:.0f} s, from an empty view each round), written once "
        "by an eventsourcing `Application` (100 aggregates, each a `Created` and value events). "
        "Conduit's handler runs one upsert per event through the SQLAlchemy `Session` it is "
        "given (a round trip each on PostgreSQL); the batch shares one transaction. "
        "Timing starts when the runner is constructed (its view's `CREATE TABLE IF NOT EXISTS` "
        "included, a few ms).",
        f"Latency: {settings.latency_events} events pushed {settings.pace * 1000:.0f} ms apart "
        "after a warm-up event; each carries its send time. Inline and background: measured "
        "with `time.perf_counter()` in the handler (inline includes the push's own commit, as "
        "the handler runs after it). Worker: a child process running "
        "`conduit.subscriptions.worker.run_worker` (poll interval "
        f"{POLL_INTERVAL} s, the default), which records "
        "`time.time()` minus the send time in a table; `NOTIFY` = the pushing store opened "
        "with `notify=True` so that the worker's LISTEN wakes it; polling = notify off.",
        "Latency targets are expressed as the p99 divided by 50 ms (at most 1x passes). The "
        "target asks for an idle machine: see the load average at start and end above.",
    ]


def _load_note(start: tuple[float, float, float]) -> str:
    def text(load: tuple[float, float, float]) -> str:
        return ", ".join(f"{x:.2f}" for x in load)

    return (
        f"Machine load (1, 5, 15 min load average) at the start of this section: {text(start)}; "
        f"at its end: {text(os.getloadavg())} (2 cores)."
    )
