"""SQL read models: rows and checkpoint in one transaction, failures, outages, rebuild, replay.

Each test runs with the event store and the read model on the same kind of
engine: a SQLite file beside a SQLite store, or a PostgreSQL database of its
own (created and dropped here) beside a PostgreSQL store.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.orm import Session

from conduit import Event, EventStore, InvalidArgument
from conduit.projections import SQLProjection, rebuild, replay_since
from conduit.projections.rebuild import fresh_schema_name
from conduit.subscriptions.projector import CheckpointConflict
from driving import Driving
from worker_app import (
    EVENT,
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

ENGINES = ["sqlite", "postgres"]

WAIT = 30.0
"""Seconds a test waits for a driver before failing: a bound, never an expectation."""


# -- read-model databases ----------------------------------------------------------


@pytest.fixture(autouse=True)
def new_readmodel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes empty read-model databases on the test's engine; returns SQLAlchemy URLs.

    Used by every test, so that it is set up before the test's stores and torn
    down after them: no driver is left running on a dropped database.
    """
    callspec = getattr(request.node, "callspec", None)
    engine = callspec.params.get("make_store") if callspec else None
    made: list[str] = []
    admin = request.getfixturevalue("postgres_url") if engine == "postgres" else ""

    def make() -> str:
        assert engine is not None, "new_readmodel needs a test parametrized by engine"
        if engine == "sqlite":
            made.append(f"readmodel-{len(made)}.db")
            return f"sqlite:///{tmp_path / made[-1]}"
        made.append(create_database(admin))
        return sqlalchemy_url(with_database(admin, made[-1]))

    yield make
    if engine == "postgres":
        for name in made:
            drop_database(admin, name)


@pytest.fixture(autouse=True)
def projections(new_readmodel: Callable[[], str]) -> Iterator[list[SQLProjection]]:
    """Projections whose engines are disposed of at the end of the test, once its
    stores are closed and before its read-model databases are dropped."""
    made: list[SQLProjection] = []
    yield made
    for projection in made:
        projection.engine.dispose()


@pytest.fixture
def make_ledger(
    new_readmodel: Callable[[], str], projections: list[SQLProjection]
) -> Callable[..., Ledger]:
    """A :class:`Ledger` with its tables, in the read model given, or in a new one."""

    def make(url: str | None = None, *, name: str = "ledger", **engine_options: Any) -> Ledger:
        projection = Ledger(sa.create_engine(url or new_readmodel(), **engine_options), name=name)
        projection.setup()
        projections.append(projection)
        return projection

    return make


# -- helpers ------------------------------------------------------------------------


def record(store: EventStore, stream: str, value: int, **extra: Any) -> Event:
    return store.push(EVENT, stream, {"value": value, **extra})


def record_many(store: EventStore, count: int, streams: int = 7) -> list[Event]:
    return [record(store, f"account-{n % streams}", n) for n in range(count)]


def expected(events: list[Event]) -> Totals:
    """The ledger that applying each event once gives."""
    found: dict[str, tuple[int, int]] = {}
    for event in events:
        count, total = found.get(str(event.stream_id), (0, 0))
        found[str(event.stream_id)] = (count + 1, total + event.data["value"])
    return found


def times_applied(projection: Any) -> dict[str, int]:
    with projection.engine.connect() as conn:
        return {key: times for key, times in conn.execute(sa.select(hits.c.event_id, hits.c.times))}


def eventually(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Wait, bounded, until ``check()`` holds (for what ``wait_for`` cannot express)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)


# -- applying and checkpoints ----------------------------------------------------------


