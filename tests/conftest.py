"""Fixtures shared by the whole suite: one store per engine, with readable ids.

PostgreSQL tests use the server at ``CONDUIT_TEST_POSTGRES_URL`` (default: the
local server on 127.0.0.1:5432). The run creates a fresh database for itself
and drops it at the end; each test gets its own PostgreSQL schema in it. When
the server cannot be reached the tests that need it fail, loudly: they never
turn into skipped tests.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conduit import EventStore

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ENGINES = ["memory", "sqlite", "postgres"]

_schemas = itertools.count(1)


def postgres_admin_url() -> str:
    """The server the tests use, as given by CONDUIT_TEST_POSTGRES_URL."""
    return os.environ.get("CONDUIT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _with_database(url: str, database: str) -> str:
    base, _, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{database}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test run, dropped at its end."""
    import psycopg

    admin = postgres_admin_url()
    name = f"conduit_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {admin} ({exc}).\n"
            "Start it with: pg_ctlcluster --skip-systemctl-redirect "
            "$(ls /etc/postgresql) main start\n"
            "or point CONDUIT_TEST_POSTGRES_URL at a server.",
            pytrace=False,
        )
    yield _with_database(admin, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], EventStore]]:
    """Opens stores on the engine the test is parametrized with, all on the same data.

    Every call returns a new store object over the same storage (the same
    SQLite file, the same PostgreSQL schema; for memory, the same backend).
    """
    engine: str = request.param
    opened: list[EventStore] = []
    if engine.endswith("-async"):
        yield from _async_stores(request, tmp_path, engine.removesuffix("-async"))
        return
    if engine == "memory":
        from conduit.backends.memory import MemoryBackend

        backend = MemoryBackend()

        def make() -> EventStore:
            return EventStore(backend)

    elif engine.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'events.db'}"
        if engine == "sqlite-before-3.35":  # appends without RETURNING
            request.getfixturevalue("monkeypatch").setattr(
                "conduit.backends.sqlite_appends.RETURNING", False
            )

        def make() -> EventStore:
            store = EventStore(url)
            opened.append(store)
            return store

    else:
        base = request.getfixturevalue("postgres_url")
        schema = f"t{next(_schemas)}_{uuid.uuid4().hex[:6]}"

        def make() -> EventStore:
            store = EventStore(base, schema=schema)
            opened.append(store)
            store.setup()
            return store

    yield make
    for store in opened:
        store.close()


def _async_stores(
    request: pytest.FixtureRequest, tmp_path: Path, engine: str
) -> Iterator[Callable[[], EventStore]]:
    """``AsyncEventStore``s made to look like ``EventStore``s (the kit's adapter), all on
    one event loop, over the same storage."""
    from conduit import AsyncEventStore
    from conduit.backends.memory import MemoryBackend
    from conduit.testing.aio import LoopThread, blocking

    loop = LoopThread()
    opened: list[Any] = []
    if engine == "memory":
        shared = MemoryBackend()

        def made() -> AsyncEventStore:
            return AsyncEventStore(shared)

    elif engine == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"

        def made() -> AsyncEventStore:
            return AsyncEventStore(url)

    else:
        base = request.getfixturevalue("postgres_url")
        schema = f"t{next(_schemas)}_{uuid.uuid4().hex[:6]}"

        def made() -> AsyncEventStore:
            return AsyncEventStore(base, schema=schema)

    def make() -> EventStore:
        store = blocking(loop.call(made), loop)
        opened.append(store)
        store.setup()
        return store  # type: ignore[no-any-return]

    yield make
    for store in opened:
        store.close()
    loop.stop()


@pytest.fixture
def store(make_store: Callable[[], EventStore]) -> EventStore:
    """A store with nothing in it, on the engine the test is parametrized with."""
    return make_store()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses a store once per engine: memory, sqlite, postgres."""
    if "make_store" in metafunc.fixturenames:
        engines = getattr(metafunc.module, "ENGINES", ENGINES)
        metafunc.parametrize("make_store", engines, indirect=True, ids=engines)
