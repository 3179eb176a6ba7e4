"""Contract: the log methods the store's reads do not reach, called on ``store.backend``.

``count_after`` (how far a subscription is behind), ``stream_totals``
(``conduit stats``), ``first_position_since``
(replaying a read model from a point in time), ``read_event`` (one event by
its id) and ``rewrite_events`` (``conduit migrate-events``). Events are
pushed through the store, so that they are valid and encoded as in use.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conduit import Event, EventStore, codec, new_id
from conduit.backends.base import EventRewrite
from conduit.events import stream_key
from conduit.subscriptions.partitions import Partition, partition_of

__all__ = [
    "test_count_after_a_partition_counts_only_its_streams",
    "test_count_after_a_position_counts_the_events_after_it",
    "test_count_after_the_head_is_zero",
    "test_count_after_with_names_counts_only_those_names",
    "test_count_after_with_no_names_is_zero",
    "test_first_position_since_after_the_last_event_is_none",
    "test_first_position_since_before_the_first_event_is_its_position",
    "test_first_position_since_in_an_empty_store_is_none",
    "test_first_position_since_is_the_first_event_recorded_at_or_after_it",
    "test_read_all_of_a_partition_pages_through_only_its_streams_in_log_order",
    "test_read_event_of_an_unknown_id_is_none",
    "test_read_event_returns_the_recorded_event",
    "test_rewrite_events_keeps_id_stream_version_position_and_time",
    "test_rewrite_events_replaces_name_data_and_metadata",
    "test_rewrite_events_skips_ids_not_recorded",
    "test_rewrite_events_with_no_changes_rewrites_nothing",
    "test_rewritten_events_read_back_rewritten_on_every_path",
    "test_stream_totals_count_streams_and_their_events",
    "test_stream_totals_of_an_empty_store_are_zero",
]


def _pushed(store: EventStore) -> list[Event]:
    """Six events of two names in three streams, one push each (each its own time)."""
    names = ["item_added", "item_removed"]
    return [store.push(names[n % 2], f"cart-{n % 3}", {"n": n}) for n in range(6)]


def _rewrite(event: Event, name: str, data: object, metadata: object) -> EventRewrite:
    return EventRewrite(
        event.id, name, codec.encode(data), codec.encode(metadata, field="metadata")
    )


# -- stream_totals ---------------------------------------------------------------


def test_stream_totals_count_streams_and_their_events(store: EventStore) -> None:
    _pushed(store)
    store.push_many("order-1", [("order_placed", {}), ("item_added", {})])
    assert store.backend.stream_totals() == (4, 8)


def test_stream_totals_of_an_empty_store_are_zero(store: EventStore) -> None:
    assert store.backend.stream_totals() == (0, 0)


# -- count_after ---------------------------------------------------------------


def test_count_after_a_position_counts_the_events_after_it(store: EventStore) -> None:
    events = _pushed(store)
    backend = store.backend
    assert backend.count_after(0, names=None) == 6
    for index, event in enumerate(events):
        assert backend.count_after(event.position, names=None) == 5 - index


def test_count_after_the_head_is_zero(store: EventStore) -> None:
    assert store.backend.count_after(0, names=None) == 0
    _pushed(store)
    assert store.backend.count_after(store.head_position(), names=None) == 0


def test_count_after_with_names_counts_only_those_names(store: EventStore) -> None:
    events = _pushed(store)
    backend = store.backend
    assert backend.count_after(0, names=["item_removed"]) == 3
    assert backend.count_after(events[1].position, names=["item_added"]) == 2
    assert backend.count_after(0, names=["item_added", "item_removed"]) == 6
    assert backend.count_after(0, names=["never_pushed"]) == 0


def test_count_after_with_no_names_is_zero(store: EventStore) -> None:
    _pushed(store)
    assert store.backend.count_after(0, names=[]) == 0


# -- first_position_since ----------------------------------------------------------


def test_first_position_since_in_an_empty_store_is_none(store: EventStore) -> None:
    assert store.backend.first_position_since(datetime(2000, 1, 1, tzinfo=UTC)) is None


def test_first_position_since_is_the_first_event_recorded_at_or_after_it(
    store: EventStore,
) -> None:
    events = _pushed(store)
    for event in events:
        expected = min(e.position for e in events if e.recorded_at >= event.recorded_at)
        assert store.backend.first_position_since(event.recorded_at) == expected
        just_after = event.recorded_at + timedelta(microseconds=1)
        later = [e.position for e in events if e.recorded_at >= just_after]
        assert store.backend.first_position_since(just_after) == (min(later) if later else None)


def test_first_position_since_before_the_first_event_is_its_position(
    store: EventStore,
) -> None:
    events = _pushed(store)
    since = events[0].recorded_at - timedelta(days=365)
    assert store.backend.first_position_since(since) == events[0].position


def test_first_position_since_after_the_last_event_is_none(store: EventStore) -> None:
    events = _pushed(store)
    since = max(e.recorded_at for e in events) + timedelta(microseconds=1)
    assert store.backend.first_position_since(since) is None


# -- read_event --------------------------------------------------------------------


def test_read_event_returns_the_recorded_event(store: EventStore) -> None:
    events = _pushed(store)
    for event in events:
        assert store.backend.read_event(event.id) == event


def test_read_event_of_an_unknown_id_is_none(store: EventStore) -> None:
    _pushed(store)
    assert store.backend.read_event(new_id()) is None


# -- rewrite_events ----------------------------------------------------------------


def test_rewrite_events_replaces_name_data_and_metadata(store: EventStore) -> None:
    events = _pushed(store)
    target = events[2]
    count = store.backend.rewrite_events(
        [_rewrite(target, "item_put_back", {"n": 2, "v": 2}, {"by": "migration"})]
    )
    assert count == 1
    found = store.backend.read_event(target.id)
    assert found is not None
    assert (found.name, found.data, found.metadata) == (
        "item_put_back",
        {"n": 2, "v": 2},
        {"by": "migration"},
    )


def test_rewrite_events_keeps_id_stream_version_position_and_time(store: EventStore) -> None:
    events = _pushed(store)
    store.backend.rewrite_events([_rewrite(e, "item_counted", {"m": 1}, {}) for e in events])
    log = list(store.read_all())
    assert [(e.id, e.stream_id, e.version, e.position, e.recorded_at) for e in log] == [
        (e.id, e.stream_id, e.version, e.position, e.recorded_at) for e in events
    ]


def test_rewrite_events_skips_ids_not_recorded(store: EventStore) -> None:
    events = _pushed(store)
    stranger = EventRewrite(new_id(), "ghost", "{}", "{}")
    count = store.backend.rewrite_events([stranger, _rewrite(events[0], "item_counted", {}, {})])
    assert count == 1
    assert store.backend.read_event(stranger.id) is None
    assert [e.name for e in store.read_all()] == ["item_counted", *[e.name for e in events[1:]]]


def test_rewrite_events_with_no_changes_rewrites_nothing(store: EventStore) -> None:
    events = _pushed(store)
    assert store.backend.rewrite_events([]) == 0
    assert list(store.read_all()) == events


def test_rewritten_events_read_back_rewritten_on_every_path(store: EventStore) -> None:
    events = _pushed(store)
    target = events[4]  # cart-1, version 2
    store.backend.rewrite_events([_rewrite(target, "item_weighed", {"grams": 5}, {"v": 2})])
    backend = store.backend

    def rewritten(event: Event) -> bool:
        return (event.id, event.name, event.data, event.metadata) == (
            target.id,
            "item_weighed",
            {"grams": 5},
            {"v": 2},
        )

    page = backend.read_stream(
        stream_key(target.stream_id), start=None, backwards=False, since=None, limit=10
    )
    assert [rewritten(e) for e in page] == [False, True]
    assert [rewritten(e) for e in backend.read_all(after=0, names=None, limit=10)] == [
        e.id == target.id for e in events
    ]
    assert [e.id for e in backend.read_all(after=0, names=["item_weighed"], limit=10)] == [
        target.id
    ]
    assert backend.count_after(0, names=["item_weighed"]) == 1
    assert backend.count_after(0, names=["item_added"]) == 2


# -- partitions (engines with ``partitioned_reads = True``) ----------------------


def _partitioned(store: EventStore) -> list[Event]:
    if not getattr(store.backend, "partitioned_reads", False):
        pytest.skip("the engine does not read by partition (partitioned_reads)")
    ids: list[str | uuid.UUID] = [f"order-{n}" for n in range(9)] + [new_id() for _ in range(3)]
    return [store.push("item_added", ids[n % len(ids)], {"n": n}) for n in range(36)]


def test_read_all_of_a_partition_pages_through_only_its_streams_in_log_order(
    store: EventStore,
) -> None:
    events = _partitioned(store)
    backend: Any = store.backend  # partition= is not in the Backend protocol
    seen: list[Event] = []
    for index in range(3):
        partition = Partition(index, 3)
        expected = [e for e in events if partition_of(e.stream_id, 3) == index]
        found: list[Event] = []
        after = 0
        while True:
            page = backend.read_all(after=after, names=None, limit=4, partition=partition)
            assert len(page) <= 4
            found.extend(page)
            if len(page) < 4:
                break
            after = page[-1].position
        assert [e.id for e in found] == [e.id for e in expected]
        seen.extend(found)
    assert sorted(e.position for e in seen) == [e.position for e in events]


def test_count_after_a_partition_counts_only_its_streams(store: EventStore) -> None:
    events = _partitioned(store)
    middle = events[len(events) // 2].position
    for index in range(4):
        expected = [
            e for e in events if e.position > middle and partition_of(e.stream_id, 4) == index
        ]
        backend: Any = store.backend
        counted = backend.count_after(middle, names=None, partition=Partition(index, 4))
        assert counted == len(expected)
