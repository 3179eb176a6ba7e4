"""Worker processes driving a SQL read model: SIGKILL at random moments, takeover, outages.

Each worker is a child process running :func:`conduit.subscriptions.worker.run_worker`
through ``tests/worker_app.py``; the store and the read model are on the same
kind of engine (two SQLite files, or a PostgreSQL schema and a PostgreSQL
database of the read model's own). The ledger read model counts events and
sums their values per stream and counts how many times each event was
applied, so that an effect lost or doubled shows. Every wait has a deadline;
nothing asserts on speed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import sqlalchemy as sa

from conduit import EventStore
from worker_app import (
    EVENT,
    Broken,
    Ledger,
    Totals,
    create_database,
    drop_database,
    hits,
    ledger,
    read_checkpoint,
    refusing_connections,
    sqlalchemy_url,
    sqlite_locked,
    with_database,
)

pytestmark = [pytest.mark.torture, pytest.mark.timeout(240)]

TESTS = Path(__file__).parent
WAIT = 90.0
"""Seconds a wait may last before the test fails: a bound, never an expectation."""

CONDUIT = [sys.executable, "-c", "from conduit.cli import main; main()"]
"""The ``conduit`` command, run by this interpreter."""

LEASE_TTL = 1.0
"""Workers' lease: on SQLite a killed worker's lease runs out after this long."""


@dataclass
class Setup:
    """Where a test's store and read model live, and its worker processes."""

    kind: str
    store_url: str
    store_options: dict[str, Any]
    readmodel_url: str
    logs: Path
    new_readmodel: Callable[[], str]
    outage: Callable[[], AbstractContextManager[None]]
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _engine: sa.Engine | None = None

    def store(self) -> EventStore:
        store = EventStore(self.store_url, **self.store_options)
        store.setup()
        return store

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:  # without the workers' short busy timeout
            url = sa.make_url(self.readmodel_url).difference_update_query(["timeout"])
            self._engine = sa.create_engine(url, pool_pre_ping=True)
        return self._engine

    def start_worker(self, *, batch_size: int = 100) -> subprocess.Popen[bytes]:
        """A worker process running the ledger; its output goes to a log file."""
        schema = self.store_options.get("schema")
        code = (
            "import worker_app; "
            f"worker_app.main({self.store_url!r}, {self.readmodel_url!r}, schema={schema!r}, "
            f"lease_ttl={LEASE_TTL!r}, batch_size={batch_size!r})"
        )
        return self._start([sys.executable, "-c", code])

    def _start(self, command: list[str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
        log: IO[bytes] = (self.logs / f"worker-{len(self.children)}.log").open("wb")
        child = subprocess.Popen(
            command,
            env={**os.environ, "PYTHONPATH": path},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        log.close()
        self.children.append(child)
        return child

    def start_cli_worker(self, *, batch_size: int = 100) -> subprocess.Popen[bytes]:
        """A worker started as ``conduit --store URL run ledger_app:ledger``."""
        app = self.logs.parent / "ledger_app.py"
        if not app.exists():
            app.write_text(
                f"from worker_app import Ledger\n\nledger = Ledger({self.readmodel_url!r})\n"
            )
        url = self.store_url
        if "schema" in self.store_options:
            url += f"?schema={self.store_options['schema']}"
        command = [
            *CONDUIT,
            "--store",
            url,
            "run",
            "ledger_app:ledger",
            "--lease-ttl",
            str(LEASE_TTL),
            "--batch-size",
            str(batch_size),
        ]
        return self._start(command, cwd=app.parent)

    def log_of(self, child: subprocess.Popen[bytes]) -> str:
        return (self.logs / f"worker-{self.children.index(child)}.log").read_text()

    def checkpoint(self) -> int:
        return read_checkpoint(self.engine)

    def stop_all(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(10)
        if self._engine is not None:
            self._engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """A fresh store and read model on the engine of the test's parameter."""
    dropped: list[str] = []
    if request.param == "sqlite":
        made = iter(range(1000))

        def new_readmodel() -> str:
            # A short busy timeout: a locked read model fails, and is retried.
            return f"sqlite:///{tmp_path / f'readmodel-{next(made)}.db'}?timeout=0.1"

        store_url, options = f"sqlite:///{tmp_path / 'events.db'}", {}
        readmodel = new_readmodel()

        def outage() -> AbstractContextManager[None]:
            return sqlite_locked(str(sa.make_url(readmodel).database))

    else:
        admin: str = request.getfixturevalue("postgres_url")

        def new_readmodel() -> str:
            dropped.append(create_database(admin, "conduit_worker_rm"))
            return sqlalchemy_url(with_database(admin, dropped[-1]))

        store_url, options = admin, {"schema": f"workers_{uuid.uuid4().hex[:10]}"}
        readmodel = new_readmodel()

        def outage() -> AbstractContextManager[None]:
            return refusing_connections(admin, dropped[0])

    logs = tmp_path / "logs"
    logs.mkdir()
    found = Setup(request.param, store_url, options, readmodel, logs, new_readmodel, outage)
    with found.store():
        pass
    tables = Ledger(readmodel)
    tables.setup()
    tables.engine.dispose()
    try:
        yield found
    finally:
        found.stop_all()
        for name in dropped:
            drop_database(admin, name)


# -- helpers ---------------------------------------------------------------------


def push_events(store: EventStore, count: int, rng: random.Random, streams: int = 40) -> Totals:
    """Push ``count`` events in batches over ``streams`` streams; the ledger they make."""
    expected: dict[str, tuple[int, int]] = {}
    pushed = 0
    while pushed < count:
        stream = f"account-{rng.randrange(streams)}"
        size = min(count - pushed, rng.randint(1, 100))
        values = [rng.randint(1, 1000) for _ in range(size)]
        store.push_many(stream, [(EVENT, {"value": value}) for value in values])
        events, total = expected.get(stream, (0, 0))
        expected[stream] = (events + size, total + sum(values))
        pushed += size
    store.head_position()  # visible to every reader before the workers look (docs/design.md §3.3)
    return expected


def eventually(
    check: Callable[[], bool],
    what: str,
    setup: Setup,
    timeout: float = WAIT,
    interval: float = 0.05,
) -> None:
    """Wait, bounded, until ``check()`` holds; on failure show the workers' logs."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            logs = "\n".join(
                f"--- worker {n} (exit {child.poll()}):\n{setup.log_of(child)[-3000:]}"
                for n, child in enumerate(setup.children)
            )
            pytest.fail(f"{what}: not within {timeout} s\n{logs}")
        time.sleep(interval)


def appliers(engine: sa.Engine) -> dict[int, int]:
    """Per worker process id, how many events it applied."""
    query = sa.select(hits.c.pid, sa.func.count()).group_by(hits.c.pid)
    with engine.connect() as conn:
        return {pid: n for pid, n in conn.execute(query)}


def applied(engine: sa.Engine) -> int:
    """How many distinct events the ledger has applied so far."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(hits)).scalar_one())


def applied_counts(engine: sa.Engine) -> tuple[int, set[int]]:
    """How many events were applied, and the set of times each was applied."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(hits.c.times)).scalars().all()
    return len(rows), set(rows)


def stop_gracefully(setup: Setup, child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGTERM)
    try:
        assert child.wait(30) == 0, setup.log_of(child)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not stop on SIGTERM\n{setup.log_of(child)[-3000:]}")


def build_from_scratch(setup: Setup) -> Totals:
    """The ledger built in one go, by this process, into a read model of its own."""
    scratch = Ledger(setup.new_readmodel(), name="scratch")
    scratch.setup()
    try:
        with setup.store() as store:
            store.subscribe(scratch, batch_size=1000)
        return ledger(scratch.engine)
    finally:
        scratch.engine.dispose()


# -- the tests -------------------------------------------------------------------


TOTAL_EVENTS = 20_000
KILLS = 10


def test_worker_killed_at_random_moments_loses_and_doubles_nothing(setup: Setup) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    with setup.store() as store:
        expected = push_events(store, TOTAL_EVENTS, rng)
        head = store.head_position()
    kills: list[int] = []
    # The model built from scratch, by this process meanwhile.
    scratch = ThreadPoolExecutor(1).submit(build_from_scratch, setup)

    while len(kills) < KILLS:
        done = applied(setup.engine)
        assert done < TOTAL_EVENTS, f"caught up after {len(kills)} kills (seed {seed})"
        # Each kill comes at a random point of a stretch of what is left, short
        # enough that however fast the worker, it is still busy at the last kill
        # (a kill after a random time let a fast worker finish first).
        stretch = (TOTAL_EVENTS - done) // (2 * (KILLS - len(kills)) + 1)
        target = done + rng.randint(1, max(1, stretch))
        worker = setup.start_worker()
        eventually(
            lambda: applied(setup.engine) >= target,  # noqa: B023
            "the worker makes progress",
            setup,
            interval=0.005,
        )
        time.sleep(rng.uniform(0.0, 0.02))  # a random moment in the batch at hand
        worker.kill()
        worker.wait(10)
        kills.append(setup.checkpoint())

    last = setup.start_worker()
    eventually(lambda: setup.checkpoint() == head, "the last worker catches up", setup)
    stop_gracefully(setup, last)

    assert len(kills) >= KILLS
    assert kills == sorted(kills), "the checkpoint never goes back"
    assert applied_counts(setup.engine) == (TOTAL_EVENTS, {1}), f"seed {seed}"
    assert ledger(setup.engine) == expected, f"seed {seed}"
    assert scratch.result(WAIT) == expected
    with setup.store() as store:
        assert list(store.parked()) == []


class Pusher:
    """Pushes small batches of events from a thread, at a steady pace, until stopped."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.expected: Totals = {}
        self.count = 0
        self._stop = threading.Event()
        self._rng = random.Random()
        self._thread = threading.Thread(target=self._run, name="pusher")

    def __enter__(self) -> Pusher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.add(push_events(self.store, 10, self._rng))

    def add(self, more: Totals) -> None:
        for stream, (count, total) in more.items():
            before = self.expected.get(stream, (0, 0))
            self.expected[stream] = (before[0] + count, before[1] + total)
            self.count += count

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)


def test_of_two_workers_one_drives_and_the_other_takes_over_when_it_is_killed(
    setup: Setup,
) -> None:
    with setup.store() as store, Pusher(store) as pusher:
        # A backlog that takes the first worker longer than its lease_ttl to go through.
        pusher.add(push_events(store, 3_000, random.Random()))
        first = setup.start_worker(batch_size=50)
        eventually(lambda: first.pid in appliers(setup.engine), "the first worker drives", setup)
        second = setup.start_worker(batch_size=50)
        eventually(
            lambda: "worker running ledger" in setup.log_of(second),
            "the second worker runs",
            setup,
        )
        # The second asked for the lease and was refused it; the first goes on.
        eventually(
            lambda: "standing by, another driver holds it" in setup.log_of(second),
            "the second worker is refused the lease",
            setup,
        )
        progress = setup.checkpoint()
        eventually(lambda: setup.checkpoint() > progress, "the first worker still drives", setup)
        assert set(appliers(setup.engine)) == {first.pid}, "only the first worker applies"

        first.kill()
        first.wait(10)
        eventually(lambda: second.pid in appliers(setup.engine), "the second takes over", setup)
        taken_over = setup.checkpoint()
        eventually(lambda: setup.checkpoint() > taken_over, "the second goes on", setup)
        pusher.stop()
        head = store.head_position()
    eventually(lambda: setup.checkpoint() == head, "the second worker catches up", setup)
    stop_gracefully(setup, second)

    by_worker = appliers(setup.engine)
    assert set(by_worker) == {first.pid, second.pid}
    # The second went on from the first's checkpoint: nothing redone, nothing skipped.
    assert sum(by_worker.values()) == pusher.count
    assert applied_counts(setup.engine) == (pusher.count, {1})
    assert ledger(setup.engine) == pusher.expected


def test_worker_catches_up_after_the_read_model_database_was_unavailable(
    setup: Setup,
) -> None:
    rng = random.Random()
    with setup.store() as store:
        expected = push_events(store, 2_000, rng)
        worker = setup.start_worker(batch_size=50)
        eventually(lambda: setup.checkpoint() > 0, "the worker makes progress", setup)

        with setup.outage():
            more = push_events(store, 500, rng)
            # Away until the worker has failed and retried a few times.
            eventually(
                lambda: setup.log_of(worker).count("storage unavailable") >= 3,
                "the worker finds the read model away and retries",
                setup,
            )
        head = store.head_position()
    eventually(lambda: setup.checkpoint() == head, "the worker catches up", setup)

    assert worker.poll() is None, setup.log_of(worker)
    stop_gracefully(setup, worker)
    for stream, (count, total) in more.items():
        before = expected.get(stream, (0, 0))
        expected[stream] = (before[0] + count, before[1] + total)
    assert applied_counts(setup.engine) == (2_500, {1})
    assert ledger(setup.engine) == expected


def test_conduit_run_workers_take_over_from_each_other_and_stop_on_sigterm(
    setup: Setup,
) -> None:
    with setup.store() as store, Pusher(store) as pusher:
        pusher.add(push_events(store, 2_000, random.Random()))
        workers = [setup.start_cli_worker(batch_size=50) for _ in range(2)]
        eventually(lambda: bool(appliers(setup.engine)), "a worker drives", setup)
        [driving] = [w for w in workers if w.pid in appliers(setup.engine)]
        [waiting] = [w for w in workers if w is not driving]

        driving.kill()
        driving.wait(10)
        eventually(lambda: waiting.pid in appliers(setup.engine), "the other takes over", setup)
        pusher.stop()
        head = store.head_position()
    eventually(lambda: setup.checkpoint() == head, "the worker catches up", setup)
    stop_gracefully(setup, waiting)

    assert "Running ledger on" in setup.log_of(waiting)
    assert "Stopped." in setup.log_of(waiting)
    assert set(appliers(setup.engine)) == {driving.pid, waiting.pid}
    assert applied_counts(setup.engine) == (pusher.count, {1})
    assert ledger(setup.engine) == pusher.expected


# -- a projection that cannot go on ends the worker ------------------------------------


class Strict:
    """A projection that fails on every event whose data says ``bad``."""

    name = "strict"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_event(self, event: Any) -> None:
        if event.data.get("bad"):
            raise RuntimeError(f"cannot handle event {event.id}")
        self.seen.append(event.id)


def run_until_failure(store: EventStore, projections: list[Any], **options: Any) -> None:
    """:func:`run_worker`, stopped after ``WAIT`` seconds if it has not stopped itself."""
    from conduit.subscriptions.worker import run_worker

    stop = threading.Event()
    guard = threading.Timer(WAIT, stop.set)
    guard.start()
    try:
        run_worker(store, projections, stop=stop, handle_signals=False, **options)
    finally:
        guard.cancel()


def test_run_worker_ends_with_an_error_naming_a_projection_stopped_by_a_failing_event(
    store: EventStore,
) -> None:
    from conduit.subscriptions.worker import WorkerFailed

    store.push("thing_happened", "s", {"n": 1})
    bad = store.push("thing_happened", "s", {"bad": True})
    store.head_position()
    strict = Strict()

    with pytest.raises(WorkerFailed, match="'strict' stopped") as failed:
        run_until_failure(store, [strict], on_failure="stop", max_attempts=1)

    [(name, error)] = failed.value.failures
    assert name == "strict"
    assert str(bad.id) in str(error)
    assert len(strict.seen) == 1


def test_run_worker_ends_with_an_error_when_a_driver_fails_unexpectedly(
    store: EventStore,
) -> None:
    from conduit.subscriptions.worker import WorkerFailed

    with pytest.raises(WorkerFailed, match="'broken' stopped: a bug in the projection"):
        run_until_failure(store, [Broken()])


def test_conduit_run_exits_with_status_1_naming_a_projection_that_cannot_go_on(
    setup: Setup,
) -> None:
    app = setup.logs.parent / "broken_app.py"
    app.write_text("from worker_app import Broken\n\nprojections = [Broken()]\n")
    url = setup.store_url
    if "schema" in setup.store_options:
        url += f"?schema={setup.store_options['schema']}"
    worker = setup._start([*CONDUIT, "--store", url, "run", "broken_app:projections"], app.parent)

    try:
        status = worker.wait(WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not stop\n{setup.log_of(worker)[-3000:]}")
    assert status == 1, setup.log_of(worker)
    assert "Projection broken stopped: a bug in the projection" in setup.log_of(worker)
