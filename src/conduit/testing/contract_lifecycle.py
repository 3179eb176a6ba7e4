"""Contract: deleting and truncating streams, stream limits, scavenging, the audit stream.

Through the store, as users call it. Soft delete hides a stream until its next
push, which continues at the next version; hard delete removes its events and
tombstones its id; truncation removes events below a version; limits hide
events from reads until the scavenger removes them; every change is an event
of ``conduit.audit``; positions are never given twice.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from conduit import Event, EventStore, InvalidArgument, StreamDeleted, WrongExpectedVersion, new_id
from conduit.events import Snapshot, stream_key
from conduit.lifecycle import AUDIT_STREAM
from conduit.testing.waits import eventually

PERSON = "app.people.Person"

__all__ = [
    "test_a_push_after_a_soft_delete_continues_at_the_next_version",
    "test_a_push_to_a_hard_deleted_stream_raises_stream_deleted",
    "test_a_push_to_several_streams_one_of_them_hard_deleted_writes_nothing",
    "test_a_scavenge_stopped_early_resumes_where_it_stopped",
    "test_conduit_streams_cannot_be_deleted_truncated_or_limited",
    "test_delete_with_a_stale_expected_version_raises_and_deletes_nothing",
    "test_deletes_drop_the_streams_snapshots",
    "test_deleting_records_a_stream_deleted_event_in_the_audit_stream",
    "test_hard_delete_removes_the_events_from_the_global_log",
    "test_max_age_hides_older_events_from_reads",
    "test_max_count_keeps_only_the_last_events_in_reads",
    "test_positions_are_never_given_again_after_removals",
    "test_scavenge_removes_what_reads_hide_and_keeps_the_rest",
    "test_soft_delete_hides_the_stream_and_leaves_its_events_in_the_log",
    "test_stream_metadata_says_what_the_store_keeps_about_a_stream",
    "test_tombstones_list_deleted_streams",
    "test_truncate_past_the_next_version_is_refused",
    "test_truncate_removes_the_events_below_a_version",
    "test_writes_to_a_hard_deleted_stream_raise_stream_deleted",
]


def _fill(store: EventStore, stream: str, count: int) -> list[int]:
    return [store.push("noted", stream, {"n": n}).position for n in range(1, count + 1)]


def _log_of(store: EventStore, stream: str) -> list[int]:
    return [e.version for e in store.read_all() if e.stream_id == stream]


def test_soft_delete_hides_the_stream_and_leaves_its_events_in_the_log(
    store: EventStore,
) -> None:
    _fill(store, "doomed", 3)
    _fill(store, "kept", 1)
    store.delete_stream("doomed")
    assert store.get("doomed") == []
    assert list(store.read("doomed", backwards=True)) == []
    assert [info.stream_id for info in store.streams()] == [AUDIT_STREAM, "kept"]
    assert store.stream_version("doomed") == 3
    assert _log_of(store, "doomed") == [1, 2, 3]  # until a scavenge
    assert store.backend.stream_totals() == (2, 1 + 1)  # kept and the audit stream


def test_a_push_after_a_soft_delete_continues_at_the_next_version(store: EventStore) -> None:
    _fill(store, "reborn", 2)
    store.delete_stream("reborn")
    with pytest.raises(WrongExpectedVersion):
        store.push("noted", "reborn", {"n": 9}, expected_version=0)
    again = store.push("noted", "reborn", {"n": 3}, expected_version=2)
    assert again.version == 3
    assert [(e.version, e.data) for e in store.get("reborn")] == [(3, {"n": 3})]
    assert "reborn" in [info.stream_id for info in store.streams()]
    found = store.stream_metadata("reborn")
    assert found is not None
    assert found.deleted is None


def test_hard_delete_removes_the_events_from_the_global_log(store: EventStore) -> None:
    _fill(store, "gone", 3)
    _fill(store, "kept", 2)
    store.delete_stream("gone", hard=True)
    assert store.get("gone") == []
    assert _log_of(store, "gone") == []
    assert _log_of(store, "kept") == [1, 2]
    assert "gone" not in [info.stream_id for info in store.streams()]


def test_a_push_to_a_hard_deleted_stream_raises_stream_deleted(store: EventStore) -> None:
    _fill(store, "gone", 2)
    store.delete_stream("gone", hard=True)
    head = store.head_position()
    for expected in (None, 2, 0, 7):
        with pytest.raises(StreamDeleted) as raised:
            store.push("noted", "gone", {}, expected_version=expected)
        assert raised.value.stream_id == "gone"
    with pytest.raises(StreamDeleted):
        store.push_many("gone", [("noted", {}), ("noted", {})])
    assert store.head_position() == head
    assert store.get("gone") == []


def test_a_push_to_several_streams_one_of_them_hard_deleted_writes_nothing(
    store: EventStore,
) -> None:
    _fill(store, "gone", 1)
    store.delete_stream("gone", hard=True)
    head = store.head_position()
    with pytest.raises(StreamDeleted):
        store.push_many({"alive": [("noted", {})], "gone": [("noted", {})]})
    with pytest.raises(StreamDeleted):
        store.push_many({"gone": [("noted", {})], "alive": [("noted", {})]})
    assert store.head_position() == head
    assert store.get("alive") == []


def test_writes_to_a_hard_deleted_stream_raise_stream_deleted(store: EventStore) -> None:
    _fill(store, "gone", 2)
    store.delete_stream("gone", hard=True)
    with pytest.raises(StreamDeleted):
        store.delete_stream("gone")
    with pytest.raises(StreamDeleted):
        store.delete_stream("gone", hard=True)
    with pytest.raises(StreamDeleted):
        store.truncate_stream("gone", 2)
    with pytest.raises(StreamDeleted):
        store.set_stream_metadata("gone", max_count=1)


def test_delete_with_a_stale_expected_version_raises_and_deletes_nothing(
    store: EventStore,
) -> None:
    _fill(store, "contested", 3)
    head = store.head_position()
    for hard in (False, True):
        with pytest.raises(WrongExpectedVersion) as raised:
            store.delete_stream("contested", expected_version=2, hard=hard)
        assert (raised.value.expected, raised.value.actual) == (2, 3)
    assert [e.version for e in store.get("contested")] == [1, 2, 3]
    assert store.head_position() == head  # no audit event either
    store.delete_stream("contested", expected_version=3)
    assert store.get("contested") == []


def test_deleting_records_a_stream_deleted_event_in_the_audit_stream(store: EventStore) -> None:
    person = new_id()
    store.push("registered", person, {})
    store.push("renamed", person, {})
    audit = store.delete_stream(person, hard=True, by="admin")
    assert audit.stream_id == AUDIT_STREAM
    assert audit.name == "stream_deleted"
    assert audit.data == {"stream_id": str(person), "hard": True, "version": 2}
    assert audit.metadata == {"user": "admin"}
    assert store.get(AUDIT_STREAM) == [audit]
    last = list(store.read_all())[-1]
    assert last.id == audit.id  # in the log, for projections: on_stream_deleted


def test_deletes_drop_the_streams_snapshots(store: EventStore) -> None:
    for stream, hard in (("soft", False), ("hard", True)):
        _fill(store, stream, 2)
        store.backend.save_snapshot(stream_key(stream), Snapshot(PERSON, 2, 1, '{"n": 2}'))
        store.delete_stream(stream, hard=hard)
        assert store.backend.load_snapshot(stream_key(stream), PERSON) is None, stream
    _fill(store, "cut", 3)
    store.backend.save_snapshot(stream_key("cut"), Snapshot(PERSON, 2, 1, '{"n": 2}'))
    store.truncate_stream("cut", 3)  # a snapshot stands in for the events removed
    assert store.backend.load_snapshot(stream_key("cut"), PERSON) is not None


def test_truncate_removes_the_events_below_a_version(store: EventStore) -> None:
    positions = _fill(store, "long", 5)
    audit = store.truncate_stream("long", 4, by="ops")
    assert audit.name == "stream_truncated"
    assert audit.data == {"stream_id": "long", "before_version": 4, "version": 5}
    assert [e.version for e in store.get("long")] == [4, 5]
    assert [e.position for e in store.get("long")] == positions[3:]
    assert _log_of(store, "long") == [4, 5]
    assert store.stream_version("long") == 5
    assert store.push("noted", "long", {}, expected_version=5).version == 6
    store.truncate_stream("long", 2)  # never brings events back
    assert [e.version for e in store.get("long")] == [4, 5, 6]


def test_truncate_past_the_next_version_is_refused(store: EventStore) -> None:
    _fill(store, "short", 2)
    with pytest.raises(InvalidArgument):
        store.truncate_stream("short", 4)
    with pytest.raises(InvalidArgument):
        store.truncate_stream("short", 0)
    store.truncate_stream("short", 3)  # every event, the version kept
    assert store.get("short") == []
    assert store.stream_version("short") == 2


def test_max_count_keeps_only_the_last_events_in_reads(store: EventStore) -> None:
    _fill(store, "capped", 5)
    store.set_stream_metadata("capped", max_count=2)
    assert [e.version for e in store.get("capped")] == [4, 5]
    assert [e.version for e in store.read("capped", backwards=True)] == [5, 4]
    store.push("noted", "capped", {})
    assert [e.version for e in store.get("capped")] == [5, 6]
    assert _log_of(store, "capped") == [1, 2, 3, 4, 5, 6]  # until a scavenge
    store.set_stream_metadata("capped", max_count=None)
    assert [e.version for e in store.get("capped")] == [1, 2, 3, 4, 5, 6]


def test_max_age_hides_older_events_from_reads(store: EventStore) -> None:
    _fill(store, "aging", 3)
    store.set_stream_metadata("aging", max_age=timedelta(days=1))
    assert [e.version for e in store.get("aging")] == [1, 2, 3]
    store.set_stream_metadata("aging", max_age=timedelta(microseconds=1))
    assert store.get("aging") == []
    assert store.stream_version("aging") == 3


def test_stream_metadata_says_what_the_store_keeps_about_a_stream(store: EventStore) -> None:
    assert store.stream_metadata("unknown") is None
    _fill(store, "known", 3)
    store.set_stream_metadata("known", max_age=timedelta(hours=2), max_count=10)
    store.truncate_stream("known", 2)
    found = store.stream_metadata("known")
    assert found is not None
    assert (found.stream_id, found.version, found.deleted, found.truncated_before) == (
        "known",
        3,
        None,
        2,
    )
    assert (found.max_age, found.max_count) == (timedelta(hours=2), 10)
    store.delete_stream("known", hard=True)
    found = store.stream_metadata("known")
    assert found is not None
    assert (found.deleted, found.version) == ("hard", 3)


def test_tombstones_list_deleted_streams(store: EventStore) -> None:
    for stream in ("c", "a", "b", "d"):
        _fill(store, stream, 1)
    store.delete_stream("c", hard=True)
    store.delete_stream("a")
    store.delete_stream("d", hard=True)
    assert [(t.stream_id, t.deleted) for t in store.tombstones()] == [
        ("a", "soft"),
        ("c", "hard"),
        ("d", "hard"),
    ]
    assert [t.stream_id for t in store.tombstones(after="a", limit=1)] == ["c"]


def test_conduit_streams_cannot_be_deleted_truncated_or_limited(store: EventStore) -> None:
    _fill(store, "x", 1)
    store.delete_stream("x")
    with pytest.raises(InvalidArgument):
        store.delete_stream(AUDIT_STREAM)
    with pytest.raises(InvalidArgument):
        store.truncate_stream(AUDIT_STREAM, 2)
    with pytest.raises(InvalidArgument):
        store.set_stream_metadata(AUDIT_STREAM, max_count=1)
    assert len(store.get(AUDIT_STREAM)) == 1


def test_scavenge_removes_what_reads_hide_and_keeps_the_rest(store: EventStore) -> None:
    _fill(store, "soft", 2)
    _fill(store, "capped", 4)
    _fill(store, "truncated", 3)
    _fill(store, "aged", 2)
    kept = _fill(store, "kept", 2)
    store.delete_stream("soft")
    store.set_stream_metadata("capped", max_count=1)
    store.truncate_stream("truncated", 3)
    store.set_stream_metadata("aged", max_age=timedelta(microseconds=1))
    before = {e.position: e for e in store.read_all()}
    report = store.scavenge(batch_size=3)
    assert report.finished
    assert report.removed == 2 + 3 + 2
    scavenged = store.get(AUDIT_STREAM)[-1]

    # PostgreSQL: a transaction open elsewhere on the server may hold the log's
    # reader horizon back a while; the audit event is read once it has passed.
    def logged() -> dict[int, Event]:
        found = {e.position: e for e in store.read_all()}
        return found if scavenged.position in found else {}

    after = eventually(logged, "the events_scavenged audit event is in the log")
    assert set(after) - set(before) == {scavenged.position}
    gone = set(before) - set(after)
    assert len(gone) == report.removed
    assert all(before[p] == after[p] for p in before if p in after)  # positions unchanged
    assert [e.position for e in store.get("kept")] == kept
    assert [e.version for e in store.get("capped")] == [4]
    assert _log_of(store, "capped") == [4]
    assert _log_of(store, "soft") == []
    assert scavenged.name == "events_scavenged"
    assert scavenged.data["removed"] == report.removed
    assert store.scavenge().removed == 0


def test_a_scavenge_stopped_early_resumes_where_it_stopped(store: EventStore) -> None:
    _fill(store, "capped", 12)
    store.set_stream_metadata("capped", max_count=1)
    seen: list[int] = []
    first = store.scavenge(
        batch_size=4, max_batches=2, progress=lambda b, head: seen.append(b.examined)
    )
    assert not first.finished
    assert (first.examined, first.removed, seen) == (8, 8, [4, 4])
    second = store.scavenge(batch_size=4)
    assert second.finished
    assert second.removed == 3
    assert [e.version for e in store.get("capped")] == [12]


def test_positions_are_never_given_again_after_removals(store: EventStore) -> None:
    last = max(_fill(store, "tail", 4))
    store.delete_stream("tail", hard=True)  # the log's last events removed...
    store.truncate_stream(AUDIT_STREAM.replace("conduit.", "x."), 1)  # a stream of none
    store.set_stream_metadata("x.audit", max_count=1)
    head = store.head_position()
    store.scavenge()
    again = store.push("noted", "fresh", {})
    assert again.position > max(last, head)
