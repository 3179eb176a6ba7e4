"""The story ``conduit demo`` tells: people registered, renamed and retired.

Events go to an embedded SQLite store; a projection (a plain listener) keeps a
``people`` table up to date in a second SQLite file through SQLAlchemy; an
entity is rebuilt with :func:`conduit.replay` before every change, so that
each change is pushed with the ``expected_version`` it was decided on.

This module is the library half of the demo: :func:`run` tells the story and
returns what happened; :mod:`conduit.cli.demo` prints it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from conduit.errors import InvalidArgument
from conduit.events import Event, new_id
from conduit.replay import replay
from conduit.store import EventStore

__all__ = [
    "PEOPLE",
    "DemoRun",
    "People",
    "PeopleProjection",
    "Person",
    "PersonRow",
    "read_model_path",
    "run",
]

METADATA = sa.MetaData()

PEOPLE = sa.Table(
    "people",
    METADATA,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("first_name", sa.String, nullable=False),
    sa.Column("last_name", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)
"""The read model: one row per person, as of the last event it handled."""


class PeopleProjection:
    """Keeps the ``people`` table up to date; subscribe it with ``store.subscribe``.

    Each handler writes in its own transaction and only applies an event newer
    than the row's ``version``, so handling an event twice changes nothing.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        METADATA.create_all(engine)

    def on_person_registered(self, event: Event) -> None:
        """Insert the person's row (unless this event was already handled)."""
        with self.engine.begin() as conn:
            known = conn.execute(
                sa.select(PEOPLE.c.id).where(PEOPLE.c.id == str(event.stream_id))
            ).first()
            if known is None:
                conn.execute(
                    PEOPLE.insert().values(
                        id=str(event.stream_id),
                        first_name=event.data["first_name"],
                        last_name=event.data["last_name"],
                        status="active",
                        updated_at=event.recorded_at,
                        version=event.version,
                    )
                )

    def on_person_renamed(self, event: Event) -> None:
        """Update the person's name."""
        self._update(event, first_name=event.data["first_name"], last_name=event.data["last_name"])

    def on_person_retired(self, event: Event) -> None:
        """Mark the person retired."""
        self._update(event, status="retired")

    def _update(self, event: Event, **values: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                PEOPLE.update()
                .where(PEOPLE.c.id == str(event.stream_id), PEOPLE.c.version < event.version)
                .values(updated_at=event.recorded_at, version=event.version, **values)
            )


@dataclass
class Person:
    """A person as rebuilt from its events by :func:`conduit.replay`."""

    id: uuid.UUID
    first_name: str = ""
    last_name: str = ""
    status: str = "unregistered"
    version: int = 0

    def apply_person_registered(self, event: Event) -> None:
        """A person starts active, with a name."""
        self.first_name = event.data["first_name"]
        self.last_name = event.data["last_name"]
        self.status = "active"
        self.version = event.version

    def apply_person_renamed(self, event: Event) -> None:
        """A new name."""
        self.first_name = event.data["first_name"]
        self.last_name = event.data["last_name"]
        self.version = event.version

    def apply_person_retired(self, event: Event) -> None:
        """No more changes after this."""
        self.status = "retired"
        self.version = event.version

    @property
    def name(self) -> str:
        """First and last name."""
        return f"{self.first_name} {self.last_name}"


class People:
    """The application's commands: each decides on a rebuilt person, then pushes."""

    def __init__(self, store: EventStore, *, user: str = "demo") -> None:
        self.store = store
        self.metadata = {"user": user}

    def load(self, person_id: uuid.UUID) -> Person:
        """Rebuild a person from its stream."""
        return replay(self.store.read(person_id), onto=Person(person_id))

    def register(self, person_id: uuid.UUID, first_name: str, last_name: str) -> Event:
        """Record a new person; the stream must not exist yet."""
        data = {"first_name": first_name, "last_name": last_name}
        return self.store.push(
            "person_registered", person_id, data, metadata=self.metadata, expected_version=0
        )

    def rename(self, person_id: uuid.UUID, first_name: str, last_name: str) -> Event:
        """Record a new name for an active person."""
        person = self._active(person_id)
        data = {"first_name": first_name, "last_name": last_name}
        return self.store.push(
            "person_renamed",
            person_id,
            data,
            metadata=self.metadata,
            expected_version=person.version,
        )

    def retire(self, person_id: uuid.UUID, reason: str) -> Event:
        """Record that an active person retired, and why."""
        person = self._active(person_id)
        return self.store.push(
            "person_retired",
            person_id,
            {"reason": reason},
            metadata=self.metadata,
            expected_version=person.version,
        )

    def _active(self, person_id: uuid.UUID) -> Person:
        person = self.load(person_id)
        if person.status != "active":
            raise InvalidArgument(f"person {person_id} is {person.status}", field="person_id")
        return person


