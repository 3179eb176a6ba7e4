"""Background drivers of a partitioned subscription share its partitions; one that stops
leaves its partitions to the others.

On the sync face's engines (memory, SQLite, PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conduit import EventStore
from conduit.testing.waits import eventually
from test_partitioned_subscriptions import WAIT, Seen, Totals, _push, _rows

ENGINES = ["memory", "sqlite", "postgres"]


def test_background_drivers_share_the_partitions_and_apply_each_event_once(
    make_store: Callable[[], EventStore],
) -> None:
    seen = Seen()
    drivers = [
        make_store().subscribe(
            seen, name="seen", mode="background", partitions=4, poll_interval=0.01, lease_ttl=2
        )
        for _ in range(2)
    ]
    try:
        pushed = _push(make_store(), 9, 5)

        def shared() -> bool:
            for driver in drivers:
                driver.status()  # through the store (under asyncio, handlers run meanwhile)
            mine = [set(d.driver.mine) for d in drivers]  # type: ignore[union-attr]
            return all(mine) and set().union(*mine) == {0, 1, 2, 3} and not (mine[0] & mine[1])

        eventually(shared, timeout=WAIT, what="the two drivers to share the four partitions")
        for driver in drivers:
            driver.wait_for(pushed[-1].position, timeout=WAIT)
        assert sorted(e.id.int for e in seen.events) == sorted(e.id.int for e in pushed)
        assert seen.versions() == {f"thing-{s}": [1, 2, 3, 4, 5] for s in range(9)}
    finally:
        for driver in drivers:
            driver.stop()


def test_a_driver_that_stops_leaves_its_partitions_to_the_one_left(
    make_store: Callable[[], EventStore],
) -> None:
    seen = Seen()
    options = {"mode": "background", "partitions": 3, "poll_interval": 0.01, "lease_ttl": 2}
    first = make_store().subscribe(seen, name="seen", **options)  # type: ignore[call-overload]
    second = make_store().subscribe(seen, name="seen", **options)  # type: ignore[call-overload]
    try:
        eventually(
            lambda: (
                bool(first.status() and first.driver.mine)
                and bool(second.status() and second.driver.mine)
            ),
            timeout=WAIT,
            what="both drivers to hold partitions",
        )
        second.stop()
        eventually(
            lambda: bool(first.status()) and first.driver.mine == {0, 1, 2},
            timeout=WAIT,
            what="the driver left to take every partition",
        )
        pushed = _push(make_store(), 6, 3)
        first.wait_for(pushed[-1].position, timeout=WAIT)
        assert sorted(e.id.int for e in seen.events) == sorted(e.id.int for e in pushed)
    finally:
        first.stop()
        second.stop()


def test_background_drivers_of_a_sql_read_model_each_hold_a_partition_of_their_own(
    make_store: Callable[[], EventStore], tmp_path: Path
) -> None:
    projection = Totals(f"sqlite:///{tmp_path / 'read.db'}")
    projection.setup()
    drivers = [
        make_store().subscribe(
            Totals(projection.engine),
            mode="background",
            partitions=2,
            poll_interval=0.01,
            lease_ttl=2,
        )
        for _ in range(2)
    ]
    try:
        # Each partition's lease is its own: both drivers drive at once.
        eventually(
            lambda: all(d.active for d in drivers),
            timeout=WAIT,
            what="both drivers to hold a partition's lease",
        )
        _push(make_store(), 6, 3)
        eventually(
            lambda: _rows(projection) == [(f"thing-{s}", 3, 3) for s in range(6)],
            timeout=WAIT,
            what="the read model to hold every event",
        )
    finally:
        for driver in drivers:
            driver.stop()
