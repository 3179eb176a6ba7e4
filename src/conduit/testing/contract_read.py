"""Contract: reading streams and the global log, listing streams."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from conduit import Event, EventStore, InvalidArgument, StreamInfo, new_id

__all__ = [
    "test_head_position_is_the_position_of_the_last_event",
    "test_head_position_of_an_empty_store_is_zero",
    "test_read_all_after_any_position_resumes_right_after_it",
    "test_read_all_after_the_head_gives_nothing",
    "test_read_all_backwards_before_a_position_pages_down_from_it",
    "test_read_all_backwards_gives_every_event_newest_first",
    "test_read_all_backwards_stops_at_after",
    "test_read_all_backwards_with_names_and_correlation",
    "test_read_all_before_a_position_stops_before_it",
    "test_read_all_before_must_be_a_position",
    "test_read_all_events_equal_the_pushed_ones",
    "test_read_all_keeps_each_streams_version_order",
    "test_read_all_names_filter_accepts_camel_case",
    "test_read_all_names_filter_keeps_only_those_names",
    "test_read_all_pages_through_a_long_log_once_in_order",
    "test_read_all_respects_limit",
    "test_read_all_returns_every_event_once_in_commit_order",
    "test_read_all_with_empty_names_gives_nothing",
    "test_read_all_with_names_pages_through_sparse_matches",
    "test_read_backwards",
    "test_read_backwards_from_version",
    "test_read_from_version",
    "test_read_from_version_past_the_end_gives_nothing",
    "test_read_limit",
    "test_read_limit_across_pages",
    "test_read_pages_a_long_stream_once_in_order",
    "test_read_since_a_naive_datetime_raises",
    "test_read_since_another_timezone_means_the_same_instant",
    "test_read_since_in_the_future_gives_nothing",
    "test_read_since_just_after_the_last_event_gives_nothing",
    "test_read_since_keeps_events_recorded_at_or_after_it",
    "test_read_unknown_stream_gives_nothing",
    "test_stream_version_counts_the_streams_events",
    "test_stream_version_of_an_unknown_stream_is_zero",
    "test_streams_after_resumes_after_that_id",
    "test_streams_are_ordered_by_id_code_points",
    "test_streams_limit",
    "test_streams_lists_every_stream_with_its_version",
    "test_streams_page_through_many_streams",
    "test_streams_prefix_is_literal_and_case_sensitive",
    "test_streams_prefix_keeps_only_matching_ids",
]


def _fill(store: EventStore, stream_id: str, count: int) -> list[Event]:
    return store.push_many(stream_id, [("step_taken", {"n": n}) for n in range(1, count + 1)])


def _versions(events: Iterable[Event]) -> list[int]:
    return [event.version for event in events]


def test_read_unknown_stream_gives_nothing(store: EventStore) -> None:
    _fill(store, "known", 2)
    assert list(store.read("unknown")) == []
    assert list(store.read("unknown", backwards=True)) == []


def test_read_from_version(store: EventStore) -> None:
    _fill(store, "s", 5)
    assert _versions(store.read("s", from_version=3)) == [3, 4, 5]


def test_read_from_version_past_the_end_gives_nothing(store: EventStore) -> None:
    _fill(store, "s", 3)
    assert list(store.read("s", from_version=4)) == []


def test_read_limit(store: EventStore) -> None:
    _fill(store, "s", 5)
    assert _versions(store.read("s", limit=2)) == [1, 2]
    assert _versions(store.read("s", from_version=2, limit=2)) == [2, 3]
    assert list(store.read("s", limit=0)) == []


def test_read_backwards(store: EventStore) -> None:
    events = _fill(store, "s", 5)
    assert list(store.read("s", backwards=True)) == events[::-1]
    assert _versions(store.read("s", backwards=True, limit=2)) == [5, 4]


def test_read_backwards_from_version(store: EventStore) -> None:
    _fill(store, "s", 5)
    assert _versions(store.read("s", backwards=True, from_version=3)) == [3, 2, 1]
    assert _versions(store.read("s", backwards=True, from_version=9)) == [5, 4, 3, 2, 1]


def test_read_pages_a_long_stream_once_in_order(store: EventStore) -> None:
    store.page_size = 3
    nine = _fill(store, "s", 9)
    assert list(store.read("s")) == nine  # a multiple of the page size
    pushed = nine + _fill(store, "s", 2)
    assert _versions(pushed) == list(range(1, 12))
    assert list(store.read("s")) == pushed
    assert list(store.read("s", backwards=True)) == pushed[::-1]
    assert _versions(store.read("s", from_version=4)) == list(range(4, 12))
    assert _versions(store.read("s", backwards=True, from_version=7)) == list(range(7, 0, -1))


def test_read_limit_across_pages(store: EventStore) -> None:
    store.page_size = 3
    _fill(store, "s", 11)
    assert _versions(store.read("s", limit=7)) == list(range(1, 8))
    assert _versions(store.read("s", from_version=4, limit=5)) == [4, 5, 6, 7, 8]
    assert _versions(store.read("s", backwards=True, limit=7)) == list(range(11, 4, -1))


def test_read_since_keeps_events_recorded_at_or_after_it(store: EventStore) -> None:
    store.page_size = 2
    events = [store.push("tick", "s", {"n": n}) for n in range(6)]
    for event in events:
        since = event.recorded_at
        expected = [e for e in events if e.recorded_at >= since]
        assert list(store.read("s", since=since)) == expected
        assert event in expected
        backwards = [e for e in events[::-1] if e.recorded_at >= since]
        assert list(store.read("s", since=since, backwards=True)) == backwards


def test_read_since_just_after_the_last_event_gives_nothing(store: EventStore) -> None:
    events = [store.push("tick", "s", {}) for _ in range(3)]
    since = events[-1].recorded_at + timedelta(microseconds=1)
    assert list(store.read("s", since=since)) == []


def test_read_since_another_timezone_means_the_same_instant(store: EventStore) -> None:
    events = [store.push("tick", "s", {}) for _ in range(3)]
    since = events[1].recorded_at
    elsewhere = since.astimezone(timezone(timedelta(hours=-5, minutes=-30)))
    assert list(store.read("s", since=elsewhere)) == list(store.read("s", since=since))


def test_read_since_in_the_future_gives_nothing(store: EventStore) -> None:
    _fill(store, "s", 3)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert list(store.read("s", since=tomorrow)) == []


def test_read_since_a_naive_datetime_raises(store: EventStore) -> None:
    _fill(store, "s", 1)
    with pytest.raises(InvalidArgument) as caught:
        store.read("s", since=datetime(2020, 1, 1))
    assert caught.value.field == "since"


def test_read_all_returns_every_event_once_in_commit_order(store: EventStore) -> None:
    pushed: list[Event] = []
    for n in range(4):
        pushed.append(store.push("a_happened", "a", {"n": n}))
        pushed.extend(store.push_many(f"b{n % 2}", [("b_happened", {}), ("c_happened", {})]))
    log = list(store.read_all())
    assert [event.id for event in log] == [event.id for event in pushed]
    positions = [event.position for event in log]
    assert all(p < q for p, q in itertools.pairwise(positions))
    assert positions[0] >= 1


def test_read_all_events_equal_the_pushed_ones(store: EventStore) -> None:
    pushed = [
        store.push("thing_happened", new_id(), {"n": 1}, metadata={"m": 2}),
        store.push("thing_happened", "text", {"n": 3}),
    ]
    assert list(store.read_all()) == pushed


def test_read_all_keeps_each_streams_version_order(store: EventStore) -> None:
    for n in range(5):
        store.push("thing_happened", f"s{n % 3}", {})
    seen: dict[object, list[int]] = {}
    for event in store.read_all():
        seen.setdefault(event.stream_id, []).append(event.version)
    assert seen == {"s0": [1, 2], "s1": [1, 2], "s2": [1]}


def test_read_all_after_any_position_resumes_right_after_it(store: EventStore) -> None:
    store.page_size = 3
    for n in range(4):
        store.push_many(f"s{n}", [("thing_happened", {}) for _ in range(n + 1)])
    log = list(store.read_all())
    assert len(log) == 10
    assert list(store.read_all(after=0)) == log
    for index, event in enumerate(log):
        assert list(store.read_all(after=event.position)) == log[index + 1 :]


def test_read_all_after_the_head_gives_nothing(store: EventStore) -> None:
    _fill(store, "s", 3)
    assert list(store.read_all(after=store.head_position())) == []


def test_read_all_pages_through_a_long_log_once_in_order(store: EventStore) -> None:
    store.page_size = 3
    pushed = [store.push("thing_happened", f"s{n % 4}", {"n": n}) for n in range(12)]
    assert list(store.read_all()) == pushed


def test_read_all_names_filter_keeps_only_those_names(store: EventStore) -> None:
    wanted = []
    for n in range(3):
        wanted.append(store.push("order_placed", f"o{n}", {}))
        store.push("order_paid", f"o{n}", {})
        wanted.append(store.push("order_shipped", f"o{n}", {}))
    assert list(store.read_all(names=["order_placed", "order_shipped"])) == wanted
    assert list(store.read_all(names=["never_pushed"])) == []


def test_read_all_names_filter_accepts_camel_case(store: EventStore) -> None:
    placed = store.push("order_placed", "o", {})
    store.push("order_paid", "o", {})
    assert list(store.read_all(names=["OrderPlaced"])) == [placed]


def test_read_all_with_empty_names_gives_nothing(store: EventStore) -> None:
    _fill(store, "s", 2)
    assert list(store.read_all(names=[])) == []


def test_read_all_with_names_pages_through_sparse_matches(store: EventStore) -> None:
    store.page_size = 2
    wanted = []
    for n in range(12):
        event = store.push("rare" if n % 4 == 0 else "common", "s", {"n": n})
        if n % 4 == 0:
            wanted.append(event)
    assert list(store.read_all(names=["rare"])) == wanted
    after = wanted[0].position
    assert list(store.read_all(names=["rare"], after=after)) == wanted[1:]


def test_read_all_respects_limit(store: EventStore) -> None:
    store.page_size = 3
    pushed = _fill(store, "s", 8)
    assert list(store.read_all(limit=5)) == pushed[:5]
    assert list(store.read_all(limit=0)) == []
    assert list(store.read_all(after=pushed[1].position, limit=2)) == pushed[2:4]


def test_read_all_backwards_gives_every_event_newest_first(store: EventStore) -> None:
    store.page_size = 3
    pushed = [store.push("thing_happened", f"s{n % 3}", {"n": n}) for n in range(10)]
    assert list(store.read_all(backwards=True)) == pushed[::-1]
    assert list(store.read_all(backwards=True, limit=4)) == pushed[:5:-1]


def test_read_all_backwards_before_a_position_pages_down_from_it(store: EventStore) -> None:
    store.page_size = 2
    pushed = _fill(store, "s", 9)
    below = pushed[6].position
    assert list(store.read_all(before=below, backwards=True)) == pushed[5::-1]
    assert list(store.read_all(before=below, backwards=True, limit=3)) == pushed[5:2:-1]
    assert list(store.read_all(before=pushed[0].position, backwards=True)) == []


def test_read_all_backwards_stops_at_after(store: EventStore) -> None:
    store.page_size = 2
    pushed = _fill(store, "s", 8)
    found = store.read_all(after=pushed[2].position, before=pushed[7].position, backwards=True)
    assert list(found) == pushed[6:2:-1]


def test_read_all_backwards_with_names_and_correlation(store: EventStore) -> None:
    store.page_size = 2
    rare, tagged = [], []
    for n in range(12):
        metadata = {"correlation_id": "c"} if n % 3 == 0 else {}
        event = store.push("rare" if n % 4 == 0 else "common", f"s{n % 2}", {}, metadata=metadata)
        if n % 4 == 0:
            rare.append(event)
        if n % 3 == 0:
            tagged.append(event)
    assert list(store.read_all(names=["rare", "never"], backwards=True)) == rare[::-1]
    assert list(store.read_all(names=["rare"], before=rare[2].position, backwards=True)) == [
        rare[1],
        rare[0],
    ]
    assert list(store.read_all(correlation_id="c", backwards=True, limit=3)) == tagged[:0:-1]


def test_read_all_before_a_position_stops_before_it(store: EventStore) -> None:
    store.page_size = 2
    pushed = _fill(store, "s", 6)
    assert list(store.read_all(before=pushed[4].position)) == pushed[:4]
    assert list(store.read_all(after=pushed[0].position, before=pushed[3].position)) == pushed[1:3]


def test_read_all_before_must_be_a_position(store: EventStore) -> None:
    for bad in (0, -1, "5", 1.0):
        with pytest.raises(InvalidArgument) as caught:
            list(store.read_all(before=bad, backwards=True))  # type: ignore[arg-type]
        assert caught.value.field == "before"


def test_stream_version_of_an_unknown_stream_is_zero(store: EventStore) -> None:
    assert store.stream_version("unknown") == 0
    assert store.stream_version(uuid.UUID(int=7)) == 0


def test_stream_version_counts_the_streams_events(store: EventStore) -> None:
    _fill(store, "s", 3)
    store.push("thing_happened", "s", {})
    _fill(store, "other", 2)
    assert store.stream_version("s") == 4


def test_streams_lists_every_stream_with_its_version(store: EventStore) -> None:
    uuid_id = uuid.UUID(int=1)
    _fill(store, "b", 2)
    _fill(store, "a", 1)
    store.push("thing_happened", uuid_id, {})
    assert list(store.streams()) == [
        StreamInfo(uuid_id, 1),  # "00000000-…" sorts before letters
        StreamInfo("a", 1),
        StreamInfo("b", 2),
    ]
    listed = list(store.streams())
    assert isinstance(listed[0].stream_id, uuid.UUID)


def test_streams_are_ordered_by_id_code_points(store: EventStore) -> None:
    ids = ["b", "B", "a", "_", "é", "Z", "a-1", "a1", "A"]
    for stream_id in ids:
        store.push("thing_happened", stream_id, {})
    assert [info.stream_id for info in store.streams()] == sorted(ids)


def test_streams_prefix_keeps_only_matching_ids(store: EventStore) -> None:
    for stream_id in ["order-1", "order-2", "orders", "person-1", "orde"]:
        store.push("thing_happened", stream_id, {})
    found = [info.stream_id for info in store.streams(prefix="order-")]
    assert found == ["order-1", "order-2"]


def test_streams_prefix_is_literal_and_case_sensitive(store: EventStore) -> None:
    for stream_id in ["a_1", "ab1", "a%", "aX", "A_1", "Order-1"]:
        store.push("thing_happened", stream_id, {})
    assert [info.stream_id for info in store.streams(prefix="a_")] == ["a_1"]
    assert [info.stream_id for info in store.streams(prefix="a%")] == ["a%"]
    assert [info.stream_id for info in store.streams(prefix="order")] == []


def test_streams_after_resumes_after_that_id(store: EventStore) -> None:
    for stream_id in ["a", "b", "c", "d"]:
        store.push("thing_happened", stream_id, {})
    assert [info.stream_id for info in store.streams(after="b")] == ["c", "d"]
    assert [info.stream_id for info in store.streams(after="bb")] == ["c", "d"]
    assert [info.stream_id for info in store.streams(after="d")] == []
    assert [info.stream_id for info in store.streams(prefix="c", after="a")] == ["c"]


def test_streams_limit(store: EventStore) -> None:
    for stream_id in ["a", "b", "c", "d"]:
        store.push("thing_happened", stream_id, {})
    assert [info.stream_id for info in store.streams(limit=2)] == ["a", "b"]
    assert [info.stream_id for info in store.streams(after="a", limit=2)] == ["b", "c"]
    assert list(store.streams(limit=0)) == []


def test_streams_page_through_many_streams(store: EventStore) -> None:
    store.page_size = 3
    ids = [f"s{n:02d}" for n in range(10)]
    for stream_id in reversed(ids):
        store.push("thing_happened", stream_id, {})
    assert [info.stream_id for info in store.streams()] == ids
    assert [info.stream_id for info in store.streams(prefix="s0")] == ids
    assert [info.stream_id for info in store.streams(limit=7)] == ids[:7]


def test_head_position_of_an_empty_store_is_zero(store: EventStore) -> None:
    assert store.head_position() == 0


def test_head_position_is_the_position_of_the_last_event(store: EventStore) -> None:
    _fill(store, "a", 2)
    last = store.push("thing_happened", "b", {})
    assert store.head_position() == last.position
