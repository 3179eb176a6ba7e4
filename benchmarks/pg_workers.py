"""Concurrent writers: one process each, its own connection, its own streams.

The processes are started once per run (``spawn``: each imports the libraries
once) and given one measurement after another. For each, a writer opens its
own contender and warms up (its streams exist, its statements are prepared),
says it is ready, waits for the word to go, appends for a fixed time, and
closes its contender again.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
import uuid
from multiprocessing.context import SpawnProcess
from types import TracebackType
from typing import Any, Self

from benchmarks.common import event_data
from benchmarks.pg_contenders import open_contender

__all__ = ["WriterPool"]

STREAMS_PER_WRITER = 10
TIMEOUT = 120.0
"""Seconds a writer may take to get ready, or to report after its run."""

Task = tuple[str, str, str, int, float]
"""(contender kind, url, schema, batch size, duration in seconds)."""


class WriterPool:
    """``size`` writer processes, reused for every measurement of a run."""

    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._results: multiprocessing.Queue[tuple[str, int, float, str]] = context.Queue()
        self._inboxes: list[multiprocessing.Queue[Task | str | None]] = [
            context.Queue() for _ in range(size)
        ]
        self._processes: list[SpawnProcess] = [
            context.Process(
                target=_serve, args=(inbox, self._results), name=f"bench-writer-{i}", daemon=True
            )
            for i, inbox in enumerate(self._inboxes)
        ]
        for process in self._processes:
            process.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def measure(
        self, kind: str, url: str, schema: str, writers: int, size: int, duration: float
    ) -> float:
        """Events/s of ``writers`` processes appending batches of ``size`` for ``duration`` s."""
        if writers > len(self._inboxes):
            raise ValueError(f"the pool has {len(self._inboxes)} writers, not {writers}")
        inboxes = self._inboxes[:writers]
        for inbox in inboxes:
            inbox.put((kind, url, schema, size, duration))
        failures = [self._expect("ready", kind) for _ in inboxes]
        for inbox in inboxes:  # failed writers have gone back to waiting for a task
            inbox.put("go")
        outcomes = [self._next(kind) for _ in range(writers - sum(1 for f in failures if f))]
        errors = [f for f in failures if f] + [error for _, _, _, error in outcomes if error]
        if errors:
            raise RuntimeError(f"{kind}: a writer failed:\n{errors[0]}")
        total = sum(count for _, count, _, _ in outcomes)
        longest = max(elapsed for _, _, elapsed, _ in outcomes)
        return total / longest

    def _next(self, kind: str) -> tuple[str, int, float, str]:
        try:
            return self._results.get(timeout=TIMEOUT)
        except queue.Empty:
            raise RuntimeError(f"{kind}: a writer did not report within {TIMEOUT:g} s") from None

    def _expect(self, state: str, kind: str) -> str:
        found, _, _, error = self._next(kind)
        if error:
            return error
        if found != state:
            raise RuntimeError(f"{kind}: a writer said {found!r}, not {state!r}")
        return ""

    def close(self) -> None:
        """Stop the writers."""
        for inbox in self._inboxes:
            inbox.put(None)
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()


def _serve(
    inbox: multiprocessing.Queue[Task | str | None],
    results: multiprocessing.Queue[tuple[str, int, float, str]],
) -> None:
    while (task := inbox.get()) is not None:
        if isinstance(task, str):  # a stray "go" after a failure
            continue
        kind, url, schema, size, duration = task
        try:
            contender: Any = open_contender(kind, url, schema)
        except BaseException:
            results.put(("failed", 0, 0.0, traceback.format_exc()))
            continue
        try:
            results.put(_run(contender, inbox, results, size, duration))
        except BaseException:
            results.put(("failed", 0, 0.0, traceback.format_exc()))
        finally:
            contender.close()


def _run(
    contender: Any,
    inbox: multiprocessing.Queue[Task | str | None],
    results: multiprocessing.Queue[tuple[str, int, float, str]],
    size: int,
    duration: float,
) -> tuple[str, int, float, str]:
    streams = [uuid.uuid4() for _ in range(STREAMS_PER_WRITER)]
    versions = dict.fromkeys(streams, 0)
    batch = [event_data(i) for i in range(size)]
    for _ in range(2):  # create the streams, let statements be prepared
        for stream in streams:
            contender.append(stream, versions[stream], batch)
            versions[stream] += size
    results.put(("ready", 0, 0.0, ""))
    if inbox.get(timeout=TIMEOUT) != "go":
        raise RuntimeError("expected the word to go")
    count = 0
    i = 0
    start = time.perf_counter()
    deadline = start + duration
    while True:
        stream = streams[i % STREAMS_PER_WRITER]
        contender.append(stream, versions[stream], batch)
        versions[stream] += size
        count += size
        i += 1
        now = time.perf_counter()
        if now >= deadline:
            return ("done", count, now - start, "")
