"""PostgreSQL's DCB locks: appends of disjoint keys never wait for each other; a
written tag makes a condition that reads it wait, then fail (docs/dcb.md)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import psycopg
import pytest

from conduit import (
    AppendCondition,
    AppendConditionFailed,
    BackendError,
    EventStore,
    Query,
    QueryItem,
)
from conduit.backends.base import StreamAppend
from conduit.backends.postgres import rows
from conduit.backends.postgres.keys import tagged_params
from conduit.backends.postgres.sql import MAX_KEYS
from conduit.core.writes import new_event
from conduit.events import NewEvent, stream_key
from conduit.testing.waits import eventually

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    name = f"dcb_{uuid.uuid4().hex[:10]}"
    with EventStore(postgres_url, schema=name) as store:
        store.setup()
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _tagged(tag: str) -> list[dict[str, object]]:
    return [{"name": "seat_taken", "data": {}, "tags": [tag]}]


def _condition(tag: str, after: int) -> AppendCondition:
    return AppendCondition(Query(QueryItem(tags=[tag])), after=after)


def _seat_taken(*tags: str) -> NewEvent:
    """A ``seat_taken`` event, encoded, carrying ``tags``."""
    return replace(new_event("seat_taken", {}, None, None), tags=frozenset(tags))


def _hold_append(conn: psycopg.Connection, store: EventStore, tag: str) -> None:
    """Run, in ``conn``'s open transaction, the append of an event tagged ``tag``."""
    request = (StreamAppend(stream_key(f"held-{tag}"), (_seat_taken(tag),), None),)
    params = rows.group_params([request], False)
    conn.execute(store.backend.sql.append_groups, params, binary=True)  # type: ignore[attr-defined]


def _waiting_advisory_locks(postgres_url: str) -> int:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
    return int(row[0]) if row else 0


def _waits_for_the_held_append_then_fails(
    postgres_url: str, store: EventStore, held: psycopg.Connection, condition: AppendCondition
) -> None:
    """An append under ``condition`` waits for ``held``'s uncommitted append, then,
    once it commits, fails (the condition sees its event)."""
    outcome: list[BaseException | None] = []

    def conditional() -> None:
        try:
            store.append(
                [{"name": "enrolled", "data": {}, "tags": ["student:s1"]}], condition=condition
            )
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=conditional)
    waiter.start()
    eventually(lambda: _waiting_advisory_locks(postgres_url) >= 1, "the condition waits")
    assert outcome == []
    held.commit()
    waiter.join(30)
    assert not waiter.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], AppendConditionFailed)


def test_appends_of_disjoint_tags_never_wait(postgres_url: str, schema: str) -> None:
    with (
        EventStore(postgres_url, schema=schema, lock_timeout=1.0) as store,
        psycopg.connect(postgres_url) as held,
    ):
        head = store.head_position()
        _hold_append(held, store, "course:c1")  # holds course:c1's keys, uncommitted
        for i in range(20):  # other courses: never waiting for the held transaction
            store.append(
                _tagged(f"course:other{i}"), condition=_condition(f"course:other{i}", head)
            )
        with pytest.raises(BackendError, match="lock_timeout"):  # the held key does wait
            store.append(_tagged("course:c1"), condition=_condition("course:c1", head))
        held.rollback()
        store.append(_tagged("course:c1"), condition=_condition("course:c1", head))


def test_a_written_tag_blocks_a_waiting_condition_which_then_fails(
    postgres_url: str, schema: str
) -> None:
    with (
        EventStore(postgres_url, schema=schema) as store,
        psycopg.connect(postgres_url) as held,
    ):
        head = store.head_position()
        _hold_append(held, store, "course:c1")
        _waits_for_the_held_append_then_fails(
            postgres_url, store, held, _condition("course:c1", head)
        )
        assert store.read_query(Query(QueryItem(tags=["student:s1"]))) == []


def test_a_condition_by_name_alone_waits_for_every_writer(postgres_url: str, schema: str) -> None:
    with (
        EventStore(postgres_url, schema=schema, lock_timeout=1.0) as store,
        psycopg.connect(postgres_url) as held,
    ):
        head = store.head_position()
        _hold_append(held, store, "anything")
        condition = AppendCondition(Query(QueryItem(names=["seat_taken"])), after=head)
        with pytest.raises(BackendError, match="lock_timeout"):
            store.append([("other", {})], condition=condition)
        held.commit()
        with pytest.raises(AppendConditionFailed):
            store.append([("other", {})], condition=condition)


def _hold_lean_append(conn: psycopg.Connection, store: EventStore, tag: str) -> None:
    """Like _hold_append, through the lean ``append_tagged`` (migration 011)."""
    params = tagged_params(stream_key(f"held-{tag}"), _seat_taken(tag), None, False, None, MAX_KEYS)
    assert params is not None
    conn.execute(store.backend.sql.append_tagged, params)  # type: ignore[attr-defined]


def test_a_lean_append_blocks_a_condition_of_several_items_which_then_fails(
    postgres_url: str, schema: str
) -> None:
    """The lean call and the general one take the same keys: a condition of two items
    (append_conditional) waits for an uncommitted append_tagged, then sees it."""
    with (
        EventStore(postgres_url, schema=schema) as store,
        psycopg.connect(postgres_url) as held,
    ):
        head = store.head_position()
        _hold_lean_append(held, store, "course:c1")
        condition = AppendCondition(
            Query(QueryItem(tags=["course:c1"]), QueryItem(tags=["student:s1"])), after=head
        )
        _waits_for_the_held_append_then_fails(postgres_url, store, held, condition)


def test_the_lean_call_takes_one_event_and_at_most_one_tagged_item() -> None:
    new = _seat_taken("b", "a")
    key = stream_key("s")
    plain = tagged_params(key, new, 3, True, None, MAX_KEYS)
    assert plain is not None
    assert plain[8] == ["a", "b"]  # the event's tags, sorted
    assert plain[10:] == (None, None, None, None, None)  # no condition
    one = AppendCondition(Query(QueryItem(names=["seat_taken"], tags=["y", "x"])), after=7)
    params = tagged_params(key, new, None, False, one, MAX_KEYS)
    assert params is not None
    assert params[10:] == (7, "x", ["x", "y"], ["seat_taken"], ["seat_taken\x1fx"])
    two = AppendCondition(Query(QueryItem(tags=["x"]), QueryItem(tags=["y"])))
    assert tagged_params(key, new, None, False, two, MAX_KEYS) is None
    by_name = AppendCondition(Query(QueryItem(names=["seat_taken"])))
    assert tagged_params(key, new, None, False, by_name, MAX_KEYS) is None
    assert tagged_params(key, new, None, False, one, 3) is None  # too many keys
    imported = replace(new, recorded_at=datetime.now(UTC))
    assert tagged_params(key, imported, None, False, None, MAX_KEYS) is None
