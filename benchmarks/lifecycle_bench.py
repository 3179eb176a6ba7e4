"""Scavenging (issue 17): removing expired events from a large store while writers append.

``python -m benchmarks --only lifecycle`` builds a store of 2,000,000 events
on SQLite and on PostgreSQL, the first half of which the store-wide retention
expires, then measures:

- how many appends per second 4 writers (one event per push, each its own
  stores and streams) make for a while without a scavenge;
- the same writers while ``store.scavenge()`` removes the 1,000,000 expired
  events, and how many events per second the scavenge removes.

The target is that the writers keep at least 0.7x their rate during the
scavenge. The figures go to their own block of docs/benchmarks.md, between
:data:`START` and :data:`END`; the default run keeps it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from benchmarks.common import EVENT_NAME, event_data
from conduit import EventStore

__all__ = ["END", "START", "LifecycleSettings", "console", "markdown", "run"]

START = "<!-- lifecycle:start -->"
END = "<!-- lifecycle:end -->"
SCHEMA = "bench_lifecycle"
TARGET = 0.7


@dataclass(frozen=True)
class LifecycleSettings:
    """How large the store is and how long the writers write."""

    events: int = 2_000_000
    batch: int = 1000
    writers: int = 4
    baseline_seconds: float = 15.0
    scavenge_batch: int = 2000
    leave_to_writers: tuple[tuple[str, float], ...] = (
        ("SQLite", 0.7),
        ("PostgreSQL", 0.8),
        ("PostgreSQL", 0.0),
    )
    """The runs: an engine and the share of the time its scavenge leaves to writers
    between batches (each run builds its store afresh)."""

    @classmethod
    def quick(cls) -> LifecycleSettings:
        return cls(events=20_000, batch=500, baseline_seconds=1.0, scavenge_batch=1000)


@dataclass
class EngineResult:
    engine: str
    events: int
    build_seconds: float
    expired: int
    removed: int = 0
    scavenge_seconds: float = 0.0
    alone: float = 0.0
    during: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def removed_per_second(self) -> float:
        return self.removed / self.scavenge_seconds if self.scavenge_seconds else 0.0

    @property
    def ratio(self) -> float:
        return self.during / self.alone if self.alone else 0.0


@dataclass
class LifecycleRun:
    settings: LifecycleSettings
    results: list[EngineResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _build(store: EventStore, settings: LifecycleSettings, log: Callable[[str], None]) -> float:
    """The store's events, then a max age on the streams of the first half (expiring
    every one of their events); returns how long it took."""
    started = time.monotonic()
    half = settings.events // 2
    for written in range(0, settings.events, settings.batch):
        stream = f"{'old' if written < half else 'new'}-{written // settings.batch}"
        store.push_many(
            stream, [(EVENT_NAME, event_data(written + i)) for i in range(settings.batch)]
        )
        if written and written % 200_000 == 0:
            log(f"  {written:,} events")
    for written in range(0, half, settings.batch):
        store.set_stream_metadata(
            f"old-{written // settings.batch}", max_age=timedelta(microseconds=1), by="bench"
        )
    return time.monotonic() - started


def _writers(
    make: Callable[[], EventStore], count: int, stop: threading.Event, tag: str
) -> tuple[list[threading.Thread], list[int]]:
    counts = [0] * count

    def write(index: int) -> None:
        store = make()
        try:
            n = 0
            while not stop.is_set():
                store.push(EVENT_NAME, f"w-{tag}-{index}-{n // 100}", event_data(n))
                n += 1
                counts[index] = n
        finally:
            store.close()

    threads = [threading.Thread(target=write, args=(i,), daemon=True) for i in range(count)]
    return threads, counts


def _rate(
    make: Callable[[], EventStore],
    settings: LifecycleSettings,
    tag: str,
    during: Callable[[], None] | None,
) -> tuple[float, float]:
    """Appends per second of the writers, for the baseline time or while ``during`` runs;
    and how long that was."""
    stop = threading.Event()
    threads, counts = _writers(make, settings.writers, stop, tag)
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the writers under way
    first, started = sum(counts), time.monotonic()
    if during is None:
        time.sleep(settings.baseline_seconds)
    else:
        during()
    elapsed = time.monotonic() - started
    written = sum(counts) - first
    stop.set()
    for thread in threads:
        thread.join(60)
    return written / elapsed, elapsed


def _measure(
    engine: str,
    make: Callable[[], EventStore],
    settings: LifecycleSettings,
    log: Callable[[str], None],
    leave: float,
) -> EngineResult:
    builder = make()
    log(f"{engine}: building {settings.events:,} events")
    build_seconds = _build(builder, settings, log)
    result = EngineResult(engine, settings.events, build_seconds, settings.events // 2)
    log(f"{engine}: built in {build_seconds:.0f} s; writers alone")
    result.alone, _ = _rate(make, settings, "a", None)
    report: list[int] = []
    result.notes.append(f"leave_to_writers={leave}")

    def scavenge() -> None:
        done = builder.scavenge(batch_size=settings.scavenge_batch, leave_to_writers=leave)
        report.append(done.removed)

    log(f"{engine}: writers during the scavenge")
    result.during, result.scavenge_seconds = _rate(make, settings, "b", scavenge)
    result.removed = report[0]
    log(
        f"{engine}: removed {result.removed:,} in {result.scavenge_seconds:.1f} s; "
        f"writers {result.alone:,.0f}/s alone, {result.during:,.0f}/s during ({result.ratio:.2f}x)"
    )
    builder.close()
    return result


def _postgres(
    postgres_url: str, settings: LifecycleSettings, log: Callable[[str], None], leave: float
) -> EngineResult:
    """One run on PostgreSQL, in a schema made for it and dropped after."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    try:
        first = EventStore(postgres_url, schema=SCHEMA)
        first.setup()
        first.close()
        return _measure(
            "PostgreSQL", lambda: EventStore(postgres_url, schema=SCHEMA), settings, log, leave
        )
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')


