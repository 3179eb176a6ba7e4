"""Contract: appends under a condition (the Dynamic Consistency Boundary)."""

from __future__ import annotations

import pytest

from conduit import (
    AppendCondition,
    AppendConditionFailed,
    Conflict,
    EventStore,
    InvalidArgument,
    Query,
    QueryItem,
    WrongExpectedVersion,
    new_id,
)

__all__ = [
    "test_a_condition_after_none_fails_on_any_match",
    "test_a_condition_by_name_alone_fails_on_a_new_event_of_that_name",
    "test_a_condition_fails_when_a_matching_event_came_after_and_writes_nothing",
    "test_a_condition_failure_is_a_conflict_naming_the_position",
    "test_a_condition_holds_when_nothing_matching_came_after",
    "test_a_condition_ignores_events_that_do_not_match",
    "test_a_retried_conditional_append_returns_the_recorded_events",
    "test_an_append_may_write_several_streams_and_checks_their_versions",
    "test_events_without_a_stream_go_to_a_dcb_stream",
    "test_query_all_as_a_condition_fails_on_any_new_event",
    "test_the_appended_events_are_read_by_the_query",
    "test_written_tags_conflict_with_a_condition_that_reads_them",
]

COURSE = Query(QueryItem(tags=["course:c1"]))


def test_a_condition_holds_when_nothing_matching_came_after(store: EventStore) -> None:
    store.push("course_defined", "c1", {}, tags=["course:c1"])
    head = store.head_position()
    [event] = store.append(
        [{"name": "student_enrolled", "data": {}, "stream_id": "c1", "tags": ["course:c1"]}],
        condition=AppendCondition(COURSE, after=head),
    )
    assert event.stream_id == "c1"
    assert event.version == 2
    assert event.position > head


def test_a_condition_fails_when_a_matching_event_came_after_and_writes_nothing(
    store: EventStore,
) -> None:
    head = store.head_position()
    came = store.push("student_enrolled", "x", {}, tags=["course:c1", "student:s1"])
    before = list(store.read_all())
    with pytest.raises(AppendConditionFailed) as caught:
        store.append(
            [{"name": "student_enrolled", "data": {}, "tags": ["course:c1"]}],
            condition=AppendCondition(COURSE, after=head),
        )
    assert caught.value.position == came.position
    assert list(store.read_all()) == before


def test_a_condition_failure_is_a_conflict_naming_the_position(store: EventStore) -> None:
    came = store.push("a", "s", {}, tags=["course:c1"])
    with pytest.raises(Conflict) as caught:
        store.append([("b", {})], condition=AppendCondition(COURSE, after=0))
    assert isinstance(caught.value, AppendConditionFailed)
    assert str(came.position) in str(caught.value)


def test_a_condition_after_none_fails_on_any_match(store: EventStore) -> None:
    store.push("a", "s", {}, tags=["course:c1"])
    with pytest.raises(AppendConditionFailed):
        store.append([("b", {})], condition=AppendCondition(COURSE))
    unique = Query(QueryItem(tags=["username:kris"]))
    store.append(
        [{"name": "registered", "data": {}, "tags": ["username:kris"]}],
        condition=AppendCondition(unique),
    )
    with pytest.raises(AppendConditionFailed):
        store.append(
            [{"name": "registered", "data": {}, "tags": ["username:kris"]}],
            condition=AppendCondition(unique),
        )


def test_a_condition_ignores_events_that_do_not_match(store: EventStore) -> None:
    head = store.head_position()
    store.push("student_enrolled", "x", {}, tags=["course:c2"])
    store.push("course_defined", "y", {}, tags=["course:c1"])
    condition = AppendCondition(
        Query(QueryItem(names=["student_enrolled"], tags=["course:c1"])), after=head
    )
    assert len(store.append([("b", {})], condition=condition)) == 1


def test_a_condition_by_name_alone_fails_on_a_new_event_of_that_name(
    store: EventStore,
) -> None:
    head = store.head_position()
    condition = AppendCondition(Query(QueryItem(names=["account_opened"])), after=head)
    store.push("other", "s", {})
    store.append([("b", {})], condition=condition)
    came = store.push("account_opened", "t", {})
    with pytest.raises(AppendConditionFailed) as caught:
        store.append([("b", {})], condition=condition)
    assert caught.value.position == came.position


def test_query_all_as_a_condition_fails_on_any_new_event(store: EventStore) -> None:
    store.push("a", "s", {})
    head = store.head_position()
    store.append([("b", {})], condition=AppendCondition(Query.all(), after=head))
    with pytest.raises(AppendConditionFailed):
        store.append([("c", {})], condition=AppendCondition(Query.all(), after=head))


def test_events_without_a_stream_go_to_a_dcb_stream(store: EventStore) -> None:
    first_id = new_id()
    events = store.append(
        [
            {"name": "a", "data": {}, "id": first_id},
            {"name": "b", "data": {}, "stream_id": "named"},
            ("c", {}),
        ]
    )
    assert [(e.stream_id, e.version) for e in events] == [
        (f"dcb:{first_id}", 1),
        (f"dcb:{first_id}", 2),
        ("named", 1),
    ]
    positions = [e.position for e in events]
    assert positions == sorted(positions)


def test_an_append_may_write_several_streams_and_checks_their_versions(
    store: EventStore,
) -> None:
    store.push("x", "a", {})
    with pytest.raises(WrongExpectedVersion) as caught:
        store.append(
            [
                {"name": "y", "data": {}, "stream_id": "a"},
                {"name": "z", "data": {}, "stream_id": "b"},
            ],
            expected_versions={"a": 0, "b": 0},
        )
    assert caught.value.conflicts == (("a", 0, 1),)
    assert store.stream_version("b") == 0
    events = store.append(
        [{"name": "y", "data": {}, "stream_id": "a"}, {"name": "z", "data": {}, "stream_id": "b"}],
        expected_versions={"a": 1, "b": 0},
        condition=AppendCondition(COURSE, after=store.head_position()),
    )
    assert [(e.stream_id, e.version) for e in events] == [("a", 2), ("b", 1)]
    with pytest.raises(InvalidArgument):
        store.append([("y", {})], condition="nope")  # type: ignore[arg-type]


def test_a_retried_conditional_append_returns_the_recorded_events(store: EventStore) -> None:
    item = {"name": "registered", "data": {}, "tags": ["username:kris"], "id": new_id()}
    condition = AppendCondition(Query(QueryItem(tags=["username:kris"])), after=0)
    first = store.append([item], condition=condition)
    head = store.head_position()
    assert store.append([item], condition=condition) == first
    assert store.head_position() == head


def test_the_appended_events_are_read_by_the_query(store: EventStore) -> None:
    events = store.append(
        [{"name": "enrolled", "data": {"n": 1}, "tags": ["course:c1"]}], tags=["student:s1"]
    )
    assert store.read_query(COURSE) == events
    assert events[0].tags == frozenset({"course:c1", "student:s1"})


def test_written_tags_conflict_with_a_condition_that_reads_them(store: EventStore) -> None:
    # The overlap case: the second append's condition reads a tag the first
    # one's events carry, under a condition on another tag.
    head = store.head_position()
    store.append(
        [{"name": "enrolled", "data": {}, "tags": ["course:c1", "student:s1"]}],
        condition=AppendCondition(Query(QueryItem(tags=["student:s1"])), after=head),
    )
    with pytest.raises(AppendConditionFailed):
        store.append(
            [{"name": "enrolled", "data": {}, "tags": ["course:c1", "student:s2"]}],
            condition=AppendCondition(COURSE, after=head),
        )
