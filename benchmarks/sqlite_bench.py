"""The SQLite section: Conduit vs raw ``sqlite3`` vs eventsourcing, in one run."""

from __future__ import annotations

import sqlite3
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

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
    median,
    ratio_target,
    read_rate,
    run_for,
)
from benchmarks.sqlite_contenders import (
    RAW,
    RAW_DECODED,
    ConduitSQLite,
    Contender,
    EventsourcingSQLite,
    RawDecodedSQLite,
    RawSQLite,
)
from conduit import EventStore
from conduit.store import DEFAULT_PAGE_SIZE

__all__ = ["run"]

Factory = Callable[[str, str], Contender]
FACTORIES: dict[str, Factory] = {
    CONDUIT: ConduitSQLite,
    RAW: RawSQLite,
    EVENTSOURCING: EventsourcingSQLite,
}
STREAMS = 100
"""Appends go round-robin to this many streams."""
BATCH = 100
PAGE_PROBE = 20_000
PAGE_SIZES = (100, 2_000)
SINGLE = "appends/s, one event per transaction"
BATCHED = f"appends/s, batches of {BATCH} (events/s)"
STREAM_READ = "read one 10,000-event stream (events/s)"
GLOBAL_READ = "read the global log (events/s)"
Log = Callable[[str], None]
APPEND_NOTE = (
    "Appends: every measurement starts on a fresh file in the same directory (deleted "
    f"afterwards) and writes round-robin to {STREAMS} streams that exist before the clock "
    "starts; every side turns the same dicts into JSON with `orjson`. Conduit: `push` / "
    "`push_many` with `expected_version`, returning `Event`s. Raw sqlite3, on Conduit's own "
    "tables and with Conduit's statements: `BEGIN IMMEDIATE`, an upsert of the `streams` "
    "row that returns its new version, one INSERT per event (`executemany` for a batch) "
    "with Conduit's time-ordered event ids, `COMMIT`; nothing validated, nothing returned "
    "(Conduit also checks the expected version). eventsourcing 9.5: "
    "`SQLiteApplicationRecorder.insert_events` with `StoredEvent`s (one INSERT per event "
    "in a `BEGIN` transaction, into a table keyed by (originator_id, originator_version), "
    "with no event-id index and no streams table; the writer tracks versions itself). "
    "eventsourcing has no `synchronous` setting: its connections keep SQLite's compiled-in "
    "default (FULL in this build); for NORMAL the benchmark sets it on each connection its "
    "pool opens (a hook on `SQLiteConnectionPool._create_connection`)."
)


def run(settings: Settings, workdir: Path, log: Log) -> Section:
    """Measure every SQLite figure and check it against the issue's targets."""
    section = Section(
        "SQLite",
        [CONDUIT, RAW, EVENTSOURCING],
        extra_title="Memory while iterating one long stream (Conduit, `store.read`)",
        versions={"SQLite": sqlite3.sqlite_version},
    )
    rounds: Rounds = {}
    for synchronous in ("full", "normal"):
        _appends(settings, workdir, synchronous, section, rounds, log)
    section.notes.append(APPEND_NOTE)
    _reads(settings, workdir, section, rounds, log)
    _memory(settings, workdir, section, log)
    _targets(section, rounds)
    section.notes.append(ROUNDS_NOTE.format(rounds=settings.rounds))
    return section


def _fresh(workdir: Path, name: str) -> str:
    path = workdir / f"{name}.db"
    _remove(path)
    return str(path)


