"""``python -m benchmarks --only scale``: Conduit on a store of 10 M events, on both engines.

One store grows in stages (0, then 1 M, then 10 M events in streams of 100,
written with ``push_many``); at each stage every figure is measured on it
and, in the same rounds, on an empty reference store (only the probe
streams), the two taking turns to go first. A ratio is the median, over the
rounds, of each round's large-store figure divided by the reference's, so
that the machine's noise hits both sides of it alike.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.common import fresh_database
from benchmarks.scale_build import STREAM_EVENTS, Layout, grow, stream_id
from benchmarks.scale_measure import (
    LATENCIES,
    Latency,
    Subject,
    log_rate,
    percentile,
    size_bytes,
    time_calls,
)
from benchmarks.scale_measure import startup as measure_startup
from benchmarks.scale_plans import Work, capturing, explain
from benchmarks.scale_writers import Writers
from conduit import EventStore

__all__ = ["DATABASE", "EngineRun", "Metric", "ScaleRun", "ScaleSettings", "metrics", "run"]

DATABASE = "conduit_scale"
"""The PostgreSQL database the full run creates, and drops afterwards."""

Log = Callable[[str], None]


@dataclass(frozen=True)
class ScaleSettings:
    """How big and how long: the full run, or ``--quick`` (a smoke run of the code)."""

    stages: tuple[int, ...] = (0, 1_000_000, 10_000_000)
    """Events in the large store at each stage (the first is the empty store)."""
    probe_streams: int = 300
    """Streams of 100 events in the empty store (and at the start of the large one): enough
    for full first pages of streams, also by prefix."""
    rounds: int = 3
    append_seconds: float = 2.0
    log_seconds: float = 1.0
    samples: int = 300
    """Calls timed per round for the API's reads."""
    pages: int = 100
    """Calls timed per round for each browser page."""
    commands: int = 5
    """Calls timed per round for CLI commands run in-process, and the lagging-projection ones."""
    processes: int = 3
    """Calls timed per round for the CLI run as a subprocess (0: not measured)."""
    budget: float = 15.0
    """Seconds of calls after which an operation's timing stops early (5 calls at least)."""
    writers: tuple[int, ...] = (1, 8)
    """Writer processes for the append rate (PostgreSQL; SQLite measures one)."""
    build_processes: int = 2
    """Processes writing the PostgreSQL store (SQLite: one)."""
    startup_runs: int = 10

    @classmethod
    def quick(cls) -> ScaleSettings:
        """100,000 events, tiny timings, two rounds: checks that the code runs, and no more."""
        return cls(
            stages=(0, 100_000),
            probe_streams=20,
            rounds=2,
            append_seconds=0.2,
            log_seconds=0.05,
            samples=8,
            pages=3,
            commands=1,
            processes=0,
            budget=1.0,
            writers=(1, 2),
            startup_runs=1,
        )


@dataclass(frozen=True)
class Metric:
    """One figure of the tables: which way is better and what the issue requires."""

    key: str
    label: str
    unit: str
    higher_is_better: bool = False
    ratio: float | None = 3.0
    """The required ratio to the empty store (at most, or at least when higher is better)."""
    limit_ms: float | None = None
    """An absolute bound at the largest stage (the point reads' p99)."""


@dataclass
class Build:
    """One stage's growth of the large store."""

    stage: int
    events: int
    seconds: float
    maintenance: float
    """Seconds of VACUUM ANALYZE (PostgreSQL) or the WAL checkpoint (SQLite) afterwards."""


@dataclass
class EngineRun:
    """Everything one engine's run measured."""

    engine: str
    stages: list[int]
    values: dict[tuple[str, int, str], list[float]] = field(default_factory=dict)
    """(metric key, stage, "large" or "empty") -> the figure of each round."""
    work: dict[tuple[str, int], Work] = field(default_factory=dict)
    """(operation key, stage) -> what one call asked of the engine, on the large store."""
    builds: list[Build] = field(default_factory=list)
    events: dict[int, int] = field(default_factory=dict)
    """Stage -> events in the large store when measured."""
    facts: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent on each measurement, every stage and round."""


@dataclass
class ScaleRun:
    """The whole scale run."""

    settings: ScaleSettings
    engines: list[EngineRun] = field(default_factory=list)
    startup: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def metrics(engine: str, settings: ScaleSettings) -> list[Metric]:
    """The figures of an engine's table, in order."""
    writers = settings.writers if engine == "postgresql" else settings.writers[:1]
    found = [
        Metric(
            f"append.{n}",
            f"appends/s, one event per push, {n} writer{'s' if n > 1 else ''}",
            "events/s",
            higher_is_better=True,
            ratio=0.8,
        )
        for n in writers
    ]
    found.append(
        Metric(
            "log_rate",
            "`read_all(after=middle)`",
            "events/s",
            higher_is_better=True,
            ratio=1 / 3,
        )
    )
    for latency in LATENCIES:
        if not getattr(settings, latency.samples):
            continue
        if latency.samples in ("commands", "processes"):
            found.append(Metric(f"{latency.key}.p50", f"{latency.label}, median", "ms"))
            continue
        found.append(Metric(f"{latency.key}.p50", f"{latency.label}, p50", "ms"))
        limit = 10.0 if latency.point else None
        found.append(Metric(f"{latency.key}.p99", f"{latency.label}, p99", "ms", limit_ms=limit))
    found.append(Metric("size", "size on disk per event", "bytes", ratio=None))
    return found


