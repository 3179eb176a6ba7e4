"""Asyncio and group commit (issue 13): ``AsyncEventStore`` under concurrent tasks.

On PostgreSQL, in one database made for the run: one process pushing one
event at a time from 1, 8 and 64 asyncio tasks (one ``AsyncEventStore``, a
pool of 8 connections, group commit on; 64 tasks also with it off), each task
to a stream of its own with its expected version, against 8 writer processes
doing the same through the sync ``EventStore`` and raw psycopg's 8-process
single-row ``INSERT``s (the writers of the PostgreSQL section). Every push's
latency is kept for the p99 at 64 tasks. Reads: one 10,000-event stream, read
whole by ``AsyncEventStore.read`` and by ``EventStore.read``, each event counted and
dropped (a list of the async read's events, as an earlier version kept, costs it a
tenth of its rate in the garbage collector's passes over them).

On SQLite (``synchronous=FULL``, Conduit's default): 64 tasks on one
``AsyncEventStore`` with group commit, against one thread pushing through the
sync ``EventStore``, each on a file of its own.

Rounds alternate the contenders' order; a ratio is the median of the rounds'
ratios, shown with its range.
"""

from __future__ import annotations

import asyncio
import functools
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import EVENT_NAME, Row, Section, Target, event_data, fresh_database
from benchmarks.pg_contenders import prepare
from benchmarks.pg_workers import WriterPool
from conduit import AsyncEventStore, EventStore

__all__ = ["DATABASE", "run"]

DATABASE = "conduit_async_bench"
ASYNC = "Conduit async"
SYNC = "Conduit sync"
RAW = "raw psycopg"
TASKS = (1, 8, 64)
POOL = 8
PROCESSES = 8
STREAM = 10_000
LATENCY_MS = 50.0
"""The issue's bound on the p99 push latency at 64 tasks."""
Log = Callable[[str], None]


@dataclass(frozen=True)
class _Settings:
    rounds: int
    duration: float
    stream: int


def _settings(quick: bool) -> _Settings:
    if quick:
        return _Settings(rounds=2, duration=0.3, stream=1_000)
    return _Settings(rounds=3, duration=3.0, stream=STREAM)


async def _push_tasks(
    store: AsyncEventStore, tasks: int, duration: float
) -> tuple[float, list[float]]:
    """Events/s of ``tasks`` tasks pushing one event at a time, and every push's latency."""
    latencies: list[float] = []
    counts = [0] * tasks
    streams = [uuid.uuid4() for _ in range(tasks)]
    for stream in streams:  # the streams exist; the statements are prepared
        await store.push(EVENT_NAME, stream, event_data(0), expected_version=0)
    start = time.perf_counter()
    deadline = start + duration

    async def pusher(index: int) -> None:
        stream, version = streams[index], 1
        while True:
            began = time.perf_counter()
            await store.push(EVENT_NAME, stream, event_data(version), expected_version=version)
            now = time.perf_counter()
            latencies.append(now - began)
            version += 1
            counts[index] += 1
            if now >= deadline:
                return

    await asyncio.gather(*(pusher(i) for i in range(tasks)))
    return sum(counts) / (time.perf_counter() - start), latencies


def _async_pushes(
    url: str, tasks: int, duration: float, **options: Any
) -> tuple[float, list[float]]:
    async def main() -> tuple[float, list[float]]:
        async with AsyncEventStore(url, **options) as store:
            return await _push_tasks(store, tasks, duration)

    return asyncio.run(main())


def _sync_pushes(url: str, duration: float) -> float:
    with EventStore(url) as store:
        stream = uuid.uuid4()
        store.push(EVENT_NAME, stream, event_data(0), expected_version=0)
        count, version = 0, 1
        start = time.perf_counter()
        deadline = start + duration
        while True:
            store.push(EVENT_NAME, stream, event_data(version), expected_version=version)
            version += 1
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                return count / (now - start)


def _reads(url: str, events: int) -> tuple[float, float]:
    """Events/s reading one stream whole: (async, sync), each the best of 3 reads."""
    stream = uuid.uuid4()
    with EventStore(url) as store:
        for first in range(0, events, 1_000):
            batch = [(EVENT_NAME, event_data(n)) for n in range(first, min(events, first + 1_000))]
            store.push_many(stream, batch)
        sync = []
        for attempt in range(4):  # the first warms up, as the async store's does
            start = time.perf_counter()
            assert sum(1 for _ in store.read(stream)) == events
            if attempt:
                sync.append(events / (time.perf_counter() - start))

    async def main() -> list[float]:
        found = []
        async with AsyncEventStore(url) as store:
            for attempt in range(4):  # the first warms up: connections made, statements prepared
                start = time.perf_counter()
                count = 0
                async for _event in store.read(stream):  # kept no longer than the sync read's
                    count += 1
                assert count == events
                if attempt:
                    found.append(events / (time.perf_counter() - start))
        return found

    return max(asyncio.run(main())), max(sync)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(0.99 * len(ordered)) - 1))]


