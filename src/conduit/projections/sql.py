"""SQL read models: handlers that receive a session, checkpoint in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.orm import Session

from conduit.errors import InvalidArgument
from conduit.events import Event
from conduit.projections.outages import is_outage
from conduit.subscriptions.dispatch import handlers_for
from conduit.subscriptions.projector import CheckpointBaseline, CheckpointConflict, HandlerFailed

__all__ = ["CHECKPOINTS", "HOME_MAP", "MAX_NAME_LENGTH", "PARKED_APPLIED", "SQLProjection"]

MAX_NAME_LENGTH = 200
"""The longest projection name its read model's ``conduit_checkpoints`` can hold."""

# Conduit's own tables live in the read model's default schema, also while a
# rebuild translates the read model's tables to another: they carry this
# placeholder schema, which every engine of a projection maps to None.
HOME = "conduit_home"
HOME_MAP: dict[str | None, str | None] = {HOME: None}

_conduit_tables = sa.MetaData(schema=HOME)

CHECKPOINTS = sa.Table(
    "conduit_checkpoints",
    _conduit_tables,
    sa.Column("name", sa.String(MAX_NAME_LENGTH), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)
"""Each SQL projection's checkpoint, in its read-model database."""

PARKED_APPLIED = sa.Table(
    "conduit_parked_applied",
    _conduit_tables,
    sa.Column("name", sa.String(MAX_NAME_LENGTH), primary_key=True),
    sa.Column("event_id", sa.String(36), primary_key=True),
)
"""Parked events a retry has applied, so that a retry is applied once."""

_MOVE_CHECKPOINT = (
    CHECKPOINTS.update()
    .where(CHECKPOINTS.c.name == sa.bindparam("cp_name"))
    .where(CHECKPOINTS.c.position == sa.bindparam("cp_from"))
    .values(position=sa.bindparam("cp_to"))
)
"""The checkpoint's compare-and-set."""

_RELAX_COMMIT = sa.text("(SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL")
"""PostgreSQL: ``SET LOCAL synchronous_commit = off`` as a condition of the checkpoint's
update, so that it costs no round trip of its own. The uncorrelated sub-select is
evaluated once, before any row is updated (a one-time filter)."""


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
    the checkpoint, so effects happen exactly once. An error that means the
    database is unreachable (:meth:`is_transient`: the connection refused or
    lost, the database locked or busy, the server shutting down) is retried
    until it is back; any other error from a handler (a missing table, a
    violated constraint, a bug) is retried, then parked.

    On PostgreSQL, a class attribute ``synchronous_commit = False`` commits
    each batch with ``synchronous_commit = off`` (for that transaction only):
    the commit returns before its WAL reaches the disk, which makes small
    batches cheaper. A crash of the database server or its machine may then
    lose the last batches committed; their rows and their checkpoint are lost
    together, so the projection applies those events again when it resumes,
    still exactly once, though readers may see the read model step back
    meanwhile. Off by default; other databases ignore it.
    """

    name: str
    """The projection's name: its subscription, checkpoint and lease."""
    metadata: ClassVar[sa.MetaData]
    batch_size: ClassVar[int] = 100
    transient_errors: tuple[type[BaseException], ...] = ()
    """Further error classes that mean the read model's storage is away (see
    :meth:`is_transient`), for a subclass whose handlers reach other services."""
    synchronous_commit: ClassVar[bool] = True
    """False: PostgreSQL commits without waiting for the disk (see above)."""
    _move_rendered: tuple[sa.Dialect, bool, str, tuple[str, ...]] | None = None

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
        if not isinstance(self.name, str) or len(self.name) > MAX_NAME_LENGTH:
            raise InvalidArgument(
                f"a projection's name is a string of at most {MAX_NAME_LENGTH} characters",
                field="name",
            )
        if "\x00" in self.name:
            raise InvalidArgument("a projection's name cannot hold NUL characters", field="name")

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

    def is_transient(self, error: BaseException) -> bool:
        """True when ``error`` means the database is away: retry, never park.

        Asks the DBAPI error underneath (see :func:`conduit.projections.outages.is_outage`):
        SQLAlchemy's ``OperationalError`` alone does not tell a locked SQLite
        database from a missing table. Errors of ``transient_errors`` count too.
        """
        return isinstance(error, self.transient_errors) or is_outage(error)

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
            # The session joins the connection's transaction, which this method
            # owns: it commits (rows and checkpoint) or rolls back here, whatever
            # a handler asks of the session.
            with (
                self.engine.connect() as conn,
                conn.begin(),
                Session(bind=conn, join_transaction_mode="rollback_only") as session,
            ):
                for index, event in enumerate(events):
                    try:
                        self._handle(event, session)
                    except Exception as exc:
                        if self.is_transient(exc):
                            raise
                        raise HandlerFailed(index, exc) from exc
                session.flush()
                self._move_checkpoint(conn, up_to)
        except HandlerFailed as failure:
            # The transaction was rolled back: apply what came before the culprit.
            if failure.index:
                self.apply(events[: failure.index], events[failure.index - 1].position)
            raise
        except CheckpointConflict:
            raise
        except sqlalchemy.exc.SQLAlchemyError as exc:
            if self.is_transient(exc):
                raise
            # Failed at flush or commit (a deferred constraint, say): find the culprit alone.
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

    def _move_checkpoint(self, conn: sa.Connection, position: int) -> None:
        known = self._known
        if known is None:
            if self._relaxed(conn.dialect):
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            try:
                with conn.begin_nested():
                    conn.execute(CHECKPOINTS.insert().values(name=self.name, position=position))
            except sqlalchemy.exc.IntegrityError:
                raise self._conflict() from None
        elif position != known:
            sql, order = self._move_sql(conn.dialect)
            values = {"cp_name": self.name, "cp_from": known, "cp_to": position}
            moved = conn.exec_driver_sql(
                sql, tuple(values[key] for key in order) if order else values
            )
            if moved.rowcount != 1:
                raise self._conflict()

    def _conflict(self) -> CheckpointConflict:
        return CheckpointConflict(f"projection {self.name!r}: another driver moved the checkpoint")

    def _relaxed(self, dialect: sa.Dialect) -> bool:
        return not self.synchronous_commit and dialect.name == "postgresql"

    def _move_sql(self, dialect: sa.Dialect) -> tuple[str, tuple[str, ...]]:
        """The checkpoint's compare-and-set in the dialect's own SQL, rendered once.

        Sent with ``exec_driver_sql``: the statement SQLAlchemy would send
        (events, echo and errors are SQLAlchemy's), without going through
        its compiled cache for each batch. Returns the SQL and, for a
        positional paramstyle, the order of the parameters.
        """
        relaxed = self._relaxed(dialect)
        rendered = self._move_rendered
        if rendered is None or rendered[0] is not dialect or rendered[1] != relaxed:
            statement = _MOVE_CHECKPOINT.where(_RELAX_COMMIT) if relaxed else _MOVE_CHECKPOINT
            # HOME_MAP as every engine of a projection has it: the default
            # schema, by name (the dialect knows it once it has connected).
            compiled = statement.compile(
                dialect=dialect, schema_translate_map=HOME_MAP, render_schema_translate=True
            )
            order = tuple(compiled.positiontup or ()) if dialect.positional else ()
            rendered = self._move_rendered = (dialect, relaxed, compiled.string, order)
        return rendered[2], rendered[3]

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