def run(
    settings: ScaleSettings,
    workdir: Path,
    postgres_url: str | None,
    log: Log,
    *,
    database: str = DATABASE,
) -> ScaleRun:
    """Run the scale benchmark on SQLite (in ``workdir``) and PostgreSQL.

    ``postgres_url`` names a server (a superuser) on which the run creates the
    database ``database`` and drops it afterwards; ``None`` skips PostgreSQL.
    """
    started = time.perf_counter()
    result = ScaleRun(settings)
    log("scale: start-up times")
    result.startup = measure_startup(settings.startup_runs)
    result.engines.append(_sqlite(settings, workdir, log))
    if postgres_url is not None:
        try:
            with fresh_database(postgres_url, database) as url:
                result.engines.append(_postgres(settings, url, log))
        except (psycopg.Error, RuntimeError) as exc:  # report what could not run
            result.skipped["PostgreSQL"] = f"{type(exc).__name__}: {exc}"
            log(f"scale: PostgreSQL failed: {exc}")
    result.seconds = time.perf_counter() - started
    return result


def _sqlite(settings: ScaleSettings, workdir: Path, log: Log) -> EngineRun:
    folder = workdir / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    try:

        def subject(label: str, layout: Layout) -> Subject:
            path = str(folder / f"{label}.db")
            return Subject(label, "sqlite", f"sqlite:///{path}", path, "", layout)

        def reset(label: str) -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(folder / f"{label}.db{suffix}").unlink(missing_ok=True)

        def maintain(target: Subject) -> None:
            conn = sqlite3.connect(target.target)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()

        return _engine(
            "sqlite", settings, subject, reset, maintain, {"synchronous": "normal"}, {}, 1, log
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _postgres(settings: ScaleSettings, database: str, log: Log) -> EngineRun:
    def subject(label: str, layout: Layout) -> Subject:
        name = f"scale_{label}"
        separator = "&" if "?" in database else "?"
        return Subject(
            label, "postgresql", f"{database}{separator}schema={name}", database, name, layout
        )

    def reset(label: str) -> None:
        name = f"scale_{label}"
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def maintain(target: Subject) -> None:
        with psycopg.connect(database, autocommit=True) as conn:
            for table in ("events", "streams"):
                conn.execute(f'VACUUM ANALYZE "{target.schema}".{table}')
            conn.execute("CHECKPOINT")

    try:
        found = _engine(
            "postgresql",
            settings,
            subject,
            reset,
            maintain,
            {"pool_size": 1},
            {"pool_size": 1},
            settings.build_processes,
            log,
        )
        found.facts.update(_server_facts(database))
        return found
    finally:
        reset("large")
        reset("empty")


def _server_facts(url: str) -> dict[str, str]:
    names = ("server_version", "shared_buffers", "synchronous_commit", "work_mem")
    with psycopg.connect(url) as conn:
        shown = {}
        for name in names:
            row = conn.execute(f"SHOW {name}").fetchone()
            shown[name] = str(row[0]) if row else "?"
    return {"PostgreSQL": ", ".join(f"{k}={v}" for k, v in shown.items())}


def _engine(
    engine: str,
    settings: ScaleSettings,
    subject: Callable[[str, Layout], Subject],
    reset: Callable[[str], None],
    maintain: Callable[[Subject], None],
    build_options: dict[str, Any],
    writer_options: dict[str, Any],
    build_processes: int,
    log: Log,
) -> EngineRun:
    """Grow the large store stage by stage and measure it against a fresh empty one."""
    started = time.perf_counter()
    result = EngineRun(engine, list(settings.stages))
    clock = datetime.now(UTC) - timedelta(milliseconds=max(settings.stages) + 3_600_000)
    large = subject("large", Layout(clock, settings.probe_streams))
    reset("large")
    EventStore(large.url).setup()
    writers = settings.writers if engine == "postgresql" else settings.writers[:1]
    with Writers(max(*writers, build_processes)) as pool:
        for stage in settings.stages:
            streams = max(settings.probe_streams, stage // STREAM_EVENTS)
            log(f"scale {engine}: growing the store to {streams * STREAM_EVENTS:,} events")
            before = large.layout.events
            builders = pool.pool if build_processes > 1 else None
            seconds = grow(
                large.url, build_options, large.layout, streams, builders, build_processes, log
            )
            tick = time.perf_counter()
            maintain(large)
            upkeep = time.perf_counter() - tick
            result.builds.append(Build(stage, large.layout.events - before, seconds, upkeep))
            empty = subject("empty", Layout(clock, settings.probe_streams))
            reset("empty")
            EventStore(empty.url).setup()
            grow(empty.url, build_options, empty.layout, settings.probe_streams, None, 1, log)
            maintain(empty)
            _stage(result, settings, stage, (large, empty), (pool, writers, writer_options), log)
            reset("empty")
    result.seconds = time.perf_counter() - started
    return result


def _stage(
    result: EngineRun,
    settings: ScaleSettings,
    stage: int,
    subjects: tuple[Subject, Subject],
    appending: tuple[Writers, tuple[int, ...], dict[str, Any]],
    log: Log,
) -> None:
    engine = result.engine
    large, empty = subjects
    pool, writers, writer_options = appending
    streams = {t.label: [stream_id(o) for o in range(t.layout.streams)] for t in subjects}
    for target in (large, empty):
        target.open()
    try:
        rng = random.Random(stage)

        def record(key: str, target: Subject, value: float) -> None:
            result.values.setdefault((key, stage, target.label), []).append(value)

        def append(n: int) -> Callable[[Subject], None]:
            def measure(target: Subject) -> None:
                seed = rng.randrange(1 << 30)
                rate, _ = pool.rate(
                    target.url,
                    writer_options,
                    streams[target.label],
                    n,
                    settings.append_seconds,
                    seed,
                )
                record(f"append.{n}", target, rate)

            return measure

        def read_log(target: Subject) -> None:
            record("log_rate", target, log_rate(target, settings.log_seconds))

        def timed(latency: Latency) -> Callable[[Subject], None]:
            def measure(target: Subject) -> None:
                count = getattr(settings, latency.samples)
                found = time_calls(target, latency, count, settings.budget, rng)
                record(f"{latency.key}.calls", target, len(found))
                record(f"{latency.key}.p50", target, percentile(found, 0.5) * 1000)
                record(f"{latency.key}.p99", target, percentile(found, 0.99) * 1000)

            return measure

        latencies = [x for x in LATENCIES if getattr(settings, x.samples)]
        measures = [*map(append, writers), read_log, *map(timed, latencies)]
        names = [*(f"append.{n}" for n in writers), "log_rate", *(x.key for x in latencies)]
        for round_ in range(settings.rounds):
            log(f"scale {engine} at {stage:,}: round {round_ + 1} of {settings.rounds}")
            for j, measure in enumerate(measures):
                # Each measurement alternates which store goes first, round by round.
                tick = time.perf_counter()
                for target in (large, empty) if (round_ + j) % 2 == 0 else (empty, large):
                    measure(target)
                spent = result.timings.get(names[j], 0.0) + time.perf_counter() - tick
                result.timings[names[j]] = spent
        for target in (large, empty):
            record("size", target, size_bytes(target) / max(1, target.events()))
        result.events[stage] = large.events()
        log(f"scale {engine} at {stage:,}: plans")
        for latency in LATENCIES:
            if latency.captured:
                result.work[latency.key, stage] = _work(large, latency, rng)
        result.work["log_page", stage] = _log_page_work(large)
    finally:
        for target in (large, empty):
            target.close()


def _work(target: Subject, latency: Latency, rng: random.Random) -> Work:
    call = latency.make(target, rng)
    with latency.around(target), capturing() as statements:
        call()
    return explain(target.engine, target.target, statements)


def _log_page_work(target: Subject) -> Work:
    with capturing() as statements:
        list(target.store.read_all(after=target.layout.middle, limit=500))
    return explain(target.engine, target.target, statements)