@dataclass(frozen=True, slots=True)
class PersonRow:
    """A row of the ``people`` table."""

    id: str
    first_name: str
    last_name: str
    status: str
    updated_at: datetime
    version: int


@dataclass(frozen=True, slots=True)
class DemoRun:
    """What the demo did: its files, one person's stream and the projected table."""

    event_file: Path
    read_model_file: Path
    story: list[str]
    featured: Person
    stream: list[Event]
    people: list[PersonRow]
    event_count: int


def read_model_path(event_file: Path) -> Path:
    """Where the demo puts the read model: next to the event file."""
    return event_file.with_name(f"{event_file.stem}-read-model.db")


def run(event_file: Path) -> DemoRun:
    """Tell the story on a new SQLite store at ``event_file``; return what happened.

    Raises:
        InvalidArgument: the event file or the read-model file already exists, or
            their directory cannot be created.
        BackendError: the event file cannot be written.
    """
    event_file = event_file.resolve()
    read_model_file = read_model_path(event_file)
    for existing in (event_file, read_model_file):
        if existing.exists():
            raise InvalidArgument(
                f"{existing} already exists; the demo writes new files "
                "(choose another --path, or delete it)",
                field="path",
            )
    try:
        event_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgument(f"cannot create {event_file.parent}: {exc}", field="path") from exc
    engine = sa.create_engine(sa.URL.create("sqlite", database=str(read_model_file)))
    try:
        with EventStore(f"sqlite:///{event_file}") as store:
            store.subscribe(PeopleProjection(engine))
            story, featured = _tell(People(store))
            stream = store.get(featured)
            event_count = sum(1 for _ in store.read_all())
        people = _people(engine)
    finally:
        engine.dispose()
    return DemoRun(
        event_file=event_file,
        read_model_file=read_model_file,
        story=story,
        featured=replay(stream, onto=Person(featured)),
        stream=stream,
        people=people,
        event_count=event_count,
    )


def _tell(people: People) -> tuple[list[str], uuid.UUID]:
    story: list[str] = []

    def told(event: Event, what: str) -> None:
        story.append(f"{event.name}, version {event.version}: {what}")

    # Ids are chosen by the caller.
    ada, grace, alan = new_id(), new_id(), new_id()
    told(people.register(ada, "Ada", "Byron"), "Ada Byron is registered")
    told(people.register(grace, "Grace", "Murray"), "Grace Murray is registered")
    told(people.register(alan, "Alan", "Turing"), "Alan Turing is registered")
    told(people.rename(ada, "Ada", "Lovelace"), "Ada Byron is now Ada Lovelace")
    told(people.rename(grace, "Grace", "Hopper"), "Grace Murray is now Grace Hopper")
    told(people.retire(ada, "moved on to the Analytical Engine"), "Ada Lovelace retires")
    return story, ada


def _people(engine: sa.Engine) -> list[PersonRow]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(PEOPLE).order_by(PEOPLE.c.last_name, PEOPLE.c.first_name)
        ).all()
    return [
        PersonRow(
            id=row.id,
            first_name=row.first_name,
            last_name=row.last_name,
            status=row.status,
            # SQLite keeps no time zone; the projection only writes UTC times.
            updated_at=row.updated_at.replace(tzinfo=UTC),
            version=row.version,
        )
        for row in rows
    ]
