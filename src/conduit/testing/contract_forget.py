"""Contract: personal data, stored encrypted under a key per subject, and forgotten.

Values marked personal (``conduit.personal``, ``Annotated[..., PersonalData()]``)
read back as pushed, are stored sealed (no plaintext reaches the engine), and
once ``store.forget(subject)`` destroyed the subject's key, every read gives
``conduit.FORGOTTEN`` in their place — on this store and any other on the same
storage. The engine's part is its keys table: ``subject_keys``,
``add_subject_keys``, ``keep_subject_keys``, ``forget_subject``,
``subject_key_page``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from conduit import (
    FORGOTTEN,
    DuplicateEvent,
    EventStore,
    InvalidEvent,
    Query,
    QueryItem,
    SubjectForgotten,
    SubjectKey,
    new_id,
    personal,
)
from conduit.events import Event, stream_key
from conduit.personal import SEALED_KEY, SUBJECTS_KEY
from conduit.reserved import AUDIT_STREAM

__all__ = [
    "test_a_forgotten_subject_is_forgotten_for_another_store_on_the_same_storage",
    "test_a_personal_value_cannot_hold_another",
    "test_a_push_of_a_forgotten_subjects_data_is_refused_and_writes_nothing",
    "test_a_retried_push_of_personal_values_returns_the_recorded_events",
    "test_a_snapshot_holding_personal_data_is_forgotten_with_its_subject",
    "test_a_snapshot_holding_personal_data_is_stored_sealed_and_loads_back",
    "test_add_subject_keys_lets_a_copy_read_what_another_store_sealed",
    "test_add_subject_keys_with_a_tombstone_forgets_and_never_replaces_a_key_by_another",
    "test_applications_cannot_push_new_events_to_a_reserved_stream",
    "test_events_with_personal_values_keep_their_tags_and_query_by_them",
    "test_forget_gives_the_placeholder_on_every_read",
    "test_forget_keeps_other_subjects_and_plain_values",
    "test_forget_of_an_unknown_subject_returns_false_and_refuses_its_data_later",
    "test_forget_records_subject_forgotten_in_the_audit_stream",
    "test_keep_subject_keys_makes_only_missing_keys_and_gives_every_subject_s_key",
    "test_listeners_get_personal_values_revealed",
    "test_metadata_cannot_hold_personal_values",
    "test_personal_value_is_stored_sealed_without_its_plaintext",
    "test_personal_values_nested_and_of_named_subjects_read_back_as_pushed",
    "test_subject_key_page_lists_keys_and_tombstones_by_subject",
    "test_the_pending_key_is_refused_in_data",
]

SECRET = "Kris Kowalski, 12 Elm Street"


def _stored(store: EventStore, stream: object) -> list[Event]:
    return list(
        store.backend.read_stream(
            stream_key(stream), start=None, backwards=False, since=None, limit=1000
        )
    )


def _text(events: list[Event]) -> str:
    return "\n".join(orjson.dumps([e.data, e.metadata]).decode() for e in events)


def test_personal_value_is_stored_sealed_without_its_plaintext(store: EventStore) -> None:
    person = new_id()
    pushed = store.push("person_registered", person, {"name": personal(SECRET), "plan": "basic"})
    assert pushed.data == {"name": SECRET, "plan": "basic"}
    assert pushed.metadata[SUBJECTS_KEY] == [str(person)]
    [stored] = _stored(store, person)
    assert SECRET not in _text([stored])
    assert stored.data["plan"] == "basic"
    assert list(stored.data["name"]) == [SEALED_KEY]
    assert stored.data["name"][SEALED_KEY][0] == str(person)


def test_personal_values_nested_and_of_named_subjects_read_back_as_pushed(
    store: EventStore,
) -> None:
    data = {
        "order": {"ship_to": personal({"street": "Elm", "no": 12}, subject="customer-7")},
        "emails": [personal("a@example.com", "customer-7"), "shop@example.com"],
        "count": personal(3),
    }
    pushed = store.push("order_placed", "order-1", data)
    expected = {
        "order": {"ship_to": {"street": "Elm", "no": 12}},
        "emails": ["a@example.com", "shop@example.com"],
        "count": 3,
    }
    assert pushed.data == expected
    assert pushed.metadata[SUBJECTS_KEY] == ["customer-7", "order-1"]
    assert store.get("order-1")[0].data == expected
    assert "a@example.com" not in _text(_stored(store, "order-1"))


def test_events_with_personal_values_keep_their_tags_and_query_by_them(
    store: EventStore,
) -> None:
    given = [
        {"name": "registered", "data": {"name": personal(SECRET)}, "tags": ["person:1"]},
        {"name": "renamed", "data": {"name": personal("Kim"), "by": "desk"}},
    ]
    pushed = store.push_many("person-1", given, tags=["region:eu"])
    assert [e.tags for e in pushed] == [
        frozenset({"person:1", "region:eu"}),
        frozenset({"region:eu"}),
    ]
    assert [(e.tags, e.data) for e in store.get("person-1")] == [
        (frozenset({"person:1", "region:eu"}), {"name": SECRET}),
        (frozenset({"region:eu"}), {"name": "Kim", "by": "desk"}),
    ]
    found = list(store.read_query(Query(QueryItem(tags="person:1"))))
    assert [e.data for e in found] == [{"name": SECRET}]
    assert SECRET not in _text(_stored(store, "person-1"))


def test_a_retried_push_of_personal_values_returns_the_recorded_events(
    store: EventStore,
) -> None:
    one, two, three = new_id(), new_id(), new_id()
    first = store.push("noted", "p", {"v": personal(SECRET)}, metadata={"by": "desk"}, event_id=one)
    assert (
        store.push("noted", "p", {"v": personal(SECRET)}, metadata={"by": "desk"}, event_id=one)
        == first
    )
    batch = [
        {"name": "noted", "data": {"v": personal("a"), "n": 1}, "id": two, "tags": ["t:1"]},
        {"name": "noted", "data": {"v": personal("b", "someone")}, "id": three},
    ]
    recorded = store.push_many("p", batch)
    assert store.push_many("p", batch) == recorded
    changed = [batch[0], {**batch[1], "data": {"v": personal("c", "someone")}}]
    with pytest.raises(DuplicateEvent):
        store.push_many("p", changed)
    with pytest.raises(DuplicateEvent):
        store.push("noted", "p", {"v": personal(SECRET)}, metadata={"by": "other"}, event_id=one)
    with pytest.raises(DuplicateEvent):  # recorded in another stream
        store.push("noted", "q", {"v": personal(SECRET)}, metadata={"by": "desk"}, event_id=one)
    assert [e.data for e in store.get("p")] == [{"v": SECRET}, {"v": "a", "n": 1}, {"v": "b"}]
    assert store.get("q") == []


def test_a_personal_value_cannot_hold_another(store: EventStore) -> None:
    for inner in (personal("x"), {"a": [personal("x")]}):
        with pytest.raises(InvalidEvent) as caught:
            store.push("x", "s", {"v": personal(inner, "ann")})
        assert caught.value.field == "data['v']"
    assert store.get("s") == []


def test_forget_gives_the_placeholder_on_every_read(store: EventStore) -> None:
    store.page_size = 2
    person = new_id()
    for i in range(3):
        store.push("note_added", person, {"text": personal(f"{SECRET} {i}"), "i": i})
    assert store.forget(person) is True
    forgotten = [{"text": FORGOTTEN, "i": i} for i in range(3)]
    assert [e.data for e in store.get(person)] == forgotten
    assert [e.data for e in store.read(person, backwards=True)] == forgotten[::-1]
    assert [e.data for e in store.read_all() if e.stream_id == person] == forgotten
    first = store.get(person)[0]
    found = store.read_event(first.id)
    assert found is not None
    assert found.data["text"] is FORGOTTEN
    assert found.data["text"] == "[forgotten]"
    assert SECRET not in _text(_stored(store, person))


def test_forget_keeps_other_subjects_and_plain_values(store: EventStore) -> None:
    store.push("met", "m", {"a": personal("Ann", "ann"), "b": personal("Bob", "bob"), "at": 1})
    store.forget("ann")
    assert store.get("m")[0].data == {"a": FORGOTTEN, "b": "Bob", "at": 1}


def test_a_forgotten_subject_is_forgotten_for_another_store_on_the_same_storage(
    make_store: Callable[[], EventStore],
) -> None:
    first, second = make_store(), make_store()
    first.push("person_registered", "p", {"name": personal(SECRET)})
    assert second.get("p")[0].data == {"name": SECRET}
    first.forget("p")
    assert second.get("p")[0].data == {"name": FORGOTTEN}


def test_a_push_of_a_forgotten_subjects_data_is_refused_and_writes_nothing(
    make_store: Callable[[], EventStore],
) -> None:
    first, second = make_store(), make_store()
    second.push("person_registered", "p", {"name": personal("old")})  # second caches the key
    first.forget("p")
    with pytest.raises(SubjectForgotten) as caught:
        first.push("person_renamed", "p", {"name": personal(SECRET)})
    assert caught.value.subject == "p"
    assert store_version(first, "p") == 1
    first.push("person_seen", "p", {"at": 1})  # data of no subject is still welcome
    second.push("person_renamed", "p", {"name": personal(SECRET)})  # its key, destroyed
    assert [e.data for e in first.get("p")][-1] == {"name": FORGOTTEN}
    assert SECRET not in _text(_stored(first, "p"))


def store_version(store: EventStore, stream: str) -> int:
    return store.stream_version(stream)


def test_forget_of_an_unknown_subject_returns_false_and_refuses_its_data_later(
    store: EventStore,
) -> None:
    assert store.forget("nobody") is False
    assert store.forget("nobody") is False
    with pytest.raises(SubjectForgotten):
        store.push("person_registered", "nobody", {"name": personal(SECRET)})
    assert store.get("nobody") == []


def test_forget_records_subject_forgotten_in_the_audit_stream(store: EventStore) -> None:
    store.push("person_registered", "p", {"name": personal(SECRET)})
    store.forget("p", by="dpo@example.com")
    [audit] = store.get(AUDIT_STREAM)
    assert audit.name == "subject_forgotten"
    assert audit.data == {"subject": "p", "key_destroyed": True}
    assert audit.metadata == {"by": "dpo@example.com"}
    assert [e.name for e in store.read_all()][-1] == "subject_forgotten"


def test_applications_cannot_push_new_events_to_a_reserved_stream(store: EventStore) -> None:
    with pytest.raises(InvalidEvent) as caught:
        store.push("subject_forgotten", AUDIT_STREAM, {"subject": "p"})
    assert caught.value.field == "stream_id"
    with pytest.raises(InvalidEvent):
        store.push_many("conduit.anything", [("x", {})])
    assert store.get(AUDIT_STREAM) == []


def test_metadata_cannot_hold_personal_values(store: EventStore) -> None:
    with pytest.raises(InvalidEvent) as caught:
        store.push("x", "s", {}, metadata={"user": personal(SECRET)})
    assert caught.value.field == "metadata"
    assert store.get("s") == []


def test_the_pending_key_is_refused_in_data(store: EventStore) -> None:
    with pytest.raises(InvalidEvent):
        store.push("x", "s", {"v": {"conduit.pending": [None, SECRET]}})
    assert store.get("s") == []


def test_listeners_get_personal_values_revealed(store: EventStore) -> None:
    seen: list[Any] = []

    class Listener:
        def on_person_registered(self, event: Event) -> None:
            seen.append(event.data)

    store.subscribe(Listener())
    store.push("person_registered", "p", {"name": personal(SECRET)})
    assert seen == [{"name": SECRET}]


class Person:
    snapshot_every = 2

    def __init__(self) -> None:
        self.name: str = ""
        self.visits: int = 0

    def on_person_registered(self, event: Event) -> None:
        self.name = event.data["name"]

    def on_person_visited(self, event: Event) -> None:
        self.visits += 1


def _person_stream(store: EventStore) -> str:
    stream = f"person-{new_id()}"
    store.push("person_registered", stream, {"name": personal(SECRET)})
    store.push("person_visited", stream, {})
    return stream


def test_a_snapshot_holding_personal_data_is_stored_sealed_and_loads_back(
    store: EventStore,
) -> None:
    stream = _person_stream(store)
    store.save_snapshot(stream, store.load(stream, Person, use_snapshots=False), 2)
    kept = store.backend.load_snapshot(stream_key(stream), f"{__name__}.Person")
    assert kept is not None
    assert SECRET not in kept.data
    loaded = store.load(stream, Person)
    assert (loaded.name, loaded.visits) == (SECRET, 1)


def test_a_snapshot_holding_personal_data_is_forgotten_with_its_subject(
    store: EventStore,
) -> None:
    stream = _person_stream(store)
    store.save_snapshot(stream, store.load(stream, Person, use_snapshots=False), 2)
    store.push("person_visited", stream, {})
    assert store.backend.load_snapshot(stream_key(stream), f"{__name__}.Person") is not None
    store.forget(stream)
    loaded = store.load(stream, Person)
    assert (loaded.name, loaded.visits) == (FORGOTTEN, 2)


def test_subject_key_page_lists_keys_and_tombstones_by_subject(store: EventStore) -> None:
    store.push("x", "b", {"v": personal(1)})
    store.push("x", "a", {"v": personal(1)})
    store.forget("b")
    keys = list(store.subject_keys())
    assert [k.subject for k in keys] == ["a", "b"]
    assert keys[0].key is not None
    assert len(keys[0].key) == 32
    assert keys[1].key is None
    assert keys[1].forgotten_at is not None
    assert [k.subject for k in store.subject_keys(limit=1)] == ["a"]


def test_add_subject_keys_lets_a_copy_read_what_another_store_sealed(store: EventStore) -> None:
    source = EventStore()
    source.push("person_registered", "p", {"name": personal(SECRET)})
    sealed = EventStore(source.backend, reveal_personal_data=False)
    [event] = sealed.get("p")
    copied = {
        "id": event.id,
        "name": event.name,
        "data": event.data,
        "metadata": event.metadata,
        "recorded_at": event.recorded_at,
    }
    store.push_many("p", [copied])
    assert store.get("p")[0].data == {"name": FORGOTTEN}  # no key yet
    store.add_subject_keys(source.subject_keys())
    assert store.get("p")[0].data == {"name": SECRET}


def test_keep_subject_keys_makes_only_missing_keys_and_gives_every_subject_s_key(
    store: EventStore,
) -> None:
    backend = store.backend
    store.push("person_registered", "known", {"name": personal(SECRET)})
    store.forget("gone")
    [known] = [k for k in store.subject_keys() if k.subject == "known"]
    fresh = bytes(range(32))
    found = backend.keep_subject_keys(
        [SubjectKey("known", bytes(32)), SubjectKey("gone", bytes(32)), SubjectKey("new", fresh)]
    )
    assert found == {"known": known.key, "gone": None, "new": fresh}
    assert backend.subject_keys(["known", "gone", "new"]) == found
    assert backend.keep_subject_keys([SubjectKey("new", bytes(32))]) == {"new": fresh}


def test_add_subject_keys_with_a_tombstone_forgets_and_never_replaces_a_key_by_another(
    store: EventStore,
) -> None:
    store.push("person_registered", "p", {"name": personal(SECRET)})
    store.add_subject_keys([SubjectKey("p", bytes(32))])  # another key: the store's wins
    assert store.get("p")[0].data == {"name": SECRET}
    store.add_subject_keys([SubjectKey("p", None)])
    assert store.get("p")[0].data == {"name": FORGOTTEN}
    with pytest.raises(SubjectForgotten):
        store.push("person_renamed", "p", {"name": personal("new")})
