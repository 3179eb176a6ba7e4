"""Helpers of the contract kit for what takes time: waiting with a deadline, racing threads.

The kit never sleeps and then asserts: it waits for a condition, bounded by a
generous deadline (the machines that run it are often loaded), and it counts
the outcomes of races rather than timing them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DEADLINE", "eventually", "run_together", "wait_past"]

T = TypeVar("T")

DEADLINE = 30.0
"""Seconds a lint waits for a condition before it fails."""


def eventually(condition: Callable[[], T], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``condition`` until it returns a true value, and return that value.

    Raises:
        AssertionError: ``timeout`` seconds passed first; the message says ``what``.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def wait_past(moment: float) -> None:
    """Return once ``time.monotonic()`` has passed ``moment`` (at most a minute ahead)."""
    assert moment - time.monotonic() < 60.0, "wait_past is for short waits"
    while (left := moment - time.monotonic()) >= 0:
        time.sleep(min(left + 0.001, 0.1))


def run_together(count: int, work: Callable[[int], T], timeout: float = 120.0) -> list[T]:
    """Run ``work(0)`` … ``work(count - 1)`` in threads released at once; their results.

    Raises:
        AssertionError: a thread was still running after ``timeout`` seconds.
        BaseException: the first exception a thread raised.
    """
    start = threading.Barrier(count)
    results: dict[int, T] = {}
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(timeout)
            results[index] = work(index)
        except BaseException as exc:  # re-raised below, in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a thread never finished"
    if failures:
        raise failures[0]
    return [results[i] for i in range(count)]