def test_rows_and_checkpoint_land_in_the_read_model_before_push_returns(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    projection = make_ledger()
    subscription = store.subscribe(projection)

    record(store, "account-a", 5)
    record(store, "account-b", 7)
    last = record(store, "account-a", 1)

    assert ledger(projection.engine) == {"account-a": (2, 6), "account-b": (1, 7)}
    assert read_checkpoint(projection.engine) == last.position
    assert subscription.name == "ledger"
    assert subscription.checkpoint == last.position


def test_each_batch_of_events_is_applied_in_one_transaction(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    projection = make_ledger()
    sessions: list[Session] = []
    apply = projection.on_amount_recorded

    def remembering(event: Event, session: Session) -> None:
        sessions.append(session)
        apply(event, session)

    projection.on_amount_recorded = remembering  # type: ignore[method-assign]
    events = record_many(store, 25)

    store.subscribe(projection, batch_size=10)

    assert len(sessions) == 25
    assert len({id(session) for session in sessions}) == 3
    assert ledger(projection.engine) == expected(events)


def test_a_stale_driver_cannot_apply_a_batch_again(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    first = Driving(make_ledger())
    second = Driving(Ledger(first.engine))  # the same read model, as another process sees it
    events = record_many(store, 5)
    first.load_checkpoint()
    second.load_checkpoint()

    first.apply(events, events[-1].position)
    with pytest.raises(CheckpointConflict):
        second.apply(events, events[-1].position)

    assert set(times_applied(first).values()) == {1}
    assert ledger(first.engine) == expected(events)
    assert read_checkpoint(first.engine) == events[-1].position


def test_two_stores_driving_one_inline_projection_apply_each_event_once(
    make_store: Callable[[], EventStore], make_ledger: Callable[..., Ledger]
) -> None:
    """Inline drivers take no lease: each store drives the subscription on its own
    pushes, and the checkpoint's compare-and-set keeps them from applying a batch twice;
    the one that loses it reads the checkpoint again, so its caller still reads its
    own writes."""
    first = make_ledger()
    second = make_ledger(first.engine.url.render_as_string(hide_password=False))
    stores = [make_store(), make_store()]
    stores[0].subscribe(first)
    stores[1].subscribe(second)
    pushed: list[Event] = []
    not_read_back: list[Event] = []

    def push_from(store: EventStore, offset: int) -> None:
        for n in range(40):
            event = record(store, f"account-{n % 5}", offset + n)
            pushed.append(event)
            if read_checkpoint(first.engine) < event.position:
                not_read_back.append(event)

    threads = [
        threading.Thread(target=push_from, args=(store, 1000 * n)) for n, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    assert len(pushed) == 80
    assert not_read_back == [], "a push returned before its projection had its event"
    assert times_applied(first) == {str(event.id): 1 for event in pushed}
    assert ledger(first.engine) == expected(pushed)


def test_a_thread_that_only_looks_does_not_move_the_batch_baseline(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    """The race a rebuild exposed: a driver loads its checkpoint, the checkpoint
    moves (a rebuild's swap), and another thread looks at it (wait_for). The
    driver's batch must still be refused, not applied on top of the new state:
    the baseline is the driver's own, never what another look loaded."""
    projection = Driving(make_ledger())
    events = record_many(store, 6)
    projection.apply(events[:3], events[2].position)
    projection.load_checkpoint()  # the driver's baseline: events[2]
    other = Driving(Ledger(projection.engine))
    other.load_checkpoint()
    other.apply(events[3:4], events[3].position)  # the checkpoint moves elsewhere

    looker = threading.Thread(target=Ledger(projection.engine).load_checkpoint)  # a look
    looker.start()
    looker.join()

    with pytest.raises(CheckpointConflict):
        projection.apply(events[3:], events[-1].position)
    assert set(times_applied(projection).values()) == {1}


def test_checkpoint_survives_a_new_store_and_projection(
    make_store: Callable[[], EventStore], make_ledger: Callable[..., Ledger]
) -> None:
    store = make_store()
    projection = make_ledger()
    subscription = store.subscribe(projection)
    before = record_many(store, 4)
    store.unsubscribe(subscription)
    after = [record(store, "account-x", 100 + n) for n in range(3)]
    store.head_position()  # what this store pushed is visible to others (docs/design.md §3.3)

    again = Ledger(projection.engine)
    make_store().subscribe(again)

    assert ledger(projection.engine) == expected(before + after)
    assert set(times_applied(projection).values()) == {1}


# -- failing handlers ----------------------------------------------------------------


def push_with_bad(store: EventStore, count: int = 10, bad_at: int = 4) -> tuple[list[Event], Event]:
    """``count`` events, the one at ``bad_at`` refused by the ledger; the good ones and it."""
    events = [
        record(store, f"account-{n % 3}", n, **({"bad": True} if n == bad_at else {}))
        for n in range(count)
    ]
    return events[:bad_at] + events[bad_at + 1 :], events[bad_at]


def test_a_handler_failing_mid_batch_parks_its_event_and_applies_the_rest_once(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    projection = make_ledger()
    good, bad = push_with_bad(store)

    subscription = store.subscribe(projection, batch_size=10, max_attempts=2, backoff=0.001)

    assert times_applied(projection) == {str(event.id): 1 for event in good}
    assert ledger(projection.engine) == expected(good)
    assert subscription.checkpoint == good[-1].position
    [parked] = store.parked()
    assert (parked.subscription, parked.event_id, parked.attempts) == ("ledger", bad.id, 2)
    assert "refusing bad event" in parked.error
    assert "on_amount_recorded" in parked.traceback


def test_retrying_a_parked_event_twice_applies_it_once(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    projection = make_ledger()
    good, bad = push_with_bad(store)
    subscription = store.subscribe(projection, mode="background", batch_size=10, max_attempts=1)
    subscription.wait_for(good[-1], timeout=WAIT)
    [parked] = store.parked()

    projection.failing = False
    assert store.retry_parked(parked.id) == 1
    store.retry_parked(parked.id)  # 1 if still parked, 0 if applied already
    eventually(lambda: not list(store.parked()), "the retried event leaves the parked list")
    store.retry_parked(parked.id)
    later = record(store, "account-0", 1000)
    subscription.wait_for(later, timeout=WAIT)

    assert times_applied(projection)[str(bad.id)] == 1
    assert ledger(projection.engine) == expected([*good, bad, later])


def test_a_retry_applied_before_a_crash_is_not_applied_again(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    projection = make_ledger()
    good, bad = push_with_bad(store)
    store.subscribe(projection, max_attempts=1)
    [parked] = store.parked()
    projection.failing = False
    # A driver applied the retry, then died before taking it off the list.
    Driving(projection).apply_parked(bad)

    assert store.retry_parked(parked.id) == 1
    eventually(lambda: not list(store.parked()), "the retried event leaves the parked list")

    assert times_applied(projection)[str(bad.id)] == 1
    assert ledger(projection.engine) == expected([*good, bad])


class Misspelled(Ledger):
    """A handler with a bug for the bad event: a statement on a table or column that
    does not exist (on SQLite an ``OperationalError``, as a locked database is)."""

    statement = "INSERT INTO ledger_totalz (stream_id) VALUES (:s)"

    def on_amount_recorded(self, event: Event, session: Session) -> None:
        if event.data.get("bad"):
            session.execute(sa.text(self.statement), {"s": str(event.stream_id)})
        super().on_amount_recorded(event, session)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO ledger_totalz (stream_id) VALUES (:s)",
        "INSERT INTO ledger_totals (stream_id, nope) VALUES (:s, 1)",
    ],
    ids=["missing-table", "missing-column"],
)
def test_a_handler_using_a_missing_table_or_column_is_parked_after_its_retries(
    store: EventStore,
    new_readmodel: Callable[[], str],
    projections: list[SQLProjection],
    statement: str,
) -> None:
    projection = Misspelled(new_readmodel())
    projection.statement = statement
    projection.setup()
    projections.append(projection)
    good, bad = push_with_bad(store)

    subscription = store.subscribe(
        projection, mode="background", batch_size=10, max_attempts=2, backoff=0.001
    )
    subscription.wait_for(good[-1], timeout=WAIT)

    [parked] = store.parked()
    assert (parked.event_id, parked.attempts) == (bad.id, 2)
    assert "nope" in parked.error or "ledger_totalz" in parked.error
    assert times_applied(projection) == {str(event.id): 1 for event in good}


def wrapped(error: Exception) -> sqlalchemy.exc.DBAPIError:
    """A DBAPI error as SQLAlchemy raises it."""
    found = sqlalchemy.exc.DBAPIError.instance("SELECT 1", {}, error, psycopg.Error)
    assert isinstance(found, sqlalchemy.exc.DBAPIError)
    return found


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (psycopg.OperationalError("connection failed: Connection refused"), True),
        (psycopg.errors.ConnectionFailure(), True),
        (psycopg.errors.AdminShutdown(), True),
        (psycopg.errors.CannotConnectNow(), True),
        (psycopg.errors.DiskFull(), True),
        (psycopg.errors.TooManyConnections(), True),
        (psycopg.errors.DeadlockDetected(), True),
        (psycopg.errors.SerializationFailure(), True),
        (psycopg.errors.LockNotAvailable(), True),
        (psycopg.errors.UndefinedTable(), False),
        (psycopg.errors.UndefinedColumn(), False),
        (psycopg.errors.SyntaxError(), False),
        (psycopg.errors.UniqueViolation(), False),
        (psycopg.errors.InvalidTextRepresentation(), False),
        (psycopg.errors.DivisionByZero(), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_postgres_errors_are_told_apart_by_their_sqlstate(error: Exception, outage: bool) -> None:
    projection = Ledger("sqlite://")
    assert projection.is_transient(wrapped(error)) is outage
    projection.engine.dispose()


def test_sqlite_errors_are_told_apart_by_their_result_code(tmp_path: Path) -> None:
    path = tmp_path / "codes.db"
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.01})
    projection = Ledger(engine)
    projection.setup()

    def error_of(statement: str) -> sqlalchemy.exc.DBAPIError:
        with pytest.raises(sqlalchemy.exc.DBAPIError) as raised, engine.begin() as conn:
            conn.execute(sa.text(statement))
        return raised.value

    assert not projection.is_transient(error_of("INSERT INTO ledger_totalz VALUES (1)"))
    assert not projection.is_transient(error_of("INSERT INTO ledger_totals (nope) VALUES (1)"))
    assert not projection.is_transient(error_of("SELEKT 1"))
    assert not projection.is_transient(
        error_of("INSERT INTO ledger_totals (stream_id, events, total) VALUES (NULL, 1, 1)")
    )
    with sqlite_locked(str(path)):
        assert projection.is_transient(error_of("SELECT * FROM ledger_totals"))
    engine.dispose()
    missing = sa.create_engine(f"sqlite:///{tmp_path / 'no-such-directory' / 'x.db'}")
    with pytest.raises(sqlalchemy.exc.DBAPIError) as unreachable, missing.connect():
        pass
    assert projection.is_transient(unreachable.value)


# -- the read model away for a while ------------------------------------------------------


@pytest.fixture
def outage(
    request: pytest.FixtureRequest,
) -> Callable[[SQLProjection], AbstractContextManager[None]]:
    """Makes a read-model database refuse work until exit: SQLite locked, PostgreSQL
    closing its sessions and refusing new ones."""
    engine = request.node.callspec.params["make_store"]
    admin = request.getfixturevalue("postgres_url") if engine == "postgres" else ""

    def away(projection: SQLProjection) -> AbstractContextManager[None]:
        database = str(projection.engine.url.database)
        return (
            sqlite_locked(database) if engine == "sqlite" else refusing_connections(admin, database)
        )

    return away


def short_waits(store: EventStore) -> dict[str, Any]:
    """Engine options that make a locked SQLite read model fail fast instead of waiting."""
    return {"connect_args": {"timeout": 0.05}} if store.backend.scheme == "sqlite" else {}


def test_read_model_unavailable_for_a_while_catches_up_afterwards(
    store: EventStore,
    make_ledger: Callable[..., Ledger],
    outage: Callable[[SQLProjection], AbstractContextManager[None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    projection = make_ledger(**short_waits(store))
    subscription = store.subscribe(projection, mode="background", backoff=0.01)
    before = record_many(store, 5)
    subscription.wait_for(before[-1], timeout=WAIT)

    with caplog.at_level(logging.WARNING, "conduit.subscriptions"), outage(projection):
        during = [record(store, f"account-{n % 3}", 100 + n) for n in range(20)]
        # Away until the driver has failed and retried a few times.
        eventually(
            lambda: caplog.text.count("storage unavailable") >= 3,
            "the driver finds the read model away, and retries",
        )
    after = [record(store, "account-0", 200 + n) for n in range(5)]
    subscription.wait_for(after[-1], timeout=WAIT)

    everything = before + during + after
    assert ledger(projection.engine) == expected(everything)
    assert times_applied(projection) == {str(event.id): 1 for event in everything}
    assert list(store.parked()) == []
    assert subscription.error is None


def test_a_handler_meeting_a_locked_table_is_retried_and_nothing_parked(
    store: EventStore,
    make_ledger: Callable[..., Ledger],
    postgres_or_sqlite_admin: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The read model can be read but not written for a while: the handler's own
    statement fails (SQLite: database locked; PostgreSQL: lock_timeout)."""
    sqlite = store.backend.scheme == "sqlite"
    options = (
        {"connect_args": {"timeout": 0.05}}
        if sqlite
        else {"connect_args": {"options": "-c lock_timeout=50"}}
    )
    projection = make_ledger(**options)
    subscription = store.subscribe(projection, mode="background", backoff=0.01, max_attempts=2)
    first = record(store, "account-0", 1)
    subscription.wait_for(first, timeout=WAIT)

    with caplog.at_level(logging.WARNING, "conduit.subscriptions"):
        with write_locked(projection, postgres_or_sqlite_admin):
            during = record(store, "account-1", 2)
            eventually(
                lambda: caplog.text.count("storage unavailable") >= 3,
                "the driver's statement fails on the lock, and is retried",
            )
            assert subscription.checkpoint == first.position
        subscription.wait_for(during, timeout=WAIT)

    assert list(store.parked()) == []
    assert ledger(projection.engine) == expected([first, during])


@pytest.fixture
def postgres_or_sqlite_admin(request: pytest.FixtureRequest) -> str:
    """The PostgreSQL server's URL for a test on PostgreSQL, else an empty string."""
    engine = request.node.callspec.params["make_store"]
    return request.getfixturevalue("postgres_url") if engine == "postgres" else ""


@contextmanager
def write_locked(projection: SQLProjection, admin: str) -> Iterator[None]:
    """Another connection holding a lock that lets readers in but no writer."""
    database = str(projection.engine.url.database)
    if not admin:
        conn = sqlite3.connect(database, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    with psycopg.connect(with_database(admin, database)) as locker:
        locker.execute("LOCK TABLE ledger_totals IN EXCLUSIVE MODE")
        yield


def test_inline_projection_catches_up_on_the_next_push_after_an_outage(
    store: EventStore,
    make_ledger: Callable[..., Ledger],
    outage: Callable[[SQLProjection], AbstractContextManager[None]],
) -> None:
    projection = make_ledger(**short_waits(store))
    store.subscribe(projection, backoff=0.01)
    before = record(store, "account-0", 1)

    with outage(projection):
        during = record(store, "account-1", 2)  # recorded; the read model is away
    after = record(store, "account-2", 3)

    assert ledger(projection.engine) == expected([before, during, after])
    assert read_checkpoint(projection.engine) == after.position
    assert list(store.parked()) == []


def test_wait_for_keeps_waiting_through_an_outage(
    store: EventStore,
    make_ledger: Callable[..., Ledger],
    outage: Callable[[SQLProjection], AbstractContextManager[None]],
) -> None:
    projection = make_ledger(**short_waits(store))
    subscription = store.subscribe(projection, mode="background", backoff=0.01)
    away, back = threading.Event(), threading.Event()

    def for_a_while() -> None:
        with outage(projection):
            away.set()
            back.wait(1.0)

    holder = threading.Thread(target=for_a_while)
    holder.start()
    try:
        assert away.wait(WAIT)
        event = record(store, "account-0", 1)
        subscription.wait_for(event, timeout=WAIT)
    finally:
        back.set()
        holder.join(WAIT)

    assert ledger(projection.engine) == expected([event])


def test_postgres_read_model_with_locked_tables_catches_up_afterwards(
    postgres_url: str, projections: list[SQLProjection]
) -> None:
    database = create_database(postgres_url)
    try:
        with EventStore(postgres_url, schema=f"locked_{uuid.uuid4().hex[:8]}") as store:
            store.setup()
            projection = Ledger(sqlalchemy_url(with_database(postgres_url, database)))
            projections.append(projection)
            projection.setup()
            subscription = store.subscribe(projection, mode="background")
            with psycopg.connect(with_database(postgres_url, database)) as locker:
                # EXCLUSIVE, not ACCESS EXCLUSIVE: that one takes a transaction
                # id, which would hold back the store's log itself (DESIGN.md §3).
                locker.execute("LOCK TABLE ledger_totals IN EXCLUSIVE MODE")
                during = record_many(store, 20)
                store.head_position()
                # The driver's batch waits for the lock: nothing of it is applied.
                eventually(
                    lambda: waiting_for_a_lock(postgres_url, database),
                    "the driver waits for the locked table",
                )
                assert subscription.checkpoint < during[0].position
            subscription.wait_for(during[-1], timeout=WAIT)

            assert ledger(projection.engine) == expected(during)
            assert set(times_applied(projection).values()) == {1}
    finally:
        drop_database(postgres_url, database)


def waiting_for_a_lock(postgres_url: str, database: str) -> bool:
    """Whether a session of ``database`` waits for a lock another one holds."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (database,),
        ).fetchone()
    return bool(row and row[0])


# -- rebuild and replay ----------------------------------------------------------------


def test_rebuild_gives_the_same_rows_as_building_from_scratch(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    live = make_ledger()
    store.subscribe(live, batch_size=50)
    events = record_many(store, 120)
    with live.engine.begin() as conn:  # damage the live read model
        conn.execute(sa.text("UPDATE ledger_totals SET total = -1"))
        conn.execute(sa.text("DELETE FROM ledger_hits"))

    read = rebuild(store, live)

    scratch = make_ledger(name="scratch")
    store.subscribe(scratch)
    assert read == len(events)
    assert ledger(live.engine) == ledger(scratch.engine) == expected(events)
    assert times_applied(live) == times_applied(scratch)
    assert read_checkpoint(live.engine) == events[-1].position
    assert [status.name for status in store.subscription_status()] == ["ledger", "scratch"]


def test_rebuild_while_events_are_pushed_loses_and_doubles_nothing(
    make_store: Callable[[], EventStore], make_ledger: Callable[..., Ledger]
) -> None:
    store = make_store()
    live = make_ledger()
    subscription = store.subscribe(live, mode="background", batch_size=20)
    pushed = record_many(store, 200)
    subscription.wait_for(pushed[-1], timeout=WAIT)
    writer = make_store()
    rebuilt = threading.Event()
    outlasted: list[bool] = []

    def keep_pushing() -> None:
        # Until the rebuild is over (bounded, in case it never is), at a steady
        # pace that leaves the read model's lock free at times: SQLite's lock
        # is not fair, and a writer in a tight loop could starve the rebuild.
        n = 0
        while n < MAX_PUSHED and not (rebuilt.is_set() and n >= 50):
            pushed.append(record(writer, f"account-{n % 5}", 1000 + n))
            n += 1
            time.sleep(0.005)
        outlasted.append(n < MAX_PUSHED)
        writer.head_position()

    pusher = threading.Thread(target=keep_pushing)
    pusher.start()
    try:
        rebuild(store, live, batch_size=20)
    finally:
        rebuilt.set()
        pusher.join(WAIT)
    subscription.wait_for(pushed[-1], timeout=WAIT)

    # The rebuild ended while events were still arriving: it does not chase the head.
    assert outlasted == [True], f"the rebuild did not end before {MAX_PUSHED} events were pushed"

    scratch = make_ledger(name="scratch")
    store.subscribe(scratch)
    assert ledger(live.engine) == expected(pushed)
    assert ledger(scratch.engine) == expected(pushed)
    assert times_applied(live) == {str(event.id): 1 for event in pushed}


MAX_PUSHED = 3000
"""The most events pushed while a rebuild runs."""

metadata_v2 = sa.MetaData()
totals_v2 = sa.Table(
    "ledger_totals",
    metadata_v2,
    sa.Column("stream_id", sa.String(100), primary_key=True),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("last_value", sa.Integer),
)
for _table in Ledger.metadata.sorted_tables:
    if _table.name != "ledger_totals":
        _table.to_metadata(metadata_v2)


class LedgerV2(Ledger):
    """The ledger with one more column: each stream's last value."""

    metadata = metadata_v2

    def on_amount_recorded(self, event: Event, session: Session) -> None:
        super().on_amount_recorded(event, session)
        session.execute(
            totals_v2.update()
            .where(totals_v2.c.stream_id == str(event.stream_id))
            .values(last_value=event.data["value"])
        )


def test_rebuild_with_a_changed_table_shape_takes_effect(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    old = make_ledger()
    subscription = store.subscribe(old)
    events = [record(store, "account-a", 1), record(store, "account-b", 2)]
    events.append(record(store, "account-a", 3))
    store.unsubscribe(subscription)

    new = LedgerV2(old.engine)
    rebuild(store, new)
    store.subscribe(new)
    events.append(record(store, "account-b", 4))

    with new.engine.connect() as conn:
        rows = conn.execute(
            sa.select(totals_v2.c.stream_id, totals_v2.c.last_value).order_by("stream_id")
        ).all()
    assert [tuple(row) for row in rows] == [("account-a", 3), ("account-b", 4)]
    assert ledger(new.engine) == expected(events)


def test_a_rebuild_outlasts_a_deadlock_with_the_live_driver(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    # The live driver's transaction writes ledger_totals, then ledger_hits;
    # the swap locks the live tables in its own order to drop them. On
    # PostgreSQL the two deadlock and one is aborted: when it is the swap, it
    # runs again once the driver has committed. On SQLite the swap waits.
    live = make_ledger()
    pushed = record_many(store, 20)
    store.subscribe(live)
    driver = live.engine.connect()
    driver_tx = driver.begin()
    driver.execute(sa.text("INSERT INTO ledger_totals VALUES ('other', 1, 1)"))
    failed: list[BaseException] = []

    def run_rebuild() -> None:
        try:
            rebuild(store, live, batch_size=5)
        except BaseException as exc:
            failed.append(exc)

    rebuilding = threading.Thread(target=run_rebuild)
    rebuilding.start()
    try:
        if live.engine.dialect.name == "postgresql":
            eventually(lambda: lock_waiters(live.engine) > 0, "the swap waits for a lock", WAIT)
        try:
            driver.execute(sa.text("INSERT INTO ledger_hits VALUES ('other', 1, 1)"))
            driver_tx.commit()
        except sqlalchemy.exc.OperationalError:
            driver_tx.rollback()  # the driver lost the deadlock: it would retry
    finally:
        driver.close()
        rebuilding.join(WAIT)
    assert not rebuilding.is_alive()
    assert failed == []
    assert ledger(live.engine) == expected(pushed)
    assert times_applied(live) == {str(event.id): 1 for event in pushed}


def lock_waiters(engine: sa.Engine) -> int:
    """How many sessions of the read model's database wait for a lock."""
    with engine.connect() as conn:
        waiting = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return int(waiting)


def test_rebuild_leaves_no_fresh_tables_behind(
    store: EventStore, make_ledger: Callable[..., Ledger], tmp_path: Path
) -> None:
    live = make_ledger()
    record_many(store, 10)

    rebuild(store, live)

    with live.engine.connect() as conn:
        names = sa.inspect(conn).get_schema_names()
    assert not [name for name in names if name.startswith("conduit_rebuild")]
    assert not list(tmp_path.glob("*.rebuild"))


AWKWARD_NAMES = [
    "ledger-v2",
    "my ledger",
    "o'brien's \"ledger\"",
    "Ledger.Of.Accounts",
    "ledger " + "x" * 180,
]


@pytest.mark.parametrize("name", AWKWARD_NAMES, ids=["dash", "space", "quotes", "dots", "long"])
def test_rebuild_works_whatever_the_projection_name(
    store: EventStore, make_ledger: Callable[..., Ledger], name: str, tmp_path: Path
) -> None:
    live = make_ledger(name=name)
    subscription = store.subscribe(live, batch_size=10)
    events = record_many(store, 25)
    with live.engine.begin() as conn:  # damage the live read model
        conn.execute(sa.text("DELETE FROM ledger_hits"))

    assert rebuild(store, live) == len(events)

    assert subscription.name == name
    assert ledger(live.engine) == expected(events)
    assert times_applied(live) == {str(event.id): 1 for event in events}
    assert read_checkpoint(live.engine, name) == events[-1].position
    with live.engine.connect() as conn:
        schemas = sa.inspect(conn).get_schema_names()
    assert not [schema for schema in schemas if schema.startswith("conduit_rebuild")]
    assert not list(tmp_path.glob("*.rebuild"))


def test_rebuild_of_a_sqlite_read_model_whose_path_has_quotes_and_spaces(
    projections: list[SQLProjection], tmp_path: Path
) -> None:
    folder = tmp_path / "read models 'of' \"this\" app"
    folder.mkdir()
    live = Ledger(sa.create_engine(sa.URL.create("sqlite", database=str(folder / "it's.db"))))
    live.setup()
    projections.append(live)
    with EventStore(f"sqlite:///{folder / 'events.db'}") as store:
        store.subscribe(live)
        events = record_many(store, 12)

        assert rebuild(store, live) == len(events)

    assert ledger(live.engine) == expected(events)
    assert not list(folder.glob("*.rebuild"))


def test_fresh_schema_names_are_safe_short_and_never_shared() -> None:
    names = [
        *AWKWARD_NAMES,
        "a.b",
        "a_b",
        "a b",
        "A.B",
        "x" * 70 + "1",
        "x" * 70 + "2",
        "x" * 200,
        "",
        "ünïcödé",
        "---",
    ]
    fresh = [fresh_schema_name(name) for name in names]

    assert len(set(fresh)) == len(names)
    for schema in fresh:
        assert re.fullmatch(r"conduit_rebuild_[a-z0-9_]+", schema), schema
        assert len(schema) <= 63


def test_a_projection_name_a_rebuild_cannot_keep_is_refused(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    live = make_ledger(name="x" * 195)  # fits conduit_checkpoints; with ".rebuild", not

    with pytest.raises(InvalidArgument, match="at most 192"):
        rebuild(store, live)


@pytest.mark.parametrize("bad", ["x" * 201, "nul\x00inside"])
def test_a_projection_name_its_checkpoint_cannot_hold_is_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="name"):
        Ledger("sqlite://", name=bad)


def test_replay_since_applies_the_events_recorded_since_again(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    projection = make_ledger()
    subscription = store.subscribe(projection)
    record_many(store, 4)
    since = record_many(store, 4)[0].recorded_at
    everything = list(store.read_all())
    first_since = min(e.position for e in everything if e.recorded_at >= since)

    checkpoint = replay_since(store, projection, since)

    assert checkpoint < first_since
    assert all(e.position <= checkpoint for e in everything if e.position < first_since)
    assert subscription.checkpoint == checkpoint
    subscription.catch_up()
    assert times_applied(projection) == {
        str(e.id): 2 if e.position >= first_since else 1 for e in everything
    }
    assert read_checkpoint(projection.engine) == everything[-1].position


def test_replay_since_a_time_after_the_last_event_changes_nothing(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    projection = make_ledger()
    store.subscribe(projection)
    events = record_many(store, 3)

    checkpoint = replay_since(store, projection, datetime.now(UTC) + timedelta(hours=1))

    assert checkpoint == events[-1].position
    assert read_checkpoint(projection.engine) == events[-1].position


def test_replay_since_a_naive_time_is_refused(
    store: EventStore, make_ledger: Callable[..., Ledger]
) -> None:
    projection = make_ledger()

    with pytest.raises(InvalidArgument, match="since"):
        replay_since(store, projection, datetime.now())


# -- lag -------------------------------------------------------------------------------


def test_status_seen_from_another_store_reaches_the_read_models_checkpoint(
    make_store: Callable[[], EventStore], make_ledger: Callable[..., Ledger]
) -> None:
    store = make_store()
    projection = make_ledger()
    subscription = store.subscribe(projection, mode="background")
    first = record(store, "account-a", 1)
    subscription.wait_for(first, timeout=WAIT)
    last = record(store, "account-a", 2)
    subscription.wait_for(last, timeout=WAIT)
    store.head_position()
    elsewhere = make_store()

    def caught_up() -> bool:
        # the copy is made at most once a second, after the read model's own checkpoint
        # moved: until the first copy the other store knows no subscription at all
        found = elsewhere.subscription_status()
        return [(status.checkpoint, status.behind) for status in found] == [(last.position, 0)]

    eventually(caught_up, "the store's copy of the read model's checkpoint catches up", 10.0)
    assert subscription.status().checkpoint == last.position


def test_a_sql_projection_needs_a_name() -> None:
    class Nameless(SQLProjection):
        metadata = sa.MetaData()

    with pytest.raises(TypeError, match="name"):
        Nameless("sqlite://")