def _remove(path: Path | str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _appends(
    settings: Settings,
    workdir: Path,
    synchronous: str,
    section: Section,
    rounds: Rounds,
    log: Log,
) -> None:
    mode = synchronous.upper()
    labels = {1: f"{SINGLE}, synchronous={mode}", BATCH: f"{BATCHED}, synchronous={mode}"}
    checked: dict[str, int] = {}
    names = list(FACTORIES)
    for round_ in range(settings.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for size in (1, BATCH):
            for name in order:
                path = _fresh(workdir, f"append-{synchronous}")
                contender = FACTORIES[name](path, synchronous)
                try:
                    checked[name] = contender.synchronous()
                    value = _append_rate(contender, size, settings.duration)
                finally:
                    contender.close()
                    _remove(path)
                rounds.setdefault((labels[size], name), []).append(value)
                log(f"sqlite synchronous={synchronous} batch={size} {name}: {value:,.0f} events/s")
    for label in labels.values():
        values: dict[str, float | None] = {n: median(rounds[label, n]) for n in names}
        section.rows.append(Row(label, "events/s", values))
    readback = ", ".join(f"{name} {level}" for name, level in checked.items())
    section.notes.append(
        f"`PRAGMA synchronous` read back on each contender's own connection at {mode}: "
        f"{readback} (0 OFF, 1 NORMAL, 2 FULL)."
    )


def _append_rate(contender: Contender, size: int, duration: float) -> float:
    streams = [uuid.uuid4() for _ in range(STREAMS)]
    versions = dict.fromkeys(streams, 0)
    batch = [event_data(i) for i in range(size)]

    def step(i: int) -> int:
        stream = streams[i % STREAMS]
        contender.append(stream, versions[stream], batch)
        versions[stream] += size
        return size

    for i in range(STREAMS):  # every stream exists before the clock starts
        step(i)
    return run_for(duration, step)


def _reads(settings: Settings, workdir: Path, section: Section, rounds: Rounds, log: Log) -> None:
    stream = uuid.uuid4()
    paths: dict[str, str] = {}
    # Each contender reads a file it wrote itself; raw sqlite3 reads Conduit's.
    for name in (CONDUIT, EVENTSOURCING):
        paths[name] = _fresh(workdir, f"read-{name}")
        writer = FACTORIES[name](paths[name], "normal")
        try:
            _fill(writer, stream, settings)
        finally:
            writer.close()
    paths[RAW] = paths[RAW_DECODED] = paths[CONDUIT]
    readers = {**FACTORIES, RAW_DECODED: RawDecodedSQLite}
    names = list(readers)
    for round_ in range(settings.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            contender = readers[name](paths[name], "full")
            try:
                for label, read in (
                    (STREAM_READ, lambda c=contender: c.read_stream(stream)),
                    (GLOBAL_READ, contender.read_all),
                ):
                    value = read_rate(settings.duration, read)
                    rounds.setdefault((label, name), []).append(value)
                    log(f"sqlite {label} {name}: {value:,.0f} events/s")
            finally:
                contender.close()
    for path in set(paths.values()):
        _remove(path)
    for label in (STREAM_READ, GLOBAL_READ):
        values: dict[str, float | None] = {n: median(rounds[label, n]) for n in FACTORIES}
        section.rows.append(Row(label, "events/s", values))
        decoded = median(rounds[label, RAW_DECODED])
        section.extra.append(Row(f"{label}, {RAW_DECODED}", "events/s", {RAW: decoded}))
    section.notes.append(
        f"Reads: each file holds one {settings.stream_events:,}-event stream and "
        f"{settings.global_events - settings.stream_events:,} more events in streams of "
        f"1,000 ({settings.global_events:,} in the global log), written in batches of "
        f"{BATCH}. Conduit decodes every row into an `Event` (JSON parsed, UUIDs and "
        "datetimes built); eventsourcing's recorder returns `StoredEvent`/`Notification` "
        "objects (a stream in one query, the log in pages of 500), each turned into its "
        "domain event by `Mapper.to_domain_event` (topic resolved, state decoded by its "
        "`JSONTranscoder`), as its applications read (its states hold no timestamp here, "
        "so it builds no datetime where Conduit builds `recorded_at`); raw sqlite3 fetches "
        f"tuples from Conduit's file, undecoded (the target's floor) and, as `{RAW_DECODED}`, "
        "decoded into tuples of a UUID, parsed data and metadata and an aware datetime."
    )


def _fill(contender: Contender, stream: uuid.UUID, settings: Settings) -> None:
    batch = [event_data(i) for i in range(BATCH)]
    for version in range(0, settings.stream_events, BATCH):
        contender.append(stream, version, batch)
    for _ in range((settings.global_events - settings.stream_events) // 1_000):
        other = uuid.uuid4()
        for version in range(0, 1_000, BATCH):
            contender.append(other, version, batch)


def _memory(settings: Settings, workdir: Path, section: Section, log: Log) -> None:
    path = _fresh(workdir, "memory")
    store = EventStore(f"sqlite:///{path}?synchronous=normal")
    try:
        lengths = (settings.memory_short, settings.memory_long)
        streams = {length: uuid.uuid4() for length in lengths}
        started = time.perf_counter()
        for length, stream in streams.items():
            _build_long(store, stream, length)
        log(f"sqlite memory: built {sum(lengths):,} events in {time.perf_counter() - started:.1f}s")
        for length in lengths:
            peak = _peak_while_iterating(store, streams[length], length)
            log(f"sqlite memory: {length:,} events, peak {peak / 1024:,.0f} KiB")
            label = f"peak traced memory, iterating {length:,} events"
            section.extra.append(Row(label, "KiB", {CONDUIT: peak / 1024}))
        # The other side of "bounded by the page size": the peak follows it.
        prefix = min(PAGE_PROBE, settings.memory_short)
        for page_size in PAGE_SIZES:
            with EventStore(f"sqlite:///{path}", page_size=page_size) as paged:
                peak = _peak_while_iterating(paged, streams[settings.memory_short], prefix, prefix)
            label = f"peak traced memory, first {prefix:,} events, page_size={page_size}"
            section.extra.append(Row(label, "KiB", {CONDUIT: peak / 1024}))
            log(f"sqlite memory: page_size={page_size}, peak {peak / 1024:,.0f} KiB")
    finally:
        store.close()
        _remove(path)
    section.notes.append(
        f"Memory: the {settings.memory_long:,}- and {settings.memory_short:,}-event streams are "
        "built with `push_many` batches of 10,000 into a `synchronous=NORMAL` file (to save "
        "time; reads do not depend on it), then iterated with `for event in "
        "store.read(stream_id)` under `tracemalloc` (peak of Python allocations, from the "
        f"first call to the last event). Conduit fetches {DEFAULT_PAGE_SIZE} events a page "
        "by default; the page_size rows read the first events of the shorter stream through "
        "stores opened with other page sizes."
    )


def _build_long(store: EventStore, stream: uuid.UUID, length: int) -> None:
    step = 10_000
    for start in range(0, length, step):
        size = min(step, length - start)
        store.push_many(stream, [("person_registered", event_data(start + i)) for i in range(size)])


def _peak_while_iterating(
    store: EventStore, stream: uuid.UUID, length: int, limit: int | None = None
) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        count = 0
        for _ in store.read(stream, limit=limit):
            count += 1
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    if count != length:
        raise RuntimeError(f"read {count} events of a {length}-event stream")
    return peak


def _targets(section: Section, rounds: Rounds) -> None:
    def target(text: str, label: str, other: str, required: float) -> Target:
        return ratio_target(text, rounds[label, CONDUIT], rounds[label, other], required)

    for mode in ("FULL", "NORMAL"):
        single = f"{SINGLE}, synchronous={mode}"
        batched = f"{BATCHED}, synchronous={mode}"
        section.targets += [
            target(f"single-event appends vs raw sqlite3 ({mode})", single, RAW, 0.85),
            target(f"single-event appends vs eventsourcing ({mode})", single, EVENTSOURCING, 1.0),
            target(f"batches of 100 vs raw sqlite3 ({mode})", batched, RAW, 0.8),
            target(f"batches of 100 vs eventsourcing ({mode})", batched, EVENTSOURCING, 1.2),
        ]
    section.targets += [
        target("stream read vs raw sqlite3 (undecoded)", STREAM_READ, RAW, 0.4),
        target("global-log read vs raw sqlite3 (undecoded)", GLOBAL_READ, RAW, 0.4),
        target("stream read vs eventsourcing (decoded)", STREAM_READ, EVENTSOURCING, 1.5),
        target("global-log read vs eventsourcing (decoded)", GLOBAL_READ, EVENTSOURCING, 1.5),
    ]
    peaks = [row for row in section.extra if row.label.startswith("peak traced memory, iter")]
    if len(peaks) == 2:
        short, long = (row.values[CONDUIT] or 0.0 for row in peaks)
        section.targets.append(
            Target(
                "memory: peak at the long stream / peak at the short one",
                long / short,
                1.25,
                at_most=True,
            )
        )
