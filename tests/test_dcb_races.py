"""Races on conditional and multi-stream appends, on every engine: worker processes
(threads for the memory engine, which lives in one process), bounded in count and time.

- seats: 16 racers take seats of 200 courses under conditions; no course ever
  has more seats taken than its capacity, and every seat is taken once;
- disjoint tags: 8 writers append under conditions on tags of their own for a
  bounded time: not one fails (no false conflicts);
- transfers: 8 workers move money between 20 accounts with two-stream pushes,
  retried on conflicts: the sum of balances is constant, every stream's
  versions are contiguous, the global log holds every event once, and each
  transfer's two events are adjacent in it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conduit import EventStore, Query, QueryItem
from conduit.backends.memory import MemoryBackend
from dcb_racers import race_for_seats, transfer, write_own_tags
from torture_workers import Workers, spawn_context

pytestmark = pytest.mark.torture

ENGINES = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=ENGINES)
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """What a worker opens its store from: a URL (and schema), or the memory store."""
    if request.param == "memory":
        store = EventStore(MemoryBackend())
        yield store
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
        with EventStore(url) as store:
            store.setup()
        yield {"url": url}
        return
    url = request.getfixturevalue("postgres_url")
    schema = f"races_{uuid.uuid4().hex[:10]}"
    with EventStore(url, schema=schema) as store:
        store.setup()
    yield {"url": url, "schema": schema}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _store(spec: Any) -> EventStore:
    if isinstance(spec, EventStore):
        return spec
    return (
        EventStore(spec["url"], schema=spec["schema"])
        if spec.get("schema")
        else EventStore(spec["url"])
    )


def _run(
    spec: Any, func: Callable[..., Any], count: int, timeout: float, **kwargs: Any
) -> list[Any]:
    """Run ``func`` ``count`` times at once (processes, or threads for memory)."""
    deadline = time.time() + timeout
    if isinstance(spec, EventStore):
        barrier = threading.Barrier(count)
        results: dict[int, Any] = {}

        def run(i: int) -> None:
            try:
                results[i] = func(spec, i, barrier=barrier, **kwargs)
            except BaseException as exc:
                results[i] = exc

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline + 30 - time.time()))
        assert all(not thread.is_alive() for thread in threads), "threads still running"
        for value in results.values():
            if isinstance(value, BaseException):
                raise value
        return [results[i] for i in range(count)]
    ctx = spawn_context()
    barrier = ctx.Barrier(count)
    with Workers(ctx) as workers:
        names = [f"w{i}" for i in range(count)]
        for i, name in enumerate(names):
            workers.start(name, func, spec=spec, barrier=barrier, **{_index(func): i}, **kwargs)
        found = workers.results(names, deadline=deadline + 60)
    return [found[name] for name in names]


def _index(func: Callable[..., Any]) -> str:
    return {race_for_seats: "racer", write_own_tags: "writer", transfer: "worker"}[func]


def test_racers_never_take_more_seats_than_a_course_has(spec: Any) -> None:
    rounds, capacity = 200, 2
    reports = _run(
        spec,
        race_for_seats,
        16,
        timeout=600,
        rounds=rounds,
        capacity=capacity,
        deadline=time.time() + 600,
    )
    store = _store(spec)
    taken = Counter(
        tag
        for event in store.read_query(Query(QueryItem(names=["seat_taken"])))
        for tag in event.tags
        if tag.startswith("course:")
    )
    assert taken == {f"course:{course}": capacity for course in range(rounds)}
    assert sum(report["wins"] for report in reports) == rounds * capacity
    racers = Counter(
        (event.data["racer"], tag)
        for event in store.read_all()
        for tag in event.tags
        if tag.startswith("course:")
    )
    assert max(racers.values()) == 1  # one seat per racer and course


def test_writers_of_disjoint_tags_never_fail_each_other(spec: Any) -> None:
    # Started together by a barrier, then 10 s of appends each (the length).
    reports = _run(spec, write_own_tags, 8, timeout=120, seconds=10)
    assert [report["failures"] for report in reports] == [0] * 8
    assert all(report["appended"] > 0 for report in reports)
    store = _store(spec)
    for writer, report in enumerate(reports):
        mine = store.read_query(Query(QueryItem(tags=[f"writer:{writer}"])))
        assert len(mine) == report["appended"]


def test_transfers_between_accounts_keep_the_books(spec: Any) -> None:
    accounts, per_worker = 20, 25
    store = _store(spec)
    store.push_many(
        {f"account-{i}": [("credited", {"amount": 100, "ref": "open"})] for i in range(accounts)}
    )
    reports = _run(
        spec,
        transfer,
        8,
        timeout=600,
        accounts=accounts,
        transfers=per_worker,
        deadline=time.time() + 600,
    )
    assert sum(report["done"] for report in reports) == 8 * per_worker
    total = 0
    versions = 0
    for i in range(accounts):
        events = store.get(f"account-{i}")
        assert [event.version for event in events] == list(range(1, len(events) + 1))
        versions += len(events)
        total += sum(
            e.data["amount"] if e.name == "credited" else -e.data["amount"] for e in events
        )
    assert total == 100 * accounts
    log = list(store.read_all())
    assert len(log) == versions == accounts + 2 * 8 * per_worker
    assert len({event.id for event in log}) == len(log)
    positions = [event.position for event in log]
    assert positions == sorted(positions)
    refs = [event.data["ref"] for event in log[accounts:]]
    assert all(refs[i] == refs[i + 1] for i in range(0, len(refs), 2))  # adjacent pairs
