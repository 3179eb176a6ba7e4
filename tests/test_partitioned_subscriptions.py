"""Subscriptions split into partitions: each its checkpoint and lease, shared among drivers.

On every engine (memory, SQLite, PostgreSQL), and under AsyncEventStore
through the kit's adapter (``-async``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conduit import Event, EventStore, InvalidArgument
from conduit.projections import SQLProjection, rebuild
from conduit.subscriptions.partitions import Partition, PartitionsChanged, partition_of
from conduit.testing.waits import eventually

ENGINES = ["memory", "sqlite", "postgres", "sqlite-async", "postgres-async"]

WAIT = 30.0
"""Seconds a test waits for drivers before failing: a bound, never an expectation."""


class Seen:
    """Records each event it handles, by stream, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def versions(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        with self.lock:
            for event in self.events:
                found.setdefault(str(event.stream_id), []).append(event.version)
        return found


def _push(store: EventStore, streams: int, each: int) -> list[Event]:
    return [
        store.push("thing_happened", f"thing-{s}", {"n": n})
        for n in range(each)
        for s in range(streams)
    ]


def test_an_inline_partitioned_subscription_delivers_each_event_once_in_stream_order(
    store: EventStore,
) -> None:
    seen = Seen()
    subscription = store.subscribe(seen, name="seen", partitions=3)
    pushed = _push(store, 7, 4)
    assert sorted(e.id.int for e in seen.events) == sorted(e.id.int for e in pushed)
    assert seen.versions() == {f"thing-{s}": [1, 2, 3, 4] for s in range(7)}
    assert subscription.status().checkpoint == pushed[-1].position


def test_each_partition_keeps_its_own_checkpoint_and_shows_it_in_the_status(
    store: EventStore,
) -> None:
    store.subscribe(Seen(), name="seen", partitions=3)
    pushed = _push(store, 7, 2)
    statuses = [s for s in store.subscription_status() if s.name == "seen"]
    assert [s.partition for s in statuses] == ["0/3", "1/3", "2/3"]
    assert all(s.behind == 0 for s in statuses)
    keys = dict(store.backend.checkpoints())
    for index in range(3):
        assert keys[Partition(index, 3).key("seen")] == pushed[-1].position


def test_the_status_of_a_partition_not_running_here_counts_its_own_streams_behind(
    make_store: Callable[[], EventStore],
) -> None:
    first = make_store()
    _push(first, 5, 1)
    seen = Seen()
    first.subscribe(seen, name="seen", partitions=2)
    first.unsubscribe(seen)
    pushed = _push(first, 5, 2)
    other = make_store()
    behind = [sum(1 for e in pushed if partition_of(e.stream_id, 2) == i) for i in range(2)]
    expected = [("0/2", behind[0]), ("1/2", behind[1])]

    def shown() -> list[tuple[str | None, int]]:
        # A status only looks: on PostgreSQL, another store sees the pushes once the
        # reader horizon has passed them.
        return [(s.partition, s.behind) for s in other.subscription_status() if s.name == "seen"]

    eventually(lambda: shown() == expected, timeout=WAIT, what=f"statuses {expected}")


def test_changing_the_number_of_partitions_is_refused_and_says_to_rebuild(
    store: EventStore,
) -> None:
    seen = Seen()
    store.subscribe(seen, name="seen", partitions=4)
    _push(store, 3, 1)
    store.unsubscribe(seen)
    with pytest.raises(PartitionsChanged, match=r"checkpoints for 4 partitions.*rebuil"):
        store.subscribe(Seen(), name="seen", partitions=2)
    with pytest.raises(PartitionsChanged, match="partitions=1"):
        store.subscribe(Seen(), name="seen")
    assert store.subscribe(Seen(), name="seen", partitions=4).status().checkpoint > 0


def test_a_bad_number_of_partitions_is_refused(store: EventStore) -> None:
    for bad in (0, -1, 2.5, True, 5000):
        with pytest.raises(InvalidArgument, match="partitions"):
            store.subscribe(Seen(), name="seen", partitions=bad)  # type: ignore[arg-type]


# -- SQL read models ------------------------------------------------------------

metadata = sa.MetaData()
totals = sa.Table(
    "totals",
    metadata,
    sa.Column("stream", sa.String(100), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("last", sa.Integer, nullable=False),
)


class Totals(SQLProjection):
    name = "totals"
    metadata = metadata

    def on_thing_happened(self, event: Event, session: sa.orm.Session) -> None:
        stream = str(event.stream_id)
        row = session.execute(sa.select(totals.c.last).where(totals.c.stream == stream)).first()
        if row is None:
            session.execute(totals.insert().values(stream=stream, count=1, last=event.version))
        else:
            assert row[0] == event.version - 1, "out of stream order"
            session.execute(
                totals.update()
                .where(totals.c.stream == stream)
                .values(count=totals.c.count + 1, last=event.version)
            )


def _rows(projection: SQLProjection) -> list[tuple[str, int, int]]:
    with projection.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(totals).order_by(totals.c.stream))]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(f"sqlite:///{tmp_path / 'events.db'}") as store:
        yield store


def test_a_partitioned_sql_read_model_keeps_a_checkpoint_per_partition_in_its_database(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    store = sqlite_store
    projection = Totals(f"sqlite:///{tmp_path / 'read.db'}")
    projection.setup()
    store.subscribe(projection, partitions=3)
    pushed = _push(store, 7, 3)
    assert _rows(projection) == [(f"thing-{s}", 3, 3) for s in range(7)]
    with projection.engine.connect() as conn:
        names = set(conn.exec_driver_sql("SELECT name FROM conduit_checkpoints").scalars())
    assert names == {Partition(i, 3).key("totals") for i in range(3)}
    assert pushed


def test_rebuilding_with_another_number_of_partitions_lets_the_read_model_run_with_it(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    store = sqlite_store
    projection = Totals(f"sqlite:///{tmp_path / 'read.db'}")
    projection.setup()
    subscription = store.subscribe(projection)
    _push(store, 5, 2)
    store.unsubscribe(subscription)
    with pytest.raises(PartitionsChanged):
        store.subscribe(projection, partitions=2)
    rebuild(store, projection, partitions=2)
    store.subscribe(projection, partitions=2)
    _push(store, 5, 1)
    assert _rows(projection) == [(f"thing-{s}", 3, 3) for s in range(5)]
