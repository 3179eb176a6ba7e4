"""Opening engines: options checked, backend objects left to their owner, SQLite files
opened without writing, connections that die with their threads, large retries."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conduit import BackendError, ConfigurationError, EventStore, SchemaError, new_id
from conduit.backends.memory import MemoryBackend
from conduit.backends.postgres.config import PostgresConfig
from conduit.backends.sqlite import SQLiteBackend


@pytest.mark.parametrize(
    ("url", "option", "hint"),
    [
        ("memory://", "synchronus", None),
        ("sqlite:///{tmp}/x.db", "synchronus", "synchronous"),
        ("sqlite:///{tmp}/x.db", "busytimeout", "busy_timeout"),
    ],
)
def test_a_misspelt_engine_option_is_a_configuration_error(
    tmp_path: Path, url: str, option: str, hint: str | None
) -> None:
    options: dict[str, Any] = {option: "normal"}
    with pytest.raises(ConfigurationError, match=repr(option)) as caught:
        EventStore(url.format(tmp=tmp_path), **options)
    if hint is not None:
        assert f"did you mean {hint!r}" in str(caught.value)
    assert not (tmp_path / "x.db").exists()


@pytest.mark.postgres
def test_a_misspelt_postgres_option_is_a_configuration_error(postgres_url: str) -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'pool_size'"):
        EventStore(postgres_url, poolsize=3)


def test_options_given_with_a_backend_object_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="synchronous"):
        EventStore(MemoryBackend(), synchronous="normal")


def test_closing_a_store_leaves_the_backend_it_was_given_open(tmp_path: Path) -> None:
    backend = SQLiteBackend(str(tmp_path / "shared.db"))
    first = EventStore(backend)
    first.push("thing_happened", "s", {})
    first.close()
    second = EventStore(backend)
    assert [e.version for e in second.get("s")] == [1]
    second.push("thing_happened", "s", {})
    backend.close()


def test_a_store_opened_from_a_url_closes_its_engine(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'own.db'}")
    store.push("thing_happened", "s", {})
    store.close()
    with pytest.raises(BackendError, match="closed"):
        store.get("s")


def _made(path: Path) -> None:
    EventStore(f"sqlite:///{path}").close()


def test_opening_a_current_sqlite_store_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    _made(path)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process is writing, for a long time
    try:
        store = EventStore(f"sqlite:///{path}?busy_timeout=0.2")
        assert store.get("s") == []
        store.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_read_only_sqlite_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    with EventStore(f"sqlite:///{path}") as store:
        store.push("thing_happened", "s", {"n": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with EventStore(f"sqlite:///{path}?read_only=true") as store:
        assert [e.data for e in store.get("s")] == [{"n": 1}]
        with pytest.raises(BackendError, match="readonly"):
            store.push("thing_happened", "s", {"n": 2})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before


def test_create_false_refuses_a_missing_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(ConfigurationError, match="no SQLite store"):
        EventStore(f"sqlite:///{path}?create=false")
    with pytest.raises(ConfigurationError, match="no SQLite store"):
        EventStore(f"sqlite:///{path}", read_only=True)
    assert not path.exists()


def test_read_only_refuses_an_older_schema_instead_of_migrating(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _made(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=2")
    conn.close()
    with pytest.raises(SchemaError, match="older"):
        EventStore(f"sqlite:///{path}", read_only=True)


def test_sqlite_connections_die_with_their_threads(tmp_path: Path) -> None:
    backend = SQLiteBackend(str(tmp_path / "threads.db"))
    store = EventStore(backend)
    store.push("thing_happened", "s", {})
    failures: list[BaseException] = []

    def read() -> None:
        try:
            assert len(store.get("s")) == 1
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    for _ in range(10):
        threads = [threading.Thread(target=read) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    gc.collect()
    assert failures == []
    assert backend.open_connections() <= 1  # this thread's, at most
    backend.close()
    assert backend.open_connections() == 0


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_short_lived_threads_do_not_leak_file_descriptors(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'fds.db'}")
    store.push("thing_happened", "s", {})

    def read() -> None:
        store.get("s")

    def burst() -> None:
        threads = [threading.Thread(target=read) for _ in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        gc.collect()

    burst()
    baseline = _open_fds()
    for _ in range(4):
        burst()
    # A connection per thread left open would hold 400+ more descriptors.
    assert _open_fds() < baseline + 50
    store.close()


def test_retrying_a_batch_larger_than_sqlites_parameter_limit_returns_it(
    make_store: Callable[[], EventStore],
) -> None:
    store = make_store()
    events = [{"name": "thing_happened", "data": {}, "id": new_id()} for _ in range(33_000)]
    recorded = store.push_many("big", events, expected_version=0)
    retried = store.push_many("big", events, expected_version=0)
    assert [e.id for e in retried] == [e.id for e in recorded]
    assert store.stream_version("big") == 33_000


def test_a_retried_batch_is_looked_up_within_sqlites_parameter_limit(tmp_path: Path) -> None:
    backend = SQLiteBackend(str(tmp_path / "limit.db"))
    store = EventStore(backend)
    # The limit of SQLite builds before 3.32 (and of some builds since): 999 parameters.
    backend._connection().setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    events = [{"name": "thing_happened", "data": {}, "id": new_id()} for _ in range(2_500)]
    recorded = store.push_many("big", events)
    assert [e.id for e in store.push_many("big", events)] == [e.id for e in recorded]
    assert store.stream_version("big") == 2_500
    backend.close()


def test_replica_urls_take_the_primarys_user_database_and_parameters() -> None:
    config = PostgresConfig.of(
        "postgresql://app:secret@p1,p2/db?target_session_attrs=read-write&sslmode=prefer"
        "&replica=r1:5433&replica=postgresql%3A%2F%2Fro%40r2%2Fdb",
        replicas=["r3"],
    )
    assert config.replicas == (
        "postgresql://app:secret@r1:5433/db?sslmode=prefer",
        "postgresql://ro@r2/db",
        "postgresql://app:secret@r3/db?sslmode=prefer",
    )
    assert "replica" not in config.conninfo


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"replicas": "r1"}, "replicas"),
        ({"replicas": ["postgresql://r1/db?schema=other"]}, "schema"),
        ({"replicas": ["mysql://r1/db"]}, "not a PostgreSQL URL"),
        ({"replicas": [" "]}, "empty"),
        ({"replica_timeout": -1}, "replica_timeout"),
    ],
    ids=["a-string", "conduit-options", "another-scheme", "empty", "negative-timeout"],
)
def test_malformed_replicas_are_configuration_errors(given: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        PostgresConfig.of("postgresql://app@p/db", **given)


def test_replicas_are_an_option_of_postgresql_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="replicas"):
        EventStore(f"sqlite:///{tmp_path / 'x.db'}", replicas=["r1"])
