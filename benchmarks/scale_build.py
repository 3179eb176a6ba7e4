"""The scale benchmark's data: streams of 100 events, written with ``push_many``.

Stream ``n`` of a store (its ordinal, from 0) is always the same stream: same
id, same events, same times, so the reference store and the large store start
alike and a measurement can name any stream by its ordinal. Events are those
of three kinds of entities with a few event names each; one event in
:data:`RARE_EVERY` has the rare name :data:`RARE`; one in ten carries a
``correlation_id`` in its metadata; data is ~120 bytes of JSON
(:func:`benchmarks.common.event_data`).

Times come from a virtual clock that starts hours before the run: event ``k``
of the build (counted over all streams, in build order) is recorded at
``clock + k`` milliseconds, so a stream's 100 events span 100 ms and
``read(since=...)`` can cut one in half.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from benchmarks.common import event_data
from conduit import EventStore

__all__ = [
    "PROBE_ONLY",
    "RARE",
    "RARE_EVERY",
    "STREAM_EVENTS",
    "Layout",
    "grow",
    "since",
    "stream_batch",
    "stream_id",
]

STREAM_EVENTS = 100
"""Events in every stream the build writes: ``get`` always reads 100 events."""

RARE = "account_frozen"
RARE_EVERY = 100_000
"""One event in this many of the build has the rare name (plus one in the probe streams)."""

PROBE_ONLY = "account_audited"
"""A name only the probe streams have (the last event of every third one): the same
events at every stage, so that the cost of finding them is compared with the answer's
size held constant (RARE's matches grow with the log: 1 at 0, ~100 at 10 M)."""

CATEGORIES = {
    "person": ("person_registered", ("person_renamed", "email_changed", "address_moved")),
    "order": ("order_placed", ("item_added", "item_removed", "order_shipped")),
    "account": ("account_opened", ("money_deposited", "money_withdrawn")),
}
"""Stream id prefix -> (the name of a stream's first event, the names of the others)."""

CHUNK = 500
"""Streams per task of a build process."""

Log = Callable[[str], None]


@dataclass
class Layout:
    """What a store holds, as the build wrote it: enough to pick what to read."""

    clock: datetime
    """The virtual time of the build's first event."""
    probe_streams: int
    """The first this many streams: what the empty reference store holds."""
    last_positions: list[int] = field(default_factory=list)
    """The position of each stream's last event, by ordinal."""

    @property
    def streams(self) -> int:
        """How many streams the build wrote."""
        return len(self.last_positions)

    @property
    def events(self) -> int:
        """How many events the build wrote."""
        return self.streams * STREAM_EVENTS

    @property
    def middle(self) -> int:
        """A position in the middle of the log: ``read_all(after=...)`` reads half of it."""
        return self.last_positions[self.streams // 2 - 1] if self.streams > 1 else 0


def stream_id(ordinal: int) -> str:
    """The id of stream ``ordinal``: ``person-…``, ``order-…`` or ``account-…`` and a UUID."""
    category = tuple(CATEGORIES)[ordinal % len(CATEGORIES)]
    return f"{category}-{uuid.UUID(int=random.Random(ordinal).getrandbits(128), version=4)}"


def since(layout: Layout, ordinal: int) -> datetime:
    """The time of stream ``ordinal``'s 51st event: ``read(since=...)`` returns its last 50."""
    return layout.clock + timedelta(milliseconds=ordinal * STREAM_EVENTS + STREAM_EVENTS // 2)


def stream_batch(ordinal: int, clock: datetime, probe_streams: int) -> list[dict[str, Any]]:
    """The 100 events of stream ``ordinal``, as ``push_many`` takes them."""
    category = tuple(CATEGORIES)[ordinal % len(CATEGORIES)]
    first, others = CATEGORIES[category]
    correlation = str(
        uuid.UUID(int=random.Random(f"correlation {ordinal}").getrandbits(128), version=4)
    )
    probe_rare = probe_streams * STREAM_EVENTS * 3 // 4
    events = []
    for version in range(STREAM_EVENTS):
        k = ordinal * STREAM_EVENTS + version
        rare = k == probe_rare or (k >= probe_rare and k % RARE_EVERY == RARE_EVERY // 2)
        name = first if version == 0 else others[version % len(others)]
        if ordinal < probe_streams and ordinal % 3 == 0 and version == STREAM_EVENTS - 1:
            name = PROBE_ONLY
        metadata = {"correlation_id": correlation, "user": "web"} if version % 10 == 0 else {}
        events.append(
            {
                "name": RARE if rare else name,
                "data": event_data(k),
                "metadata": metadata,
                "recorded_at": clock + timedelta(milliseconds=k),
            }
        )
    return events


def grow(
    url: str,
    options: dict[str, Any],
    layout: Layout,
    streams: int,
    pool: Executor | None,
    processes: int,
    log: Log,
) -> float:
    """Write streams ``layout.streams`` to ``streams - 1`` into the store; returns seconds.

    With a ``pool``, ``processes`` of its processes write at once (PostgreSQL);
    without, this process writes (SQLite serializes writers anyway).
    """
    first = layout.streams
    if streams <= first:
        return 0.0
    started = time.perf_counter()
    chunks = [(a, min(a + CHUNK, streams)) for a in range(first, streams, CHUNK)]
    positions: dict[int, list[int]] = {}
    args = (url, options, layout.clock, layout.probe_streams)
    if pool is None:
        for done, (a, b) in enumerate(chunks, 1):
            positions[a] = _write_chunk(*args, a, b)
            _progress(log, done, len(chunks), b - first, started)
    else:
        waiting = list(reversed(chunks))
        running: dict[Future[list[int]], int] = {}
        while waiting or running:
            while waiting and len(running) < processes:
                a, b = waiting.pop()
                running[pool.submit(_write_chunk, *args, a, b)] = a
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                positions[running.pop(future)] = future.result()
            written = sum(map(len, positions.values()))
            _progress(log, len(positions), len(chunks), written, started)
    for a, _ in chunks:
        layout.last_positions.extend(positions[a])
    return time.perf_counter() - started


def _progress(log: Log, done: int, total: int, streams: int, started: float) -> None:
    step = max(1, total // 10)
    if done % step == 0 or done == total:
        elapsed = time.perf_counter() - started
        rate = streams * STREAM_EVENTS / elapsed if elapsed else 0.0
        log(f"  built {done}/{total} chunks, {rate:,.0f} events/s")


def _write_chunk(
    url: str, options: dict[str, Any], clock: datetime, probe_streams: int, a: int, b: int
) -> list[int]:
    """Write streams ``a`` to ``b - 1``; returns the position of each one's last event."""
    last = []
    with EventStore(url, **options) as store:
        for ordinal in range(a, b):
            batch = stream_batch(ordinal, clock, probe_streams)
            recorded = store.push_many(stream_id(ordinal), batch, expected_version=0)
            last.append(recorded[-1].position)
    return last
