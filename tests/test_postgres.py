"""What only the PostgreSQL engine has: schemas, options, connections, the horizon.

The shared behaviour is in the contract kit (tests/test_contract.py); these
tests pin what the engine adds on top of it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
import pytest

from conduit import BackendError, ConfigurationError, EventStore, SchemaError
from conduit.backends.postgres import PostgresBackend
from conduit.backends.postgres.effects import Query
from conduit.backends.postgres.sql import Statements
from conduit.testing.waits import eventually

pytestmark = pytest.mark.postgres


def _query(backend: PostgresBackend, sql: str) -> Any:
    """One statement on one of the store's pooled connections (its first row)."""
    return backend.executor.query(Query(sql, check=False))


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    name = f"engine_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_store(postgres_url: str, schema: str) -> Iterator[EventStore]:
    with EventStore(postgres_url, schema=schema) as store:
        store.setup()
        yield store


def test_a_missing_schema_is_reported_with_the_command_that_creates_it(
    postgres_url: str, schema: str
) -> None:
    with EventStore(postgres_url, schema=schema) as store:
        with pytest.raises(SchemaError, match="conduit init"):
            store.push("thing_happened", "s", {})


def test_an_older_schema_is_reported_with_the_command_that_migrates_it(
    postgres_url: str, pg_store: EventStore, schema: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        # A schema left at version 1 by an earlier release.
        conn.execute(f'DELETE FROM "{schema}".schema_version WHERE version > 1')
        conn.execute(f'DROP TABLE "{schema}".subscriptions, "{schema}".parked_events')
    with EventStore(postgres_url, schema=schema) as store:
        with pytest.raises(SchemaError, match=r"older.*conduit init"):
            store.get("s")
        store.setup()
        assert store.get("s") == []
        assert store.subscription_status() == []


def test_a_newer_schema_is_refused(postgres_url: str, pg_store: EventStore, schema: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'INSERT INTO "{schema}".schema_version (version) VALUES (999)')
    with EventStore(postgres_url, schema=schema) as store:
        with pytest.raises(SchemaError, match="newer"):
            store.get("s")
        with pytest.raises(SchemaError, match="newer"):
            store.setup()


def test_setup_from_several_threads_at_once_creates_one_schema(
    postgres_url: str, schema: str
) -> None:
    stores = [EventStore(postgres_url, schema=schema) for _ in range(6)]
    errors: list[BaseException] = []

    def run(store: EventStore) -> None:
        try:
            store.setup()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    stores[0].push("thing_happened", "s", {})
    assert [e.name for e in stores[1].get("s")] == ["thing_happened"]
    for store in stores:
        store.close()


def test_two_schemas_in_one_database_are_separate_stores(postgres_url: str) -> None:
    names = [f"engine_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    try:
        with (
            EventStore(postgres_url, schema=names[0]) as first,
            EventStore(postgres_url, schema=names[1]) as second,
        ):
            first.setup()
            second.setup()
            first.push("thing_happened", "s", {"store": 1})
            assert second.get("s") == []
            assert list(second.read_all()) == []
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_options_can_be_given_in_the_url(postgres_url: str, schema: str) -> None:
    separator = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{separator}schema={schema}&pool_size=3&lock_timeout=2.5"
    with EventStore(url) as store:
        backend = store.backend
        assert isinstance(backend, PostgresBackend)
        config = backend.engine.config
        assert (config.schema, config.pool_size, config.lock_timeout) == (schema, 3, 2.5)
        store.setup()
        store.push("thing_happened", "s", {})
        assert store.stream_version("s") == 1


def test_libpq_parameters_in_the_url_reach_the_server_unchanged(
    postgres_url: str, schema: str
) -> None:
    separator = "&" if "?" in postgres_url else "?"
    url = (
        f"{postgres_url}{separator}schema={schema}&application_name=conduit%20test%2Bapp"
        "&options=-c%20search_path%3Dsomewhere"
    )
    with EventStore(url) as store:
        backend = store.backend
        assert isinstance(backend, PostgresBackend)

        row = _query(
            backend, "SELECT current_setting('application_name'), current_setting('search_path')"
        )
        assert row == ("conduit test+app", "somewhere")


def test_a_pooled_connection_keeps_no_page_of_events_once_read(
    postgres_url: str, schema: str
) -> None:
    with EventStore(postgres_url, schema=schema, pool_size=1) as store:
        store.setup()
        store.push_many("s", [("thing_happened", {"blob": "x" * 100_000})] * 20)
        assert len(store.get("s")) == 20
        backend = store.backend
        assert isinstance(backend, PostgresBackend)

        with backend.executor.pool.connection() as conn:
            cursor = conn._kept  # kept for small results
            kept = 0 if cursor is None or cursor.pgresult is None else cursor.pgresult.ntuples
        assert kept <= 1


def test_a_bad_option_value_in_the_url_is_a_configuration_error(postgres_url: str) -> None:
    separator = "&" if "?" in postgres_url else "?"
    with pytest.raises(ConfigurationError, match="pool_size"):
        EventStore(f"{postgres_url}{separator}pool_size=many")


def test_timeouts_are_set_on_the_store_connections(postgres_url: str, schema: str) -> None:
    with EventStore(postgres_url, schema=schema, statement_timeout=7, lock_timeout=3) as store:
        backend = store.backend
        assert isinstance(backend, PostgresBackend)

        row = _query(
            backend,
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),"
            " current_setting('transaction_isolation'), current_setting('TimeZone')",
        )
        assert row == ("7s", "3s", "read committed", "UTC")


def test_a_statement_timeout_is_a_backend_error(postgres_url: str, schema: str) -> None:
    with EventStore(postgres_url, schema=schema, statement_timeout=0.2) as store:
        backend = store.backend
        assert isinstance(backend, PostgresBackend)
        with pytest.raises(BackendError, match="statement_timeout"):
            _query(backend, "SELECT pg_sleep(2)")
        store.setup()
        store.push("thing_happened", "s", {})


def test_a_stream_locked_longer_than_lock_timeout_fails_the_push_and_writes_nothing(
    postgres_url: str, pg_store: EventStore, schema: str
) -> None:
    from conduit.backends.postgres.sql import LOCK_CLASS

    with EventStore(postgres_url, schema=schema, lock_timeout=0.2) as impatient:
        with psycopg.connect(postgres_url) as holder:
            holder.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, "busy-stream")
            )
            with pytest.raises(BackendError, match="lock_timeout"):
                impatient.push("thing_happened", "busy-stream", {})
            impatient.push("thing_happened", "free-stream", {})
            holder.rollback()
        assert impatient.stream_version("busy-stream") == 0
        impatient.push("thing_happened", "busy-stream", {})
        assert impatient.stream_version("busy-stream") == 1


