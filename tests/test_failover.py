"""Failover (docs/postgresql.md, "Failover"), on a real PostgreSQL 15 primary and a
synchronous hot standby started by the test (tests/pgcluster/).

Every part of Conduit reaches the store through one multi-host URL
(``target_session_attrs=read-write``). The primary is stopped with ``-m
immediate`` under 4 writers and a worker process (``conduit run``); pushes
fail with ``StoreUnavailable`` while no server takes writes, and succeed again
once the standby is promoted, without a restart. Writers retry an
unacknowledged push with the same event id. Afterwards every acknowledged
event is in the store exactly once (synchronous replication: nothing
acknowledged is lost), and the worker, resumed by itself, applied each once.
Run alone with ``pytest -m replication``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, ClassVar

import psycopg
import pytest

from conduit import AsyncEventStore, BackendError, Event, EventStore, StoreUnavailable
from pgcluster import start_cluster
from worker_app import EVENT, Ledger, create_database, drop_database, sqlalchemy_url, with_database

pytestmark = [pytest.mark.replication, pytest.mark.timeout(300)]

TESTS = Path(__file__).parent
DEADLINE = 90.0
"""Seconds a wait may last before the test fails: a bound, never an expectation."""
CONDUIT = [sys.executable, "-c", "from conduit.cli import main; main()"]


class Writer(threading.Thread):
    """Pushes to a stream of its own until told to stop, retrying a push that failed
    with the same event id; remembers what was acknowledged and what failed."""

    def __init__(self, url: str, number: int) -> None:
        super().__init__(name=f"writer-{number}", daemon=True)
        self.store = EventStore(url, pool_timeout=1.0)
        self.stream = f"writer-{number}"
        self.acknowledged: list[Event] = []
        self.errors: list[BackendError] = []
        self.failure: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + DEADLINE * 2
        try:
            i = 0
            while not self.stop.is_set():
                event_id = uuid.uuid4()
                while True:
                    assert time.monotonic() < deadline, "a push kept failing"
                    try:
                        event = self.store.push(EVENT, self.stream, {"value": i}, event_id=event_id)
                        break
                    except BackendError as exc:  # not acknowledged: retry the same event
                        self.errors.append(exc)
                        time.sleep(0.05)
                assert event.id == event_id
                self.acknowledged.append(event)
                i += 1
        except BaseException as exc:  # reported by the test
            self.failure = exc
        finally:
            self.store.close()


@pytest.fixture
def readmodel(postgres_url: str) -> Iterator[str]:
    """The worker's read model, in a database of the shared server (which stays up)."""
    name = create_database(postgres_url, "conduit_failover_rm")
    url = sqlalchemy_url(with_database(postgres_url, name))
    tables = Ledger(url)
    tables.setup()
    tables.engine.dispose()
    yield url
    drop_database(postgres_url, name)


def start_worker(url: str, readmodel: str, logs: Path) -> subprocess.Popen[bytes]:
    """``conduit --store URL run ledger_app:ledger`` in a child process."""
    (logs / "ledger_app.py").write_text(
        f"from worker_app import Ledger\n\nledger = Ledger({readmodel!r})\n"
    )
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    log: IO[bytes] = (logs / "worker.log").open("wb")
    command = [*CONDUIT, "--store", url, "run", "ledger_app:ledger", "--lease-ttl", "1"]
    child = subprocess.Popen(
        command, env={**os.environ, "PYTHONPATH": path}, stdout=log, stderr=subprocess.STDOUT,
        cwd=logs,
    )  # fmt: skip
    log.close()
    return child


def applied(readmodel: str) -> dict[uuid.UUID, int]:
    """Per event id, how many times the worker's ledger applied it."""
    url = readmodel.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT event_id, times FROM ledger_hits").fetchall()
    return {uuid.UUID(str(event_id)): times for event_id, times in rows}


