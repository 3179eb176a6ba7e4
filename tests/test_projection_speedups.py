"""SQLProjection.apply, one transaction per batch: what goes over the wire, and what it keeps.

The batch's session joins a connection whose transaction ``apply`` owns; the
checkpoint moves with a statement rendered once per dialect; on PostgreSQL a
projection may opt out of waiting for the WAL flush. These tests pin down
that none of it loosens the guarantees: ORM work is flushed with the batch,
a handler cannot commit its batch early, the compare-and-set still refuses a
stale driver, and ``synchronous_commit = off`` stays inside the batch's
transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from conduit.events import Event
from conduit.projections import SQLProjection
from conduit.subscriptions.projector import CheckpointConflict, HandlerFailed
from driving import Driving
from worker_app import create_database, drop_database, sqlalchemy_url, with_database

ENGINES = ["sqlite", "postgres"]


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "speedup_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    stream: Mapped[str] = mapped_column(sa.String(64))


counts = sa.Table(
    "speedup_counts",
    Base.metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("seen", sa.Integer, nullable=False),
)


class Counts(SQLProjection):
    """One UPDATE per event (after a first INSERT); ORM notes when the event asks for one."""

    name = "speedup_counts"
    metadata = Base.metadata

    def __init__(self, engine: sa.Engine, **options: Any) -> None:
        super().__init__(engine, **options)
        self.commit_in_handler = False
        self.fail_on: int | None = None

    def on_noted(self, event: Event, session: Session) -> None:
        if event.position == self.fail_on:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("the database is away"))
        stream = str(event.stream_id)
        moved = session.execute(
            counts.update().where(counts.c.stream == stream).values(seen=counts.c.seen + 1)
        )
        if not moved.rowcount:  # type: ignore[attr-defined]
            session.execute(counts.insert().values(stream=stream, seen=1))
        if "note" in event.data:
            session.add(Note(id=event.data["note"], stream=stream))
        if self.commit_in_handler:
            session.commit()


class Relaxed(Counts):
    synchronous_commit = False


def make_events(count: int, *, notes: list[int] | None = None, start: int = 1) -> list[Event]:
    now = datetime.now(UTC)
    return [
        Event(
            id=uuid.uuid4(),
            stream_id="s",
            name="noted",
            data={} if notes is None else {"note": notes[n]},
            metadata={},
            version=start + n,
            position=start + n,
            recorded_at=now,
        )
        for n in range(count)
    ]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """An empty read-model database on the engine the test is parametrized with."""
    if request.param == "sqlite":
        made = sa.create_engine(f"sqlite:///{tmp_path / 'readmodel.db'}")
        yield made
        made.dispose()
        return
    yield request.getfixturevalue("postgres_engine")


@pytest.fixture
def postgres_engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    admin: str = request.getfixturevalue("postgres_url")
    name = create_database(admin)
    made = sa.create_engine(sqlalchemy_url(with_database(admin, name)))
    yield made
    made.dispose()
    drop_database(admin, name)


def started(cls: Callable[[sa.Engine], Counts], engine: sa.Engine) -> Any:
    """A projection, set up, driven by hand from the checkpoint it loaded."""
    projection = Driving(cls(engine))
    projection.setup()
    projection.load_checkpoint()
    return projection


def state(engine: sa.Engine) -> tuple[int, int | None, list[int]]:
    """(events counted, checkpoint, note ids) as another connection reads them."""
    with engine.connect() as conn:
        seen = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(counts.c.seen), 0))).scalar()
        checkpoint = conn.execute(sa.text("SELECT position FROM conduit_checkpoints")).scalar()
        notes = list(conn.execute(sa.select(Note.id).order_by(Note.id)).scalars())
    return int(seen or 0), checkpoint, notes


@pytest.mark.parametrize("cls", [Counts, Relaxed], ids=["default", "relaxed"])
def test_a_batch_sends_the_handlers_statements_and_one_checkpoint_update(
    engine: sa.Engine, cls: Callable[[sa.Engine], Counts]
) -> None:
    projection = started(cls, engine)
    first = make_events(1)
    projection.apply(first, first[-1].position)  # the checkpoint row is inserted
    sent: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def remember(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split()).upper())

    batch = make_events(3, start=2)
    projection.apply(batch, 10)

    handlers = [s for s in sent if "SPEEDUP_COUNTS" in s]
    checkpoint = [s for s in sent if "CONDUIT_CHECKPOINTS" in s]
    assert [s.split()[:2] for s in handlers] == [["UPDATE", "SPEEDUP_COUNTS"]] * 3
    home = f"{engine.dialect.default_schema_name}.conduit_checkpoints".upper()
    assert [s.split()[:2] for s in checkpoint] == [["UPDATE", home]]  # as Conduit names it
    assert len(sent) == 4, sent  # no savepoint, no re-read of the checkpoint
    assert state(engine) == (4, 10, [])


def test_orm_objects_added_by_handlers_are_committed_with_the_checkpoint(
    engine: sa.Engine,
) -> None:
    projection = started(Counts, engine)
    events = make_events(3, notes=[7, 8, 9])

    projection.apply(events, events[-1].position)

    assert state(engine) == (3, 3, [7, 8, 9])


def test_a_failing_flush_is_pinned_on_its_event_and_what_came_before_is_applied(
    engine: sa.Engine,
) -> None:
    projection = started(Counts, engine)
    events = make_events(3, notes=[1, 2, 1])  # the third note's id is taken

    with pytest.raises(HandlerFailed) as failed:
        projection.apply(events, events[-1].position)

    assert failed.value.index == 2
    assert isinstance(failed.value.error, sqlalchemy.exc.IntegrityError)
    assert state(engine) == (2, 2, [1, 2])
    assert projection.load_checkpoint() == 2


def test_a_handler_committing_its_session_does_not_commit_the_batch(engine: sa.Engine) -> None:
    projection = started(Counts, engine)
    projection.commit_in_handler = True
    events = make_events(4)
    projection.fail_on = 4  # the database goes away on the last event of the batch

    with pytest.raises(sqlalchemy.exc.OperationalError):
        projection.apply(events, events[-1].position)

    assert state(engine) == (0, None, [])
    projection.fail_on = None
    projection.apply(events, events[-1].position)
    assert state(engine) == (4, 4, [])


@pytest.mark.parametrize("cls", [Counts, Relaxed], ids=["default", "relaxed"])
def test_a_stale_driver_is_refused(engine: sa.Engine, cls: Callable[[sa.Engine], Counts]) -> None:
    first, second = started(cls, engine), started(cls, engine)
    opening = make_events(1)
    first.apply(opening, 1)
    second.load_checkpoint()
    batch = make_events(2, start=2)
    first.apply(batch, 3)

    with pytest.raises(CheckpointConflict):
        second.apply(batch, 3)

    assert state(engine) == (3, 3, [])


@pytest.mark.parametrize(("cls", "setting"), [(Counts, "on"), (Relaxed, "off")])
def test_synchronous_commit_off_holds_for_each_batch_and_no_longer(
    postgres_engine: sa.Engine, cls: Callable[[sa.Engine], Counts], setting: str
) -> None:
    projection = started(cls, postgres_engine)
    at_commit: list[str] = []

    @sa.event.listens_for(postgres_engine, "commit")
    def look(conn: sa.Connection) -> None:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("SHOW synchronous_commit")
        row = cursor.fetchone()
        cursor.close()
        assert row is not None
        at_commit.append(row[0])

    projection.apply(make_events(1), 1)  # inserts the checkpoint
    projection.apply(make_events(2, start=2), 3)  # moves it

    assert at_commit == [setting, setting]
    with postgres_engine.connect() as conn:  # the pool's connection, after the batches
        assert conn.execute(sa.text("SHOW synchronous_commit")).scalar() == "on"
    assert state(postgres_engine) == (3, 3, [])
