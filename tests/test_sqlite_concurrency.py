"""Several processes sharing one SQLite file: nothing lost, repeated or reordered.

Each test is bounded in time: every loop has a deadline, and children still
running at the end are killed. Nothing here asserts on speed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from conduit import EventStore
from torture_workers import (
    Workers,
    describe,
    log_problems,
    race_on_one_stream,
    reader_problems,
    run_writers_with_readers,
    seen,
    spawn_context,
    write_random_batches,
)

pytestmark = [pytest.mark.torture, pytest.mark.timeout(180)]

BUDGET = 75.0
"""Seconds a test may run before its children are told (or made) to stop."""

OPTIONS: dict[str, Any] = {}


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite file of its own for each test, with its schema made."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    EventStore(url).close()
    return url


def test_four_processes_appending_to_own_and_shared_streams_lose_and_repeat_nothing(
    url: str,
) -> None:
    ctx = spawn_context()
    deadline = time.time() + BUDGET
    start = ctx.Event()
    names = [f"writer-{i}" for i in range(4)]
    with Workers(ctx) as workers:
        for i, name in enumerate(names):
            workers.start(
                name,
                write_random_batches,
                url=url,
                options=OPTIONS,
                writer=i,
                streams=[f"own-{i}", "shared-a", "shared-b"],
                count=500,
                max_batch=5,
                seed=i,
                deadline=deadline,
                start=start,
            )
        start.set()
        by_writer = workers.results(names, deadline=deadline)

    with EventStore(url) as store:
        log = [seen(event) for event in store.read_all()]
        written = [event for name in names for event in by_writer[name]]
        problems = log_problems(log, written)
        assert problems.ok(), describe(problems)
        assert len(log) == 4 * 500
        assert len({event.position for event in log}) == len(log)
        for name in names:
            assert len(by_writer[name]) == 500, name
        versions = {s: store.stream_version(s) for s in ["shared-a", "shared-b"]}
        versions.update({f"own-{i}": store.stream_version(f"own-{i}") for i in range(4)})
        counted = {s: sum(1 for e in log if e.stream_id == s) for s in versions}
        assert versions == counted


def test_reader_tailing_the_file_while_processes_append_sees_each_event_once_in_order(
    url: str,
) -> None:
    run = run_writers_with_readers(
        url,
        OPTIONS,
        writers=4,
        readers=1,
        streams=[f"stream-{i}" for i in range(8)],
        events_per_writer=500,
        max_batch=5,
        deadline=time.time() + BUDGET,
    )

    with EventStore(url) as store:
        log = [seen(event) for event in store.read_all()]
    assert log_problems(log, run.written).ok(), describe(log_problems(log, run.written))
    for name, reader in run.readers.items():
        problems = reader_problems(reader.log, log)
        assert problems.ok(), f"{name}: {describe(problems)}"
        assert not reader.cut_short, name
        assert reader.pages_while_writing > 1, f"{name} did not tail while the writers pushed"


def test_processes_racing_on_one_stream_with_expected_version_have_one_winner_per_version(
    url: str,
) -> None:
    ctx = spawn_context()
    deadline = time.time() + BUDGET
    racers, rounds = 4, 50
    barrier = ctx.Barrier(racers)
    names = [f"racer-{i}" for i in range(racers)]
    with Workers(ctx) as workers:
        for i, name in enumerate(names):
            workers.start(
                name,
                race_on_one_stream,
                url=url,
                options=OPTIONS,
                racer=i,
                stream="contested",
                rounds=rounds,
                barrier=barrier,
                deadline=deadline,
            )
        reports = workers.results(names, deadline=deadline)

    assert [r.other_errors for r in reports.values()] == [[]] * racers
    winners = sorted(won for report in reports.values() for won in report.won)
    assert [version for version, _ in winners] == list(range(1, rounds + 1))
    losses = sorted(lost for report in reports.values() for lost in report.lost)
    assert losses == sorted((v, v + 1) for v in range(rounds) for _ in range(racers - 1))
    with EventStore(url) as store:
        recorded = [(event.version, str(event.id)) for event in store.get("contested")]
    assert recorded == winners
