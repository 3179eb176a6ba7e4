"""The PostgreSQL engine's waits and sessions: read-your-writes bounded per push, reads
that only look and never wait, one session for every lease, NOTIFY channel names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
import pytest

from conduit import ConfigurationError, EventStore
from conduit.backends.postgres import PostgresBackend
from conduit.backends.postgres import config as pg_config
from conduit.backends.postgres import sync as pg_sync
from conduit.backends.postgres.sql import Statements

pytestmark = pytest.mark.postgres


@dataclass(frozen=True, slots=True)
class _CountingStatements(Statements):
    probes: ClassVar[list[int]] = []

    @property
    def horizon(self) -> str:
        self.probes.append(1)
        return Statements.horizon.fget(self)  # type: ignore[attr-defined, no-any-return]


class _Psycopg:
    """psycopg as the subscriptions module sees it, with a counting ``connect``."""

    def __init__(self, connect: Any) -> None:
        self.connect = connect
        self.Error = psycopg.Error
        self.Connection = psycopg.Connection


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    name = f"waits_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _backend(postgres_url: str, schema: str, **options: object) -> PostgresBackend:
    backend = PostgresBackend(postgres_url, schema=schema, **options)  # type: ignore[arg-type]
    backend.setup()
    backend.engine.sql = _CountingStatements(schema)
    _CountingStatements.probes.clear()
    return backend


def test_a_read_your_writes_wait_that_ran_out_is_not_repeated_for_the_same_push(
    postgres_url: str, schema: str
) -> None:
    backend = _backend(postgres_url, schema, read_your_writes_timeout=0.2)
    store = EventStore(backend)
    with psycopg.connect(postgres_url) as older:
        older.execute("SELECT pg_current_xact_id()")  # holds the horizon back
        event = store.push("thing_happened", "s", {})
        assert list(store.read_all()) == []  # waited, ran out: the horizon holds it
        waited = len(_CountingStatements.probes)
        assert waited > 1
        for _ in range(3):
            assert list(store.read_all()) == []
            store.head_position()
        assert len(_CountingStatements.probes) == waited  # no new wait for that push
        store.push("thing_happened", "s", {})  # a newer push: reads wait for it again
        list(store.read_all())
        assert len(_CountingStatements.probes) > waited
        older.commit()
    assert next(e.id for e in store.read_all()) == event.id
    backend.close()


def test_reads_that_only_look_do_not_wait_for_own_writes(postgres_url: str, schema: str) -> None:
    backend = _backend(postgres_url, schema, read_your_writes_timeout=5)
    store = EventStore(backend)
    with psycopg.connect(postgres_url) as older:
        older.execute("SELECT pg_current_xact_id()")
        store.push("thing_happened", "s", {})
        assert backend.head_position(wait=False) == 0
        assert backend.read_all(after=0, names=None, limit=10, wait=False) == []
        assert _CountingStatements.probes == []
        older.commit()
    backend.close()


def test_every_lease_of_an_engine_shares_one_session(
    postgres_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = _backend(postgres_url, schema)
    standby = _backend(postgres_url, schema)
    opened: list[object] = []
    real_connect = psycopg.Connection.connect

    def counting_connect(*args: Any, **kwargs: Any) -> Any:
        conn = real_connect(*args, **kwargs)
        opened.append(conn)
        return conn

    monkeypatch.setattr(pg_sync, "psycopg", _Psycopg(counting_connect))
    assert holder.try_lease("p", "a", 10)
    assert holder.try_lease("q", "a", 10)
    for _ in range(20):
        assert not standby.try_lease("p", "b", 10)
        assert standby.try_lease("r", "b", 10)
    assert not holder.try_lease("p", "other-owner-here", 10)  # re-entrant lock, refused
    assert len(opened) == 2  # one session each, however many attempts
    holder.release_lease("p", "a")
    assert standby.try_lease("p", "b", 10)
    holder.close()
    standby.close()


def test_a_lease_session_killed_by_the_server_loses_its_leases_without_raising(
    postgres_url: str, schema: str
) -> None:
    first = _backend(postgres_url, schema)
    second = _backend(postgres_url, schema)
    assert first.try_lease("p", "a", 10)
    session = first.executor._session
    assert session is not None
    pid = session.info.backend_pid
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert not first.try_lease("p", "a", 10)  # lost with the session, reported as False
    assert session.closed
    assert first.lease_holders() == {}
    assert second.try_lease("p", "b", 10)  # the server released the lock
    assert not first.try_lease("p", "a", 10)
    first.close()
    second.close()


def test_a_schema_whose_notify_channel_is_too_long_is_refused(postgres_url: str) -> None:
    long_schema = "s" * 60
    with pytest.raises(ConfigurationError, match="channel"):
        EventStore(postgres_url, schema=long_schema, notify=True)
    EventStore(postgres_url, schema=long_schema).close()  # without NOTIFY it is fine
    with pytest.raises(ConfigurationError, match="63 bytes"):
        EventStore(postgres_url, schema="s" * 64)
    assert pg_config.MAX_IDENTIFIER_BYTES == 63