def test_lost_connections_are_replaced(postgres_url: str, pg_store: EventStore) -> None:
    pg_store.push("thing_happened", "s", {})
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = '' AND pid <> pg_backend_pid()"
            " AND datname = current_database()"
        )
    for _ in range(3):
        pg_store.push("thing_happened", "s", {})
    assert pg_store.stream_version("s") == 4
    assert len(list(pg_store.read_all())) == 4


def test_a_closed_store_raises_backend_error(postgres_url: str, schema: str) -> None:
    store = EventStore(postgres_url, schema=schema)
    store.setup()
    store.close()
    with pytest.raises(BackendError, match="closed"):
        store.get("s")


def test_data_is_stored_as_exact_json_text_that_sql_can_query(
    postgres_url: str, pg_store: EventStore, schema: str
) -> None:
    data = {"z": 1e16, "a": 1.2345678901234567e17, "n": {"deep": [1, "two"]}}
    event = pg_store.push("thing_happened", "s", data, metadata={"user": "kris"})
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            f"SELECT data::text, data->'n'->'deep'->>1, metadata->>'user' FROM \"{schema}\".events"
            " WHERE id = %s",
            (event.id,),
        ).fetchone()
    assert row == (orjson.dumps(data).decode(), "two", "kris")
    assert pg_store.get("s")[0].data == data


def test_a_released_lease_is_free_before_release_returns(
    postgres_url: str, pg_store: EventStore, schema: str
) -> None:
    backend = pg_store.backend
    assert isinstance(backend, PostgresBackend)
    with EventStore(postgres_url, schema=schema) as other:
        assert backend.try_lease("ledger", "worker-a", 60) is True
        assert other.backend.try_lease("ledger", "worker-b", 60) is False
        # The session holding the lease stays open (it holds every lease of
        # this engine): releasing must unlock, not count on a session's end.
        backend.release_lease("ledger", "worker-a")
        assert other.backend.try_lease("ledger", "worker-b", 60) is True


