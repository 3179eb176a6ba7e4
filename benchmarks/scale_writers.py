"""Single-event appends for the scale benchmark: writer processes on existing streams.

The processes (``spawn``) start once per engine and are reused. For one
measurement each writer opens its own store, warms up, waits at a barrier for
the others, then pushes one event at a time to random streams of its own
share for a fixed time. The rate is every writer's events over the time from
the first start to the last stop (``CLOCK_MONOTONIC`` is one clock for every
process on Linux).
"""

from __future__ import annotations

import multiprocessing
import random
import time
from concurrent.futures import ProcessPoolExecutor
from types import TracebackType
from typing import Any, Self

from benchmarks.common import event_data
from conduit import EventStore

__all__ = ["Writers"]

TIMEOUT = 120.0
"""Seconds a writer may take to get ready, or to finish after its run."""


class Writers:
    """``size`` writer processes."""

    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.size = size
        self._manager = context.Manager()
        self._pool = ProcessPoolExecutor(size, mp_context=context)
        # One task per process, held at a barrier: the pool starts a process
        # per task it cannot hand to an idle one, so all of them start now
        # (and import Conduit) rather than during a measurement.
        barrier = self._manager.Barrier(size)
        for future in [self._pool.submit(_meet, barrier) for _ in range(size)]:
            future.result(timeout=TIMEOUT)

    def __enter__(self) -> Self:
        return self

    @property
    def pool(self) -> ProcessPoolExecutor:
        """The processes, for other work between measurements (building the store)."""
        return self._pool

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._manager.shutdown()

    def rate(
        self,
        url: str,
        options: dict[str, Any],
        streams: list[str],
        writers: int,
        duration: float,
        seed: int,
    ) -> tuple[float, int]:
        """Events/s of ``writers`` processes pushing one event at a time, and how many.

        Writer ``w`` appends to ``streams[w::writers]``, so no two writers
        share a stream.
        """
        if writers > self.size:
            raise ValueError(f"{writers} writers, but only {self.size} processes")
        barrier = self._manager.Barrier(writers)
        futures = [
            self._pool.submit(
                _write, url, options, streams[w::writers], barrier, duration, seed * 1000 + w
            )
            for w in range(writers)
        ]
        results = [future.result(timeout=duration + 2 * TIMEOUT) for future in futures]
        total = sum(count for count, _, _ in results)
        window = max(end for _, _, end in results) - min(began for _, began, _ in results)
        return total / window, total


def _meet(barrier: Any) -> None:
    barrier.wait(TIMEOUT)


def _write(
    url: str,
    options: dict[str, Any],
    streams: list[str],
    barrier: Any,
    duration: float,
    seed: int,
) -> tuple[int, float, float]:
    """Push for ``duration`` s once every writer is ready; returns (events, began, ended)."""
    rng = random.Random(seed)
    data = event_data(seed)
    with EventStore(url, **options) as store:
        for _ in range(2):  # the connection is open, the statement prepared
            store.push("money_deposited", rng.choice(streams), data)
        barrier.wait(TIMEOUT)
        count = 0
        began = time.monotonic()
        deadline = began + duration
        while True:
            store.push("money_deposited", rng.choice(streams), data)
            count += 1
            now = time.monotonic()
            if now >= deadline:
                return count, began, now