def _spread(values: list[float], unit: str = "x") -> str:
    fmt = "{:.2f}" if unit == "x" else "{:,.0f}" if unit == "/s" else "{:.1f}"
    low, high = min(values), max(values)
    middle = fmt.format(statistics.median(values))
    return f"{middle}{unit} ({fmt.format(low)}\u2013{fmt.format(high)})"


def run(
    quick: bool, workdir: Path, server_url: str, log: Log, *, database: str = DATABASE
) -> Section:
    """Measure the issue's asyncio figures; returns the section. ``database`` is made
    on the server for the run and dropped after it."""
    settings = _settings(quick)
    load = os.getloadavg()
    section = Section("Asyncio and group commit (issue 13)", [ASYNC, SYNC, RAW])
    rates: dict[str, list[float]] = {}
    p99s: list[float] = []
    ratios: dict[str, list[float]] = {"raw": [], "sync8": [], "read": [], "sqlite": []}
    with fresh_database(server_url, database) as url, WriterPool(PROCESSES) as pool:
        for round_ in range(settings.rounds):
            schema = f"async_{round_}"
            prepare("conduit", url, schema)
            prepare("raw-single", url, f"raw_{round_}")
            store_url = f"{url}?schema={schema}&pool_size={POOL}"
            contenders = _push_contenders(
                pool, url, store_url, schema, f"raw_{round_}", settings.duration, rates, p99s
            )
            if round_ % 2:
                contenders.reverse()
            for name, measure in contenders:
                log(f"async: round {round_ + 1}: PostgreSQL {name}")
                measure()
            ratios["raw"].append(rates[f"async.{max(TASKS)}"][-1] / rates["raw.8"][-1])
            ratios["sync8"].append(rates[f"async.{max(TASKS)}"][-1] / rates["sync.8"][-1])
            log(f"async: round {round_ + 1}: PostgreSQL reads")
            async_read, sync_read = _reads(f"{url}?schema={schema}", settings.stream)
            rates.setdefault("read.async", []).append(async_read)
            rates.setdefault("read.sync", []).append(sync_read)
            ratios["read"].append(async_read / sync_read)
            log(f"async: round {round_ + 1}: SQLite")
            lite = [
                ("async", workdir / f"async-{round_}.db"),
                ("sync", workdir / f"sync-{round_}.db"),
            ]
            if round_ % 2:
                lite.reverse()
            for kind, path in lite:
                if kind == "async":
                    rate, _ = _async_pushes(f"sqlite:///{path}", max(TASKS), settings.duration)
                    rates.setdefault("sqlite.async", []).append(rate)
                else:
                    rates.setdefault("sqlite.sync", []).append(
                        _sync_pushes(f"sqlite:///{path}", settings.duration)
                    )
            ratios["sqlite"].append(rates["sqlite.async"][-1] / rates["sqlite.sync"][-1])
    _rows(section, rates, p99s, settings.stream)
    _targets(section, ratios, p99s, settings.stream)
    section.notes.insert(0, _load_note(load, os.getloadavg()))
    section.notes += _notes(settings)
    return section


def _load_note(start: tuple[float, ...], end: tuple[float, ...]) -> str:
    def text(load: tuple[float, ...]) -> str:
        return ", ".join(f"{x:.2f}" for x in load)

    return (
        f"Machine load (1, 5, 15 min load average) at the start of this section: {text(start)}; "
        f"at its end: {text(end)} (2 cores; the section's own writer processes and server "
        "count in it: the issue's figures are asked of an idle machine)."
    )


