"""Streams over the years, beyond the contract kit: the store-wide retention, VACUUM,
the async face, a projection learning of a deletion."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from conduit import AsyncEventStore, Event, EventStore, InvalidArgument, StreamDeleted
from conduit.lifecycle import AUDIT_STREAM


def _with_retention(make_store: Callable[[], EventStore], retention: timedelta) -> EventStore:
    """A store over the same storage with a store-wide retention."""
    plain = make_store()
    retained = EventStore(plain.backend, retention=retention)
    return retained


def test_retention_hides_old_events_from_stream_reads_and_scavenge_removes_them(
    make_store: Callable[[], EventStore],
) -> None:
    plain = make_store()
    for n in range(3):
        plain.push("measured", "sensor-1", {"n": n})
    plain.delete_stream("other")  # an audit event: Conduit's streams never expire
    retained = EventStore(plain.backend, retention=timedelta(microseconds=1))
    assert retained.get("sensor-1") == []
    assert [e.data["n"] for e in plain.get("sensor-1")] == [0, 1, 2]
    assert len(retained.get(AUDIT_STREAM)) == 1
    report = retained.scavenge()
    assert report.removed == 3
    assert plain.get("sensor-1") == []
    assert plain.stream_version("sensor-1") == 3
    assert [e.name for e in plain.get(AUDIT_STREAM)] == ["stream_deleted", "events_scavenged"]


def test_a_long_retention_hides_nothing(make_store: Callable[[], EventStore]) -> None:
    store = _with_retention(make_store, timedelta(days=30))
    store.push("measured", "sensor-1", {})
    assert len(store.get("sensor-1")) == 1
    assert store.scavenge().removed == 0


def test_retention_must_be_a_positive_timedelta() -> None:
    for bad in (timedelta(0), 5, "1d"):
        with pytest.raises(InvalidArgument):
            EventStore(retention=bad)  # type: ignore[arg-type]


def test_sqlite_positions_are_not_given_again_after_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore(f"sqlite:///{path}") as store:
        last = max(store.push("noted", "tail", {"n": n}).position for n in range(5))
        audit = store.delete_stream("tail", hard=True)
        store.scavenge()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM events")  # even with every event gone
    sqlite3.connect(path).execute("VACUUM").connection.close()
    with EventStore(f"sqlite:///{path}") as store:
        again = store.push("noted", "fresh", {})
        assert again.position > max(last, audit.position)


def test_the_async_face_deletes_truncates_and_scavenges(tmp_path: Path) -> None:
    async def run() -> None:
        async with AsyncEventStore(f"sqlite:///{tmp_path / 'a.db'}") as store:
            for n in range(4):
                await store.push("noted", "s", {"n": n})
            await store.push("noted", "gone", {})
            await store.truncate_stream("s", 3)
            await store.set_stream_metadata("s", max_count=1)
            assert [e.version async for e in store.read("s")] == [4]
            await store.delete_stream("gone", hard=True)
            with pytest.raises(StreamDeleted):
                await store.push("noted", "gone", {})
            report = await store.scavenge(batch_size=2)
            assert report.removed == 1
            found = await store.stream_metadata("s")
            assert found is not None
            assert (found.truncated_before, found.max_count) == (3, 1)
            assert [t.stream_id for t in await store.tombstones()] == ["gone"]

    asyncio.run(run())


def test_a_projection_learns_of_a_deletion_from_the_log() -> None:
    store = EventStore()
    people: dict[str, str] = {}

    class People:
        def on_registered(self, event: Event) -> None:
            people[str(event.stream_id)] = event.data["name"]

        def on_stream_deleted(self, event: Event) -> None:
            people.pop(event.data["stream_id"], None)

    store.subscribe(People())
    store.push("registered", "person-1", {"name": "Ada"})
    store.push("registered", "person-2", {"name": "Bob"})
    store.delete_stream("person-1", hard=True)
    assert people == {"person-2": "Bob"}


def test_a_scavenge_pass_ends_at_the_head_it_started_from(
    make_store: Callable[[], EventStore],
) -> None:
    store, writer = make_store(), make_store()
    for n in range(6):
        store.push("noted", "capped", {"n": n})
    store.set_stream_metadata("capped", max_count=1)
    head = store.head_position()

    def keep_writing(batch: object, seen_head: int) -> None:
        assert seen_head == head
        for n in range(3):  # more than a batch examines: the log grows faster than it
            writer.push("noted", "busy", {"n": n})

    # Bounded: a pass that chased the writers would stop at max_batches, unfinished.
    report = store.scavenge(batch_size=2, max_batches=50, progress=keep_writing)
    assert report.finished
    assert report.last_position >= head
    assert report.examined <= 8  # what the log held when the pass started
    assert report.removed == 5
    assert [e.version for e in store.get("capped")] == [6]
    assert store.scavenge().finished  # the next pass takes what was written meanwhile


def test_a_scavenge_may_leave_writers_a_share_of_the_time(tmp_path: Path) -> None:
    with EventStore(f"sqlite:///{tmp_path / 'share.db'}") as store:
        for n in range(6):
            store.push("noted", "capped", {"n": n})
        store.set_stream_metadata("capped", max_count=1)
        report = store.scavenge(batch_size=2, leave_to_writers=0.5)
        assert (report.finished, report.removed) == (True, 5)
        for bad in (1, 1.5, -0.1, True):
            with pytest.raises(InvalidArgument):
                store.scavenge(leave_to_writers=bad)
