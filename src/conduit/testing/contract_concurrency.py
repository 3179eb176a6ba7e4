"""Contract: writers in several threads, each with its own store over the same storage.

Bounded in size, never in time: the tests count outcomes, they do not time them.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from conduit import Event, EventStore, WrongExpectedVersion

__all__ = [
    "test_concurrent_writers_on_one_stream_win_each_version_exactly_once",
    "test_concurrent_writers_on_their_own_streams_all_land_in_the_log_once",
]

WRITERS = 16
VERSIONS = 20
EVENTS_PER_WRITER = 10
JOIN_TIMEOUT = 120.0  # only a guard against a hung engine; the tests take far less


def _run(stores: list[EventStore], work: Callable[[int, EventStore], None]) -> None:
    start = threading.Barrier(len(stores))
    failures: list[BaseException] = []

    def run(index: int, store: EventStore) -> None:
        try:
            start.wait()
            work(index, store)
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(index, store), daemon=True)
        for index, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a writer never finished"
    if failures:
        raise failures[0]


def test_concurrent_writers_on_one_stream_win_each_version_exactly_once(
    make_store: Callable[[], EventStore],
) -> None:
    stores = [make_store() for _ in range(WRITERS)]
    wins: list[Event] = []
    losses: list[WrongExpectedVersion] = []

    def race(index: int, store: EventStore) -> None:
        while (version := store.stream_version("contested")) < VERSIONS:
            try:
                event = store.push(
                    "raced",
                    "contested",
                    {"writer": index, "read": version},
                    expected_version=version,
                )
            except WrongExpectedVersion as lost:
                losses.append(lost)
            else:
                wins.append(event)

    _run(stores, race)
    assert sorted(event.version for event in wins) == list(range(1, VERSIONS + 1))
    assert all(event.version == event.data["read"] + 1 for event in wins)
    assert all(lost.actual > lost.expected for lost in losses)
    recorded = stores[0].get("contested")
    assert [event.version for event in recorded] == list(range(1, VERSIONS + 1))
    assert sorted(recorded, key=lambda event: event.version) == sorted(
        wins, key=lambda event: event.version
    )


def test_concurrent_writers_on_their_own_streams_all_land_in_the_log_once(
    make_store: Callable[[], EventStore],
) -> None:
    stores = [make_store() for _ in range(WRITERS)]
    pushed: list[Event] = []

    def write(index: int, store: EventStore) -> None:
        for n in range(EVENTS_PER_WRITER):
            pushed.append(store.push("written", f"writer-{index}", {"n": n}))

    _run(stores, write)
    log = list(stores[0].read_all())
    assert sorted(event.id for event in log) == sorted(event.id for event in pushed)
    positions = [event.position for event in log]
    assert all(p < q for p, q in itertools.pairwise(positions))
    versions: dict[object, list[int]] = {}
    for event in log:
        versions.setdefault(event.stream_id, []).append(event.version)
    assert versions == {
        f"writer-{index}": list(range(1, EVENTS_PER_WRITER + 1)) for index in range(WRITERS)
    }