def _names_with_one_hashtext(url: str, schema: str) -> tuple[str, str]:
    """Two subscription names whose leases shared one key before 64-bit keys: equal
    ``hashtext`` of ``schema:name``, the 32-bit key earlier releases locked."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT min(n), max(n) FROM (SELECT 'projection-' || i AS n,"
            " hashtext(%s || ':projection-' || i) AS h FROM generate_series(1, 400000) AS i)"
            " AS named GROUP BY h HAVING count(*) > 1 LIMIT 1",
            (schema,),
        ).fetchone()
    assert row is not None, "no two names of 400,000 share a 32-bit hashtext"
    return str(row[0]), str(row[1])


def test_two_names_whose_32_bit_hashtext_collides_are_leased_at_once(
    postgres_url: str, pg_store: EventStore, schema: str
) -> None:
    first, second = _names_with_one_hashtext(postgres_url, schema)
    with psycopg.connect(postgres_url) as conn:
        hashes = conn.execute(
            "SELECT hashtext(%s), hashtext(%s)", (f"{schema}:{first}", f"{schema}:{second}")
        ).fetchone()
        assert hashes is not None
        assert hashes[0] == hashes[1]  # one key for both, until now
    with EventStore(postgres_url, schema=schema) as other:
        assert pg_store.backend.try_lease(first, "worker-a", 60) is True
        # With the 32-bit key, the second projection never ran while the first did.
        assert other.backend.try_lease(second, "worker-b", 60) is True
        assert other.backend.try_lease(first, "worker-b", 60) is False


def test_a_lease_key_is_64_bits_and_differs_by_schema_and_name() -> None:
    from conduit.backends.postgres.subscription_ops import lease_key

    keys = {lease_key(schema, name) for schema in ("a", "b") for name in ("x", "y", "a:x")}
    assert len(keys) == 6
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert any(abs(key) >= 2**32 for key in keys)


@contextmanager
def an_older_writer_that_commits_once_the_store_waits(url: str) -> Iterator[threading.Event]:
    """A transaction with an id, open before what the block pushes, holding the
    reader horizon back; it commits once a session of the database asks for the
    horizon (a store waiting for its own push), never before.

    Yields the event set when that wait was seen. Bounded: the transaction
    commits anyway when the block ends.
    """
    horizon = Statements("any").horizon
    holder = psycopg.connect(url)
    holder.execute("SELECT pg_current_xact_id()")
    seen, done = threading.Event(), threading.Event()

    def commit_once_waited_for() -> None:
        with psycopg.connect(url, autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while not done.is_set() and time.monotonic() < deadline:
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> %s AND query = %s",
                    (holder.info.backend_pid, horizon),
                ).fetchone()
                if row and row[0]:
                    seen.set()
                    break
                time.sleep(0.005)
        holder.commit()

    committer = threading.Thread(target=commit_once_waited_for, daemon=True)
    committer.start()
    try:
        yield seen
    finally:
        done.set()
        committer.join(60)
        holder.close()


def test_the_same_store_reads_its_own_push_while_an_older_transaction_commits_later(
    postgres_url: str, pg_store: EventStore
) -> None:
    with an_older_writer_that_commits_once_the_store_waits(postgres_url) as waited:
        event = pg_store.push("thing_happened", "s", {})
        assert [e.id for e in pg_store.read_all()] == [event.id]
    assert waited.is_set()


def test_count_after_counts_the_stores_own_push_while_an_older_transaction_commits_later(
    postgres_url: str, pg_store: EventStore
) -> None:
    with an_older_writer_that_commits_once_the_store_waits(postgres_url) as waited:
        pg_store.push("thing_happened", "s", {})
        assert pg_store.backend.count_after(0, names=None) == 1
    assert waited.is_set()


def test_first_position_since_finds_the_stores_own_push_while_an_older_transaction_commits_later(
    postgres_url: str, pg_store: EventStore
) -> None:
    with an_older_writer_that_commits_once_the_store_waits(postgres_url) as waited:
        event = pg_store.push("thing_happened", "s", {})
        assert pg_store.backend.first_position_since(event.recorded_at) == event.position
    assert waited.is_set()


def test_transactions_that_started_after_the_push_do_not_hold_its_reader_back(
    postgres_url: str, pg_store: EventStore
) -> None:
    event = pg_store.push("thing_happened", "s", {})
    with psycopg.connect(postgres_url) as other:
        other.execute("SELECT pg_current_xact_id()")  # a newer writer, open
        with psycopg.connect(postgres_url) as reader:
            reader.execute("BEGIN READ ONLY")  # and a reader, open
            assert [e.id for e in pg_store.read_all()] == [event.id]
            assert pg_store.head_position() == event.position


def test_an_open_older_transaction_holds_other_readers_at_the_horizon_until_it_ends(
    postgres_url: str, pg_store: EventStore, schema: str
) -> None:
    with EventStore(postgres_url, schema=schema) as reader:
        first = pg_store.push("thing_happened", "s", {})
        eventually(lambda: [e.id for e in reader.read_all()] == [first.id], "the first event")
        with psycopg.connect(postgres_url) as other:
            other.execute("SELECT pg_current_xact_id()")
            second = pg_store.push("thing_happened", "s", {})
            assert [e.id for e in reader.read_all(after=first.position)] == []
            assert reader.get("s")[-1].id == second.id  # stream reads are not held back
            other.commit()
        # Other transactions of the cluster (other tests' processes) hold the
        # horizon too: the event shows once they are done.
        eventually(
            lambda: [e.id for e in reader.read_all(after=first.position)] == [second.id],
            "the event shows once the older transaction committed",
        )


def test_positions_grow_with_the_writer_transaction_ids(pg_store: EventStore) -> None:
    events = pg_store.push_many("s", [("a", {}), ("b", {})])
    later = pg_store.push("c", "t", {})
    assert events[0].position >> 20 == events[1].position >> 20
    assert events[1].position == events[0].position + 1
    assert later.position >> 20 > events[1].position >> 20