def wait_for(check: Any, what: str, worker: subprocess.Popen[bytes], logs: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() >= deadline:
            pytest.fail(
                f"{what}: not within {DEADLINE} s; worker (exit {worker.poll()}):\n"
                f"{(logs / 'worker.log').read_text()[-4000:]}"
            )
        time.sleep(0.1)


def test_after_a_failover_every_acknowledged_push_is_there_once_and_everything_resumed(
    readmodel: str, tmp_path: Path
) -> None:
    with start_cluster(synchronous="on") as cluster:
        schema = f"failover_{uuid.uuid4().hex[:8]}"
        url = cluster.multi_host_url(schema=schema)
        with EventStore(url) as store:
            store.setup()
        worker = start_worker(url, readmodel, tmp_path)
        background = EventStore(url)
        counter = background.subscribe(Counter(), name="counter", mode="background")
        writers = [Writer(url, number) for number in range(4)]
        try:
            for writer in writers:
                writer.start()

            def acknowledged() -> int:
                return sum(len(writer.acknowledged) for writer in writers)

            wait_for(lambda: acknowledged() >= 200, "pushes before the crash", worker, tmp_path)
            wait_for(
                lambda: len(applied(readmodel)) >= 50, "the worker under way", worker, tmp_path
            )

            cluster.primary.stop("immediate")  # a crash: no server takes writes now
            with EventStore(url, pool_timeout=1.0) as probe, pytest.raises(StoreUnavailable) as no:
                probe.push(EVENT, "probe", {"value": 0})
            assert "the store is unavailable" in str(no.value)
            assert "the store is unavailable" in asyncio.run(async_push_error(url))
            cluster.failover()  # the standby promoted
            before = [len(writer.acknowledged) for writer in writers]

            def resumed() -> bool:
                now = [len(writer.acknowledged) for writer in writers]
                return all(
                    later >= earlier + 50 for earlier, later in zip(before, now, strict=True)
                )

            wait_for(resumed, "every writer to push again", worker, tmp_path)
        finally:
            for writer in writers:
                writer.stop.set()
            for writer in writers:
                writer.join(DEADLINE)
        for writer in writers:
            assert writer.failure is None, writer.failure
            assert all(isinstance(error, StoreUnavailable) for error in writer.errors), [
                str(error) for error in writer.errors if not isinstance(error, StoreUnavailable)
            ]

        with EventStore(url) as store:
            log = list(store.read_all())
            by_stream = {writer.stream: store.get(writer.stream) for writer in writers}
        ids = [event.id for event in log]
        assert len(ids) == len(set(ids))
        for writer in writers:
            recorded = by_stream[writer.stream]
            assert [event.version for event in recorded] == list(range(1, len(recorded) + 1))
            values = [event.data["value"] for event in recorded]
            assert values == list(range(len(recorded))), "a push recorded twice, or lost"
            assert {e.id for e in writer.acknowledged} <= {e.id for e in recorded}, "lost"
            # at most the one push in flight when the writer stopped is beyond them
            assert len(recorded) - len(writer.acknowledged) in (0, 1)

        stream_ids = {writer.stream for writer in writers}
        expected = {event.id for event in log if event.stream_id in stream_ids}
        wait_for(
            lambda: set(applied(readmodel)) >= expected, "the worker to catch up", worker, tmp_path
        )
        assert worker.poll() is None, "the worker stopped"
        assert set(applied(readmodel).values()) == {1}, "an event applied twice"
        worker.terminate()
        worker.wait(30)
        # The background subscription resumed by itself too, from its checkpoint.
        counter.wait_for(log[-1], timeout=DEADLINE)
        assert set(Counter.seen) >= expected
        background.close()


class Counter:
    """A store-side projection run as a background subscription: the events it saw."""

    seen: ClassVar[list[uuid.UUID]] = []

    def on_amount_recorded(self, event: Event) -> None:
        self.seen.append(event.id)


async def async_push_error(url: str) -> str:
    """What a push through ``AsyncEventStore`` raises while no server takes writes."""
    store = AsyncEventStore(url, pool_timeout=1.0)
    try:
        await store.push(EVENT, "probe", {"value": 0})
    except StoreUnavailable as exc:
        return str(exc)
    finally:
        await store.close()
    raise AssertionError("the push succeeded")


def test_a_retried_push_that_was_never_acknowledged_returns_the_recorded_event() -> None:
    """The primary crashes while a push waits for the synchronous standby to apply it:
    the standby has the commit, the caller never heard back. Its retry with the same
    event id, on the promoted standby, through the async face, gets that event back."""
    with start_cluster(synchronous="remote_apply") as cluster:
        url = cluster.multi_host_url(schema="retry")
        with EventStore(url) as store:
            store.setup()
            cluster.standby.pause_replay()  # commits now wait in SyncRep
            event_id = uuid.uuid4()
            outcome: list[Event | BaseException] = []

            def push() -> None:
                try:
                    outcome.append(store.push(EVENT, "s", {"value": 1}, event_id=event_id))
                except BaseException as exc:
                    outcome.append(exc)

            pusher = threading.Thread(target=push)
            pusher.start()
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
            deadline = time.monotonic() + DEADLINE
            while cluster.primary.scalar(waiting) != 1:
                assert time.monotonic() < deadline, "the push never waited for the standby"
                time.sleep(0.05)
            cluster.failover()  # promotion ends the pause: the standby applies the commit
            pusher.join(DEADLINE)
        assert len(outcome) == 1
        # The executor's own retry may already have reached the new primary (and been
        # given the recorded event back); or the caller heard the store was away.
        assert isinstance(outcome[0], Event | StoreUnavailable), outcome
        print("the push in flight during the failover:", repr(outcome[0])[:200])

        async def retry() -> tuple[Event, list[Event]]:
            async with AsyncEventStore(url) as again:
                event = await again.push(EVENT, "s", {"value": 1}, event_id=event_id)
                return event, await again.get("s")

        retried, recorded = asyncio.run(asyncio.wait_for(retry(), DEADLINE))
        assert [event.id for event in recorded] == [event_id]  # once, not twice
        assert (retried.id, retried.position, retried.version) == (
            event_id,
            recorded[0].position,
            1,
        )


@pytest.fixture(autouse=True)
def _no_worker_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    started: list[subprocess.Popen[bytes]] = []
    real = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        child: subprocess.Popen[bytes] = real(*args, **kwargs)
        started.append(child)
        return child

    monkeypatch.setattr(subprocess, "Popen", popen)
    yield
    for child in started:
        if child.poll() is None:
            child.kill()
            child.wait(10)