def run(
    settings: LifecycleSettings, workdir: Path, postgres_url: str, log: Callable[[str], None]
) -> LifecycleRun:
    """Every run of ``settings.leave_to_writers``, one after the other."""
    started = time.monotonic()
    out = LifecycleRun(settings)
    for engine, leave in settings.leave_to_writers:
        if engine == "SQLite":
            path = workdir / "lifecycle.db"
            for suffix in ("", "-wal", "-shm"):
                leftover = path.with_name(path.name + suffix)
                leftover.unlink(missing_ok=True)
            url = f"sqlite:///{path}"
            out.results.append(
                _measure(engine, lambda u=url: EventStore(u), settings, log, leave)  # type: ignore[misc]
            )
            continue
        try:
            out.results.append(_postgres(postgres_url, settings, log, leave))
        except Exception as exc:  # report what could not run, and keep the rest
            out.skipped[f"PostgreSQL, leave_to_writers={leave}"] = f"{type(exc).__name__}: {exc}"
    out.seconds = time.monotonic() - started
    return out


def console(run: LifecycleRun) -> str:
    """A plain-text summary: each engine's figures and the target."""
    lines = [f"== Scavenging, {run.seconds / 60:.1f} minutes =="]
    for r in run.results:
        verdict = "PASS" if r.ratio >= TARGET else "MISS"
        lines.append(
            f"  {verdict:<5} {r.engine}: {r.removed:,} removed at {r.removed_per_second:,.0f}/s; "
            f"{run.settings.writers} writers {r.alone:,.0f}/s alone, {r.during:,.0f}/s during "
            f"({r.ratio:.2f}x, target {TARGET}x)"
        )
    for title, reason in run.skipped.items():
        lines.append(f"  SKIP  {title}: {reason}")
    return "\n".join(lines)


def markdown(run: LifecycleRun, command: str) -> str:
    """The page's block of these figures."""
    stamp = datetime.now(UTC)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    s = run.settings
    lines = [
        START,
        "## Scavenging (issue 17)",
        "",
        f"`{command}` builds, for each run below, a store of {s.events:,} events "
        f"({s.batch}-event batches, one "
        "stream per batch); a `max_age` on the streams of the first half expires them. "
        f"{s.writers} writers (threads, each with its own store, one event per push, "
        f"streams of their own) append for {s.baseline_seconds:.0f} s alone, then again "
        f"while `store.scavenge(batch_size={s.scavenge_batch})` removes the expired half. "
        f"Target: the writers keep at least {TARGET}x their rate during the scavenge. "
        "`leave_to_writers` is the scavenge's share of the time left to writers between "
        "its batches (0, the default, runs it at full speed).",
        "",
        f"This run: {run.seconds / 60:.1f} minutes, finished {stamp:%Y-%m-%d %H:%M} UTC "
        f"(load average at the end: {load}; the machine's 2 cores are shared)"
        + (" — a `--quick` smoke run: indicative only." if s.events < 1_000_000 else "."),
        "",
        "| engine | scavenge options | events | build | removed | scavenge | removed/s "
        "| writers alone | writers during | ratio | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in run.results:
        verdict = "met" if r.ratio >= TARGET else "**missed**"
        lines.append(
            f"| {r.engine} | {', '.join(r.notes)} | {r.events:,} | {r.build_seconds:.0f} s "
            f"| {r.removed:,} "
            f"| {r.scavenge_seconds:.1f} s | {r.removed_per_second:,.0f} | {r.alone:,.0f}/s "
            f"| {r.during:,.0f}/s | {r.ratio:.2f}x | {verdict} |"
        )
    for title, reason in run.skipped.items():
        lines.append(f"\n{title} did not run: {reason}")
    lines += ["", END]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """``text`` with its scavenging block replaced by ``block`` (appended if it has none)."""
    start, end = text.find(START), text.find(END)
    if start == -1 or end == -1:
        return text.rstrip() + "\n\n" + block.strip() + "\n"
    return text[:start] + block.strip() + text[end + len(END) :]


def keep_block(old: str, new: str) -> str:
    """``new`` with the scavenging block of ``old`` (if any)."""
    start, end = old.find(START), old.find(END)
    if start == -1 or end == -1:
        return new
    return replace_block(new, old[start : end + len(END)])
