"""Contract: snapshots of entities, kept per stream and entity class, on ``store.backend``.

An engine keeps one snapshot per stream and ``class_name``: the one of the
highest version saved (a snapshot of the same version replaces the kept one,
so that an entity class whose ``snapshot_version`` changed gets a usable
snapshot again). Snapshot data is JSON text, kept exactly.
"""

from __future__ import annotations

from datetime import timedelta

from conduit import EventStore, codec, new_id
from conduit.events import Snapshot, stream_key

__all__ = [
    "test_a_newer_snapshot_replaces_an_older_one",
    "test_a_snapshot_is_kept_per_entity_class",
    "test_a_snapshot_is_kept_per_stream",
    "test_a_snapshot_of_a_uuid_stream_is_found_by_its_text",
    "test_a_snapshot_of_the_same_version_replaces_the_kept_one",
    "test_an_older_snapshot_does_not_replace_a_newer_one",
    "test_load_snapshot_of_a_stream_without_one_is_none",
    "test_saved_snapshot_loads_back_exactly",
]

PERSON = "app.people.Person"
ACCOUNT = "app.accounts.Account"


def _snapshot(
    version: int, state: dict[str, object], *, of: str = PERSON, schema: int = 1
) -> Snapshot:
    return Snapshot(of, version, schema, codec.encode(state, field="state"))


def _kept(store: EventStore, stream: str, of: str = PERSON) -> tuple[int, int, object] | None:
    found = store.backend.load_snapshot(stream_key(stream), of)
    return (
        None if found is None else (found.version, found.snapshot_version, codec.decode(found.data))
    )


def test_load_snapshot_of_a_stream_without_one_is_none(store: EventStore) -> None:
    assert store.backend.load_snapshot(stream_key("person-1"), PERSON) is None


def test_saved_snapshot_loads_back_exactly(store: EventStore) -> None:
    state = {"name": "Ada", "ratio": 0.1, "big": 2**62, "tags": ["a", "b"], "z": None, "a": True}
    saved = _snapshot(4, state, schema=2)
    store.backend.save_snapshot(stream_key("person-1"), saved)
    found = store.backend.load_snapshot(stream_key("person-1"), PERSON)
    assert found is not None
    assert (found.class_name, found.version, found.snapshot_version, found.data) == (
        PERSON,
        4,
        2,
        saved.data,
    )
    assert found.taken_at is not None
    assert found.taken_at.utcoffset() == timedelta(0)


def test_a_newer_snapshot_replaces_an_older_one(store: EventStore) -> None:
    key = stream_key("person-1")
    store.backend.save_snapshot(key, _snapshot(3, {"n": 3}))
    store.backend.save_snapshot(key, _snapshot(7, {"n": 7}))
    assert _kept(store, "person-1") == (7, 1, {"n": 7})


def test_an_older_snapshot_does_not_replace_a_newer_one(store: EventStore) -> None:
    key = stream_key("person-1")
    store.backend.save_snapshot(key, _snapshot(7, {"n": 7}))
    store.backend.save_snapshot(key, _snapshot(3, {"n": 3}))  # a slower writer, late
    assert _kept(store, "person-1") == (7, 1, {"n": 7})


def test_a_snapshot_of_the_same_version_replaces_the_kept_one(store: EventStore) -> None:
    key = stream_key("person-1")
    store.backend.save_snapshot(key, _snapshot(5, {"n": 5}, schema=1))
    store.backend.save_snapshot(key, _snapshot(5, {"name": "five"}, schema=2))
    assert _kept(store, "person-1") == (5, 2, {"name": "five"})


def test_a_snapshot_is_kept_per_entity_class(store: EventStore) -> None:
    key = stream_key("shared-1")
    store.backend.save_snapshot(key, _snapshot(9, {"person": 9}, of=PERSON))
    store.backend.save_snapshot(key, _snapshot(2, {"account": 2}, of=ACCOUNT))
    assert _kept(store, "shared-1", PERSON) == (9, 1, {"person": 9})
    assert _kept(store, "shared-1", ACCOUNT) == (2, 1, {"account": 2})
    assert _kept(store, "shared-1", "app.people.person") is None  # case-sensitive


def test_a_snapshot_is_kept_per_stream(store: EventStore) -> None:
    store.backend.save_snapshot(stream_key("person-1"), _snapshot(4, {"who": 1}))
    store.backend.save_snapshot(stream_key("person-2"), _snapshot(2, {"who": 2}))
    assert _kept(store, "person-1") == (4, 1, {"who": 1})
    assert _kept(store, "person-2") == (2, 1, {"who": 2})
    assert _kept(store, "person-3") is None


def test_a_snapshot_of_a_uuid_stream_is_found_by_its_text(store: EventStore) -> None:
    person_id = new_id()
    store.backend.save_snapshot(stream_key(person_id), _snapshot(3, {"n": 3}))
    assert _kept(store, str(person_id)) == (3, 1, {"n": 3})
