"""Worker processes driving a SQL read model split into partitions: SIGKILL at random.

A read model over 20,000 events with 4 partitions and 3 worker processes;
workers are SIGKILLed and restarted at random moments, 10 times. Afterwards
the read model equals one built from scratch, every event was applied
exactly once, and each stream's events in version order.
"""

from __future__ import annotations

import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from conduit.subscriptions.partitions import Partition
from test_workers import (
    LEASE_TTL,
    Setup,
    applied,
    applied_counts,
    appliers,
    build_from_scratch,
    eventually,
    push_events,
    setup,
)
from worker_app import Ledger, versions

__all__ = ["setup"]  # the fixture, from test_workers

pytestmark = [pytest.mark.torture, pytest.mark.timeout(420)]

TOTAL_EVENTS = 20_000
PARTITIONS = 4
WORKERS = 3
KILLS = 10


def start_partitioned_worker(setup: Setup) -> subprocess.Popen[bytes]:
    schema = setup.store_options.get("schema")
    code = (
        "import worker_app; "
        f"worker_app.main({setup.store_url!r}, {setup.readmodel_url!r}, schema={schema!r}, "
        f"lease_ttl={LEASE_TTL!r}, batch_size=50, partitions={PARTITIONS})"
    )
    return setup._start([sys.executable, "-c", code])


def partition_checkpoints(engine: sa.Engine) -> dict[str, int]:
    keys = [Partition(index, PARTITIONS).key(Ledger.name) for index in range(PARTITIONS)]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT name, position FROM conduit_checkpoints WHERE name IN :keys"
            ).bindparams(sa.bindparam("keys", expanding=True)),
            {"keys": keys},
        )
        return {str(name): int(position) for name, position in rows}


def out_of_order(engine: sa.Engine) -> dict[str, tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(versions.c.stream_id, versions.c.last, versions.c.out_of_order)
        )
        return {str(stream): (int(last), int(wrong)) for stream, last, wrong in rows}


def test_partitioned_workers_killed_at_random_lose_double_and_reorder_nothing(
    setup: Setup,
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    with setup.store() as store:
        expected = push_events(store, TOTAL_EVENTS, rng)
        head = store.head_position()
    scratch = ThreadPoolExecutor(1).submit(build_from_scratch, setup)
    workers = [start_partitioned_worker(setup) for _ in range(WORKERS)]
    kills = 0
    while kills < KILLS:
        done = applied(setup.engine)
        assert done < TOTAL_EVENTS, f"caught up after {kills} kills (seed {seed})"
        # A kill at a random point of a stretch of what is left, short enough that
        # the workers are still busy at the last kill.
        stretch = (TOTAL_EVENTS - done) // (2 * (KILLS - kills) + 1)
        target = done + rng.randint(1, max(1, stretch))
        eventually(
            lambda target=target: applied(setup.engine) >= target,  # type: ignore[misc]
            f"the workers to apply {target} events (seed {seed})",
            setup,
        )
        victim = rng.randrange(len(workers))
        workers[victim].kill()
        workers[victim].wait(30)
        kills += 1
        workers[victim] = start_partitioned_worker(setup)

    eventually(
        lambda: (
            applied(setup.engine) >= TOTAL_EVENTS
            and all(p >= head for p in partition_checkpoints(setup.engine).values())
        ),
        f"the workers to finish (seed {seed})",
        setup,
        timeout=240,
    )
    assert len(partition_checkpoints(setup.engine)) == PARTITIONS
    count, times = applied_counts(setup.engine)
    assert (count, times) == (TOTAL_EVENTS, {1}), f"lost or doubled (seed {seed})"
    assert len(appliers(setup.engine)) > 1  # more than one process applied events
    orders = out_of_order(setup.engine)
    assert {stream: wrong for stream, (_, wrong) in orders.items() if wrong} == {}
    assert {stream: last for stream, (last, _) in orders.items()} == {
        stream: events for stream, (events, _) in expected.items()
    }
    from worker_app import ledger

    assert ledger(setup.engine) == expected == scratch.result(timeout=240)
