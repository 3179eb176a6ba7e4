"""SQL read models: handlers that receive a session, checkpoint in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.orm import Session

from conduit.events import Event
from conduit.subscriptions.dispatch import handlers_for
from conduit.subscriptions.projector import CheckpointBaseline, CheckpointConflict, HandlerFailed

__all__ = ["CHECKPOINTS", "HOME_MAP", "PARKED_APPLIED", "SQLProjection"]

# Conduit's own tables live in the read model's default schema, also while a
# rebuild translates the read model's tables to another: they carry this
# placeholder schema, which every engine of a projection maps to None.
HOME = "conduit_home"
HOME_MAP: dict[str | None, str | None] = {HOME: None}

_conduit_tables = sa.MetaData(schema=HOME)

CHECKPOINTS = sa.Table(
    "conduit_checkpoints",
    _conduit_tables,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)
"""Each SQL projection's checkpoint, in its read-model database."""

PARKED_APPLIED = sa.Table(
    "conduit_parked_applied",
    _conduit_tables,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("event_id", sa.String(36), primary_key=True),
)
"""Parked events a retry has applied, so that a retry is applied once."""


class SQLProjection(CheckpointBaseline):
    """A read model in a SQL database.

    Subclass it, name it, give it the SQLAlchemy ``MetaData`` of its tables, and
    write handlers ``on_<event name>(self, event, session)`` (or
    ``on_event``)::

        metadata = sa.MetaData()
        people = sa.Table("people", metadata, sa.Column("id", sa.String, primary_key=True),
                          sa.Column("first_name", sa.String))

        class People(SQLProjection):
            name = "people"
            metadata = metadata

            def on_person_registered(self, event, session):
                session.execute(people.insert().values(id=str(event.stream_id), **event.data))

        store.subscribe(People("sqlite:///read-model.db"), mode="background")

    Each batch of events (``batch_size``) is applied in one transaction with
    the checkpoint, so effects happen exactly once. Errors in
    ``transient_errors`` (the database is away or locked) are retried until
    it is back; any other error from a handler is retried, then parked.
    """

    name: str
    """The projection's name: its subscription, checkpoint and lease."""
    metadata: ClassVar[sa.MetaData]
    batch_size: ClassVar[int] = 100
    transient_errors: tuple[type[BaseException], ...] = (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.TimeoutError,
    )

    def __init__(
        self,
        engine: sa.Engine | str,
        *,
        name: str | None = None,
        schema_translate_map: dict[str | None, str | None] | None = None,
    ) -> None:
        base = sa.create_engine(engine) if isinstance(engine, str) else engine
        self.engine = base.execution_options(
            schema_translate_map={**(schema_translate_map or {}), **HOME_MAP}
        )
        if name is not None:
            self.name = name
        if not getattr(self, "name", None):
            raise TypeError(f"{type(self).__name__} needs a name (a class attribute)")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.engine.url!r}>"

    # -- set-up --------------------------------------------------------------

    def setup(self) -> None:
        """Create the read model's tables and Conduit's checkpoint tables, if missing."""
        with self.engine.begin() as conn:
            self.metadata.create_all(conn)
            _conduit_tables.create_all(conn)

    def reset(self) -> None:
        """Drop and re-create the read model's tables and forget the checkpoint."""
        with self.engine.begin() as conn:
            self.metadata.drop_all(conn)
            self.metadata.create_all(conn)
            _conduit_tables.create_all(conn)
            conn.execute(CHECKPOINTS.delete().where(CHECKPOINTS.c.name == self.name))
            conn.execute(PARKED_APPLIED.delete().where(PARKED_APPLIED.c.name == self.name))
        self._known = None

    # -- the Projector role ----------------------------------------------------

    def load_checkpoint(self) -> int:
        """The position this read model is up to date with (0 when empty)."""
        with self.engine.connect() as conn:
            self._known = self._checkpoint(conn)
        return self._known or 0

    def _checkpoint(self, conn: sa.Connection) -> int | None:
        return conn.execute(
            sa.select(CHECKPOINTS.c.position).where(CHECKPOINTS.c.name == self.name)
        ).scalar_one_or_none()

    def apply(self, events: Sequence[Event], up_to: int) -> None:
        """Apply a batch and move the checkpoint, in one transaction."""
        try:
            with Session(self.engine) as session, session.begin():
                for index, event in enumerate(events):
                    try:
                        self._handle(event, session)
                    except self.transient_errors:
                        raise
                    except Exception as exc:
                        raise HandlerFailed(index, exc) from exc
                self._move_checkpoint(session, up_to)
        except HandlerFailed as failure:
            # The transaction was rolled back: apply what came before the culprit.
            if failure.index:
                self.apply(events[: failure.index], events[failure.index - 1].position)
            raise
        except CheckpointConflict:
            raise
        except self.transient_errors:
            raise
        except sqlalchemy.exc.SQLAlchemyError as exc:
            # Failed at commit (a deferred constraint, say): find the culprit alone.
            if len(events) <= 1:
                raise HandlerFailed(0, exc) from exc
            for index, event in enumerate(events):
                try:
                    self.apply([event], event.position)
                except HandlerFailed as failure:
                    raise HandlerFailed(index, failure.error) from exc
            self.apply([], up_to)
            return
        self._known = up_to

    def _handle(self, event: Event, session: Session) -> None:
        for handler in handlers_for(self, event.name):
            handler(event, session)

    def _move_checkpoint(self, session: Session, position: int) -> None:
        conflict = CheckpointConflict(
            f"projection {self.name!r}: another driver moved the checkpoint"
        )
        if self._known is None:
            try:
                with session.begin_nested():
                    session.execute(CHECKPOINTS.insert().values(name=self.name, position=position))
            except sqlalchemy.exc.IntegrityError:
                raise conflict from None
        elif position != self._known:
            moved = session.execute(
                CHECKPOINTS.update()
                .where(CHECKPOINTS.c.name == self.name)
                .where(CHECKPOINTS.c.position == self._known)
                .values(position=position)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise conflict

    def apply_parked(self, event: Event) -> None:
        """Apply a parked event once: a marker row in the same transaction says it was."""
        with Session(self.engine) as session, session.begin():
            done = session.execute(
                sa.select(PARKED_APPLIED.c.event_id).where(
                    PARKED_APPLIED.c.name == self.name,
                    PARKED_APPLIED.c.event_id == str(event.id),
                )
            ).first()
            if done is not None:
                return
            self._handle(event, session)
            session.execute(PARKED_APPLIED.insert().values(name=self.name, event_id=str(event.id)))