def _push_contenders(
    pool: WriterPool,
    url: str,
    store_url: str,
    schema: str,
    raw_schema: str,
    duration: float,
    rates: dict[str, list[float]],
    p99s: list[float],
) -> list[tuple[str, Callable[[], None]]]:
    """One round's push measurements, each a call that records its figure."""
    top = max(TASKS)

    def async_push(tasks: int, **options: Any) -> None:
        rate, latencies = _async_pushes(store_url, tasks, duration, **options)
        if options:
            rates.setdefault("async.solo", []).append(rate)
            return
        rates.setdefault(f"async.{tasks}", []).append(rate)
        if tasks == top:
            p99s.append(_p99(latencies) * 1000)

    def processes(kind: str, key: str, into: str) -> None:
        rates.setdefault(key, []).append(pool.measure(kind, url, into, PROCESSES, 1, duration))

    found: list[tuple[str, Callable[[], None]]] = [
        (f"async {tasks} tasks", functools.partial(async_push, tasks)) for tasks in TASKS
    ]
    found += [
        ("async, no group commit", functools.partial(async_push, top, group_commit=False)),
        (f"sync {PROCESSES} processes", functools.partial(processes, "conduit", "sync.8", schema)),
        (
            f"raw {PROCESSES} processes",
            functools.partial(processes, "raw-single", "raw.8", raw_schema),
        ),
    ]
    return found


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _rows(section: Section, rates: dict[str, list[float]], p99s: list[float], stream: int) -> None:
    top = max(TASKS)
    for tasks in TASKS:
        label = f"PostgreSQL push, {tasks} task{'s' if tasks > 1 else ''} ({POOL} connections)"
        values: dict[str, float | None] = {ASYNC: _median(rates[f"async.{tasks}"])}
        if tasks == top:
            label = f"PostgreSQL push, {top} tasks; sync and raw: {PROCESSES} processes"
            values[SYNC] = _median(rates["sync.8"])
            values[RAW] = _median(rates["raw.8"])
        section.rows.append(Row(label, "events/s", values))
    section.rows.append(
        Row(
            f"PostgreSQL: read one {stream:,}-event stream",
            "events/s",
            {ASYNC: _median(rates["read.async"]), SYNC: _median(rates["read.sync"])},
        )
    )
    section.rows.append(
        Row(
            f"SQLite (synchronous=FULL) push: {top} tasks; sync: one writer",
            "events/s",
            {ASYNC: _median(rates["sqlite.async"]), SYNC: _median(rates["sqlite.sync"])},
        )
    )
    section.extra_title = "Stand-alone figures (medians over the rounds)"
    section.extra = [
        Row(
            f"PostgreSQL push, {top} tasks, group_commit=False",
            "events/s",
            {ASYNC: _median(rates["async.solo"])},
        ),
        Row(f"PostgreSQL push latency at {top} tasks, p99", "ms", {ASYNC: _median(p99s)}),
    ]
    spreads = [
        *(f"async {t} tasks: {_spread(rates[f'async.{t}'], '/s')}" for t in TASKS),
        f"async {top} tasks, group_commit=False: {_spread(rates['async.solo'], '/s')}",
        f"sync {PROCESSES} processes: {_spread(rates['sync.8'], '/s')}",
        f"raw {PROCESSES} processes: {_spread(rates['raw.8'], '/s')}",
        f"reads async: {_spread(rates['read.async'], '/s')}; sync: "
        f"{_spread(rates['read.sync'], '/s')}",
        f"SQLite async {top} tasks: {_spread(rates['sqlite.async'], '/s')}; sync one writer: "
        f"{_spread(rates['sqlite.sync'], '/s')}",
        f"p99 push latency at {top} tasks: {_spread(p99s, ' ms')}",
    ]
    section.notes.append(
        "Each figure over the rounds, median (lowest\u2013highest): " + "; ".join(spreads) + "."
    )


def _targets(
    section: Section, ratios: dict[str, list[float]], p99s: list[float], stream: int
) -> None:
    top = max(TASKS)
    section.targets += [
        Target(
            f"PostgreSQL: {top} tasks with group commit ÷ raw psycopg, {PROCESSES} processes of "
            f"single-row INSERTs; rounds: {_spread(ratios['raw'])}",
            _median(ratios["raw"]),
            2.0,
        ),
        Target(
            f"PostgreSQL: async read of a {stream:,}-event stream ÷ the sync read; rounds: "
            f"{_spread(ratios['read'])}",
            _median(ratios["read"]),
            0.9,
        ),
        Target(
            f"PostgreSQL: p99 push latency at {top} tasks ÷ {LATENCY_MS:g} ms (the issue asks "
            f"it of an idle machine: see the load); rounds: {_spread(p99s, ' ms')}",
            _median(p99s) / LATENCY_MS,
            1.0,
            at_most=True,
        ),
        Target(
            f"SQLite: {top} tasks with group commit ÷ the sync single writer, both at "
            f"synchronous=FULL; rounds: {_spread(ratios['sqlite'])}",
            _median(ratios["sqlite"]),
            3.0,
        ),
    ]


def _notes(settings: _Settings) -> list[str]:
    return [
        f"{settings.rounds} rounds; in each, every contender pushes for {settings.duration:g} s, "
        "the order reversed every other round. Pushes are one event each, with the stream's "
        "expected version, each task (or writer process) to streams of its own.",
        f"Async: one process, one `AsyncEventStore` with `pool_size={POOL}` (group commit is "
        "on by default; the stand-alone row turns it off). Sync and raw psycopg: "
        f"{PROCESSES} writer processes of the PostgreSQL section (each its own store with "
        "`pool_size=1`, or its own connection), on the same 2 cores as the server.",
        f"Reads: one stream of {settings.stream:,} events, read whole 4 times by each face "
        "(decoded `Event`s both, each counted and dropped: neither keeps the events); the "
        "first read warms the face up (its pool's connections made, psycopg's statements "
        "prepared after their fifth run), the best of the other 3 counts.",
        "SQLite: each contender on a file of its own at `synchronous=FULL` (an `fsync` per "
        "commit), the async store's engine on its own thread.",
    ]
