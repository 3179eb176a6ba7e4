"""SQLite under asyncio: the store's own thread against aiosqlite, for the same work.

``python -m benchmarks.sqlite_async_choice`` times, on one SQLite file each
(``synchronous=normal``, so that the hop between the event loop and the
database thread is not hidden behind an ``fsync``):

- one-event pushes awaited one after the other: ``AsyncEventStore`` (its
  engine's dedicated thread), against aiosqlite running the same ``INSERT``
  statements on Conduit's schema and committing each, and against the sync
  ``EventStore``;
- reading a 10,000-event stream: ``AsyncEventStore.read`` (decoded events)
  against aiosqlite fetching the same rows undecoded, and the sync read.

Each figure is the median of 3 alternating rounds. This is how the engine
was chosen (docs/asyncio.md, "SQLite under asyncio"); it is not part of the
default run.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite

from benchmarks.common import EVENT_NAME, event_data
from conduit import AsyncEventStore, EventStore
from conduit.backends.sqlite_sql import ADVANCE_STREAM, INSERT
from conduit.codec import encode

PUSHES = 2_000
STREAM = 10_000
ROUNDS = 3


async def _async_pushes(directory: Path, round_: int, group_commit: bool = True) -> float:
    url = f"sqlite:///{directory / f'async-{round_}-{group_commit}.db'}?synchronous=normal"
    async with AsyncEventStore(url, group_commit=group_commit) as store:
        start = time.perf_counter()
        for n in range(PUSHES):
            await store.push(EVENT_NAME, f"person-{n}", event_data(n))
        return PUSHES / (time.perf_counter() - start)


def _sync_pushes(directory: Path, round_: int) -> float:
    url = f"sqlite:///{directory / f'sync-{round_}.db'}?synchronous=normal"
    with EventStore(url) as store:
        start = time.perf_counter()
        for n in range(PUSHES):
            store.push(EVENT_NAME, f"person-{n}", event_data(n))
        return PUSHES / (time.perf_counter() - start)


async def _aiosqlite_pushes(directory: Path, round_: int) -> float:
    path = directory / f"aiosqlite-{round_}.db"
    with EventStore(f"sqlite:///{path}"):
        pass  # Conduit's schema, so that both write the same rows
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        start = time.perf_counter()
        for n in range(PUSHES):
            stream = f"person-{n}"
            await db.execute("BEGIN IMMEDIATE")
            await db.execute(ADVANCE_STREAM, (stream, 0, 1, n))
            await db.execute(
                INSERT,
                (
                    f"00000000-0000-7000-8000-{n:012d}",
                    stream,
                    0,
                    1,
                    EVENT_NAME,
                    encode(event_data(n)),
                    "{}",
                    n,
                ),
            )
            await db.execute("COMMIT")
        return PUSHES / (time.perf_counter() - start)


def _fill(path: Path) -> None:
    with EventStore(f"sqlite:///{path}?synchronous=normal") as store:
        store.push_many("reader", [(EVENT_NAME, event_data(n)) for n in range(STREAM)])


async def _async_read(path: Path) -> float:
    async with AsyncEventStore(f"sqlite:///{path}") as store:
        start = time.perf_counter()
        count = sum([1 async for _ in store.read("reader")])
        return count / (time.perf_counter() - start)


def _sync_read(path: Path) -> float:
    with EventStore(f"sqlite:///{path}") as store:
        start = time.perf_counter()
        count = sum(1 for _ in store.read("reader"))
        return count / (time.perf_counter() - start)


async def _aiosqlite_read(path: Path) -> float:
    async with aiosqlite.connect(path) as db:
        start = time.perf_counter()
        cursor = await db.execute(
            "SELECT * FROM events WHERE stream_id = 'reader' ORDER BY version"
        )
        rows = await cursor.fetchall()
        return len(list(rows)) / (time.perf_counter() - start)


def _median(samples: list[float]) -> str:
    return f"{statistics.median(samples):,.0f}/s ({min(samples):,.0f}-{max(samples):,.0f})"


def main() -> None:
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        stream_file = directory / "stream.db"
        _fill(stream_file)
        contenders: list[tuple[str, Callable[[int], Awaitable[float] | float]]] = [
            ("push: AsyncEventStore (own thread)", lambda r: _async_pushes(directory, r)),
            (
                "push: AsyncEventStore, group_commit=False",
                lambda r: _async_pushes(directory, r, group_commit=False),
            ),
            ("push: aiosqlite, same statements", lambda r: _aiosqlite_pushes(directory, r)),
            ("push: EventStore (sync)", lambda r: _sync_pushes(directory, r)),
            ("read 10,000: AsyncEventStore, decoded", lambda r: _async_read(stream_file)),
            ("read 10,000: aiosqlite, raw rows", lambda r: _aiosqlite_read(stream_file)),
            ("read 10,000: EventStore (sync), decoded", lambda r: _sync_read(stream_file)),
        ]
        for round_ in range(ROUNDS):
            order = contenders if round_ % 2 == 0 else contenders[::-1]
            for label, run in order:
                value = run(round_)
                if not isinstance(value, float):
                    value = asyncio.run(_awaited(value))
                results.setdefault(label, []).append(value)
    for label, _ in contenders:
        print(f"| {label} | {_median(results[label])} |")


async def _awaited(value: Awaitable[float]) -> float:
    return await value


if __name__ == "__main__":
    main()
