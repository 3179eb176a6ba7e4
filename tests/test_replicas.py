"""Read replicas (docs/postgresql.md, "Read replicas"), on a real PostgreSQL 15 primary
and hot standby started by the tests (tests/pgcluster/).

Reads go to the replica, writes to the primary; a store reads its own writes
through a lagging replica (it waits, bounded, then reads the primary); a
replica that does not answer sends the reads to the primary; and a tailer of
the global log on the replica skips and repeats nothing while 8 writers push
on the primary and an older transaction is held open, then committed.
Run alone with ``pytest -m replication``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from conduit import AsyncEventStore, Event, EventStore, StoreUnavailable
from conduit.cli import app
from pgcluster import Cluster, free_port, start_cluster, wait_until

pytestmark = [pytest.mark.replication, pytest.mark.timeout(240)]

DEADLINE = 60.0
"""Seconds a loop of a test may last before it fails: a bound, never an expectation."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A primary and an asynchronous hot standby, shared by the module's tests, which
    leave both running with replay going on."""
    with start_cluster() as cluster:
        yield cluster


@pytest.fixture
def schema(cluster: Cluster) -> Iterator[str]:
    """A new Conduit schema, made on the primary and replayed by the standby."""
    name = f"replicas_{uuid.uuid4().hex[:10]}"
    with EventStore(cluster.url, schema=name) as store:
        store.setup()
    cluster.wait_for_replay()
    yield name
    cluster.standby.resume_replay()
    cluster.primary.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def replicas_state(store: EventStore) -> dict[str, Any]:
    """What the store's engine knows of its replicas (which it left out, their replay)."""
    state: dict[str, Any] = store.backend.engine.replicas_state()  # type: ignore[attr-defined]
    return state


def replica_store(cluster: Cluster, schema: str, **options: Any) -> EventStore:
    return EventStore(cluster.url, schema=schema, replicas=[cluster.standby.url], **options)


def test_reads_go_to_the_replica_and_writes_to_the_primary(cluster: Cluster, schema: str) -> None:
    writer = EventStore(cluster.url, schema=schema)
    reader = replica_store(cluster, schema)
    first = writer.push("thing_happened", "s", {"n": 1})
    cluster.wait_for_replay()
    cluster.standby.pause_replay()
    writer.push("thing_happened", "s", {"n": 2})
    cluster.wait_for_receive()  # on the standby, not yet replayed

    # The reader never pushed: it reads the replica as it stands.
    assert [event.id for event in reader.get("s")] == [first.id]
    assert [event.id for event in reader.read_all()] == [first.id]
    assert reader.stream_version("s") == 1
    assert [info.version for info in reader.streams()] == [1]
    assert writer.stream_version("s") == 2  # what the primary holds

    cluster.standby.resume_replay()
    wait_until(lambda: reader.stream_version("s") == 2, what="the replica to replay the push")
    writer.close()
    reader.close()


def test_replicas_named_in_the_url_are_read_from_too(cluster: Cluster, schema: str) -> None:
    port = cluster.standby.port
    url = f"{cluster.url}?schema={schema}&replica=127.0.0.1:{port}"
    with EventStore(url) as reader, EventStore(cluster.url, schema=schema) as writer:
        cluster.standby.pause_replay()
        writer.push("thing_happened", "s", {})
        cluster.wait_for_receive()
        assert reader.stream_version("s") == 0  # the replica's view
        cluster.standby.resume_replay()


def test_a_push_reads_back_at_once_through_a_paused_replica(cluster: Cluster, schema: str) -> None:
    """Read-your-writes: the replica has not replayed the push, so the read waits for it
    (read_your_writes_timeout), then reads the primary."""
    store = replica_store(cluster, schema, read_your_writes_timeout=0.3)
    cluster.standby.pause_replay()
    event = store.push("thing_happened", "s", {"n": 1})
    assert [e.id for e in store.get("s")] == [event.id]
    assert [e.id for e in store.read_all()] == [event.id]
    assert store.stream_version("s") == 1
    assert store.head_position() == event.position
    second = store.push("thing_happened", "s", {"n": 2})  # again, once more
    assert [e.id for e in store.read("s", from_version=2)] == [second.id]
    cluster.standby.resume_replay()
    store.close()


