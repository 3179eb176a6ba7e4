"""A small application for the projection and worker tests: a SQL read model and its worker.

:class:`Ledger` keeps, per stream, the number of events and the sum of their
``value``, and per event how many times it was applied, so that an effect
missing or applied twice shows. Worker tests run :func:`main` in a child
process (``python -c "import worker_app; worker_app.main(...)"``), and kill it.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from conduit import Event, EventStore
from conduit.projections import SQLProjection
from conduit.subscriptions.worker import run_worker

__all__ = [
    "EVENT",
    "Broken",
    "Ledger",
    "Totals",
    "create_database",
    "drop_database",
    "hits",
    "ledger",
    "main",
    "read_checkpoint",
    "refusing_connections",
    "sqlalchemy_url",
    "sqlite_locked",
    "totals",
    "with_database",
]

EVENT = "amount_recorded"
"""The name of the events the ledger counts: data ``{"value": int}``."""

metadata = sa.MetaData()

totals = sa.Table(
    "ledger_totals",
    metadata,
    sa.Column("stream_id", sa.String(100), primary_key=True),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
)
"""Per stream: how many events were applied and the sum of their values."""

hits = sa.Table(
    "ledger_hits",
    metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("times", sa.Integer, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
)
"""Per event: how many times it was applied (exactly once: 1), and by which process."""

versions = sa.Table(
    "ledger_versions",
    metadata,
    sa.Column("stream_id", sa.String(100), primary_key=True),
    sa.Column("last", sa.Integer, nullable=False),
    sa.Column("out_of_order", sa.Integer, nullable=False),
)
"""Per stream: the last version applied, and how many events came out of stream order
(filled by :class:`OrderedLedger` only)."""

Totals = dict[str, tuple[int, int]]
"""Stream id to (number of events, sum of values)."""


class Ledger(SQLProjection):
    """Counts events and sums their values per stream.

    An event whose data has ``"bad": true`` makes the handler raise while
    ``failing`` is set, as a bug in a handler would.
    """

    name = "ledger"
    metadata = metadata

    def __init__(self, engine: sa.Engine | str, **options: Any) -> None:
        super().__init__(engine, **options)
        self.failing = True
        self.pid = os.getpid()

    def on_amount_recorded(self, event: Event, session: Session) -> None:
        if event.data.get("bad") and self.failing:
            raise ValueError(f"refusing bad event {event.id}")
        add_to_totals, count_hit = _upserts(session.get_bind().dialect.name)
        session.execute(add_to_totals, {"s": str(event.stream_id), "v": int(event.data["value"])})
        session.execute(count_hit, {"e": str(event.id), "p": self.pid})


class OrderedLedger(Ledger):
    """The ledger, also recording each stream's last version and events out of order."""

    def on_amount_recorded(self, event: Event, session: Session) -> None:
        super().on_amount_recorded(event, session)
        stream = str(event.stream_id)
        last = session.execute(
            sa.select(versions.c.last).where(versions.c.stream_id == stream)
        ).scalar_one_or_none()
        if last is None:
            session.execute(
                versions.insert().values(
                    stream_id=stream, last=event.version, out_of_order=int(event.version != 1)
                )
            )
        else:
            session.execute(
                versions.update()
                .where(versions.c.stream_id == stream)
                .values(
                    last=event.version,
                    out_of_order=versions.c.out_of_order + int(event.version != last + 1),
                )
            )


class Broken:
    """A projector whose driver fails at once, as a bug in a projection would."""

    name = "broken"

    def is_transient(self, error: BaseException) -> bool:
        return False

    def load_checkpoint(self) -> int:
        raise RuntimeError("a bug in the projection")

    def apply(self, events: Sequence[Event], up_to: int) -> None:
        """Never reached."""

    def apply_parked(self, event: Event) -> None:
        """Never reached."""


@functools.cache
def _upserts(dialect: str) -> tuple[Any, Any]:
    # Built once: a read model applying thousands of events should not build
    # (and compile) statements per event.
    insert: Any = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect]
    add = insert(totals).values(stream_id=sa.bindparam("s"), events=1, total=sa.bindparam("v"))
    add = add.on_conflict_do_update(
        index_elements=[totals.c.stream_id],
        set_={"events": totals.c.events + 1, "total": totals.c.total + add.excluded.total},
    )
    hit = insert(hits).values(event_id=sa.bindparam("e"), times=1, pid=sa.bindparam("p"))
    hit = hit.on_conflict_do_update(
        index_elements=[hits.c.event_id],
        set_={"times": hits.c.times + 1, "pid": hit.excluded.pid},
    )
    return add, hit


def ledger(engine: sa.Engine | str) -> Totals:
    """The read model's totals: stream id to (events, sum of values)."""
    owned = isinstance(engine, str)
    base = sa.create_engine(engine) if isinstance(engine, str) else engine
    try:
        with base.connect() as conn:
            rows = conn.execute(sa.select(totals.c.stream_id, totals.c.events, totals.c.total))
            return {stream: (count, int(total)) for stream, count, total in rows}
    finally:
        if owned:
            base.dispose()


def read_checkpoint(engine: sa.Engine, name: str = Ledger.name) -> int:
    """A SQL projection's checkpoint, read from its read-model database (0 if none)."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT position FROM conduit_checkpoints WHERE name = :name"),
            {"name": name},
        ).scalar_one_or_none()
    return int(found or 0)


# -- read-model databases: made, dropped, made unavailable -------------------------


def with_database(url: str, database: str) -> str:
    """The same server URL, naming another database."""
    base, _, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{database}" + (f"?{query}" if query else "")


def sqlalchemy_url(url: str) -> str:
    """A ``postgresql://`` URL for SQLAlchemy's psycopg 3 dialect."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg://{rest}" if sep and scheme.startswith("postgres") else url


def create_database(admin_url: str, prefix: str = "conduit_rm") -> str:
    """Create a fresh PostgreSQL database; returns its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(admin_url: str, name: str) -> None:
    """Drop a database made by :func:`create_database`, closing its connections."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def refusing_connections(admin_url: str, name: str) -> Iterator[None]:
    """Make a database unavailable: close its sessions and refuse new ones, until exit."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            yield
        finally:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


@contextmanager
def sqlite_locked(path: str) -> Iterator[None]:
    """Another connection holding an exclusive lock on a SQLite file until exit."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


# -- the worker process ----------------------------------------------------------


def main(
    store_url: str,
    readmodel_url: str,
    *,
    schema: str | None = None,
    lease_ttl: float = 1.0,
    batch_size: int = 100,
    partitions: int | None = None,
) -> None:
    """Run the ledger projection as a worker until SIGTERM (or SIGKILL); with
    ``partitions``, the :class:`OrderedLedger` split into that many."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s {os.getpid()} %(name)s %(levelname)s %(message)s",
    )
    options: dict[str, Any] = {} if schema is None else {"schema": schema}
    store = EventStore(store_url, **options)
    projection = Ledger(readmodel_url) if partitions is None else OrderedLedger(readmodel_url)
    extra: dict[str, Any] = {} if partitions is None else {"partitions": partitions}
    run_worker(
        store,
        [projection],
        lease_ttl=lease_ttl,
        batch_size=batch_size,
        poll_interval=0.05,
        **extra,
    )