def test_a_push_is_read_from_the_replica_once_it_replayed_it(cluster: Cluster, schema: str) -> None:
    store = replica_store(cluster, schema)
    event = store.push("thing_happened", "s", {})
    assert [e.id for e in store.read_all()] == [event.id]
    assert replicas_state(store)["replayed"][0] > 0  # it asked the replica
    store.close()


def test_the_async_store_reads_its_own_writes_through_a_paused_replica(
    cluster: Cluster, schema: str
) -> None:
    async def scenario() -> None:
        store = AsyncEventStore(
            cluster.url, schema=schema, replicas=[cluster.standby.url], read_your_writes_timeout=0.3
        )
        try:
            other = EventStore(cluster.url, schema=schema)
            other.push("thing_happened", "other", {})
            cluster.wait_for_receive()
            assert await store.stream_version("other") == 0  # the paused replica's view
            event = await store.push("thing_happened", "s", {})
            assert [e.id for e in await store.get("s")] == [event.id]
            assert await store.stream_version("other") == 1  # read on the primary, after it
            other.close()
        finally:
            await store.close()

    cluster.standby.pause_replay()
    try:
        asyncio.run(asyncio.wait_for(scenario(), DEADLINE))
    finally:
        cluster.standby.resume_replay()


def test_a_replica_that_does_not_answer_sends_reads_to_the_primary(
    cluster: Cluster, schema: str
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/{cluster.database}"
    store = EventStore(cluster.url, schema=schema, replicas=[nowhere], replica_timeout=0.5)
    EventStore(cluster.url, schema=schema).push("thing_happened", "s", {})
    assert store.stream_version("s") == 1
    assert len(list(store.read_all())) == 1
    assert replicas_state(store)["left_out"][0] > 0
    store.close()


def test_a_tailer_on_the_replica_skips_and_repeats_nothing_while_8_writers_push(
    cluster: Cluster, schema: str
) -> None:
    """8 writers push on the primary while an older transaction holds an append open
    (the horizon on the standby holds the tailer back until it commits)."""
    writers, per_writer, streams = 8, 150, 24
    tailer = replica_store(cluster, schema)
    pushed: list[Event] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def write(number: int) -> None:
        try:
            with EventStore(cluster.url, schema=schema) as store:
                for i in range(per_writer):
                    event = store.push(
                        "thing_happened", f"s-{(number * 7 + i) % streams}", {"i": i}
                    )
                    with lock:
                        pushed.append(event)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    held_id = uuid.uuid4()
    seen: list[Event] = []
    after = 0

    def tail() -> None:
        nonlocal after
        for event in tailer.read_all(after=after):
            seen.append(event)
            after = event.position

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DEADLINE
    with psycopg.connect(cluster.url, autocommit=False) as older:
        while len(seen) < 100:  # the tailer is under way...
            tail()
            assert time.monotonic() < deadline, "the tailer saw too little in time"
        older.execute(  # ...when an append starts and stays open, the writers going on
            f'SELECT * FROM "{schema}".append_event(%s, false, NULL, %s, %s, %s, %s, false)',
            ("held", held_id, "thing_happened", "{}", "{}"),
        )
        while any(thread.is_alive() for thread in threads):
            tail()
            assert time.monotonic() < deadline, "the writers did not finish in time"
        for thread in threads:
            thread.join()
        assert not failures, failures
        cluster.wait_for_replay()
        tail()
        assert held_id not in {event.id for event in seen}  # held back by the horizon
        held_back = len(pushed) - len(seen)
        older.commit()

    expected = {event.id for event in pushed} | {held_id}
    while len(seen) < len(expected):
        tail()
        assert time.monotonic() < deadline, f"the tailer saw {len(seen)} of {len(expected)}"
    assert held_back > 0  # what committed after the held append waited for it
    ids = [event.id for event in seen]
    assert len(ids) == len(set(ids)), "an event was seen twice"
    assert set(ids) == expected, "an event was skipped"
    positions = [event.position for event in seen]
    assert positions == sorted(positions)
    versions: dict[Any, int] = {}
    for event in seen:
        assert event.version == versions.get(event.stream_id, 0) + 1, "out of stream order"
        versions[event.stream_id] = event.version
    assert replicas_state(tailer)["left_out"] == [0.0]  # it read the replica
    tailer.close()


class Seen:
    """A store-side projection: the ids of the events it was given."""

    def __init__(self) -> None:
        self.ids: list[uuid.UUID] = []

    def on_thing_happened(self, event: Event) -> None:
        self.ids.append(event.id)


def test_a_background_subscription_polls_the_replica_and_checkpoints_on_the_primary(
    cluster: Cluster, schema: str
) -> None:
    reader = replica_store(cluster, schema)
    seen = Seen()
    subscription = reader.subscribe(seen, name="seen", mode="background")
    with EventStore(cluster.url, schema=schema) as writer:
        cluster.standby.pause_replay()
        event = writer.push("thing_happened", "s", {})
        cluster.wait_for_receive()
        # What the subscription reads is the replica's: the standby's sessions show it.
        sessions = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        wait_until(lambda: cluster.standby.scalar(sessions) > 0, what="a reader on the standby")
        assert seen.ids == []  # the standby has not replayed the push: nothing to read
        cluster.standby.resume_replay()
        subscription.wait_for(event, timeout=DEADLINE)
        assert seen.ids == [event.id]
        with psycopg.connect(cluster.url) as conn:  # the checkpoint is the primary's
            row = conn.execute(
                f'SELECT position FROM "{schema}".subscriptions WHERE name = %s', ["seen"]
            ).fetchone()
        assert row == (event.position,)
    reader.close()


def test_the_cli_reads_from_the_replicas_of_its_url(cluster: Cluster, schema: str) -> None:
    with EventStore(cluster.url, schema=schema) as writer:
        writer.push("thing_happened", "on-both", {})
        cluster.wait_for_replay()
        cluster.standby.pause_replay()
        writer.push("thing_happened", "on-the-primary-only", {})
        cluster.wait_for_receive()
    url = f"{cluster.url}?schema={schema}&replica=127.0.0.1:{cluster.standby.port}"
    env = {"COLUMNS": "200", "CONDUIT_URL": None}
    through_replica = CliRunner().invoke(app, ["--store", url, "streams"], env=env)
    primary_url = f"{cluster.url}?schema={schema}"
    on_primary = CliRunner().invoke(app, ["--store", primary_url, "streams"], env=env)
    cluster.standby.resume_replay()
    assert through_replica.exit_code == 0, through_replica.output
    assert "on-both" in through_replica.output
    assert "on-the-primary-only" not in through_replica.output  # the paused replica's view
    assert "on-the-primary-only" in on_primary.output


def test_a_push_to_a_standby_says_the_store_is_unavailable(cluster: Cluster, schema: str) -> None:
    with EventStore(cluster.standby.url, schema=schema) as store:
        with pytest.raises(StoreUnavailable, match="read-only standby"):
            store.push("thing_happened", "s", {})
        assert store.stream_version("s") == 0  # reads work there


def test_a_replica_that_does_not_answer_is_left_out_for_the_others(
    cluster: Cluster, schema: str
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    store = EventStore(
        cluster.url, schema=schema, replicas=[nowhere, cluster.standby.url], replica_timeout=0.5
    )
    with EventStore(cluster.url, schema=schema) as writer:
        cluster.standby.pause_replay()
        writer.push("thing_happened", "s", {})
        cluster.wait_for_receive()
        for _ in range(4):  # each read to the next replica in turn: both are asked
            assert store.stream_version("s") == 0  # the paused standby's view, not the primary's
        cluster.standby.resume_replay()
    left_out = replicas_state(store)["left_out"]
    assert left_out[0] > 0
    assert left_out[1] == 0
    store.close()
