"""What handlers receive: Aggregate's apply methods and replay's rules, loudly kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

import conduit
from conduit import Aggregate, EventStore, ReplayError, new_id


@dataclass(frozen=True)
class PersonRegistered:
    name: str


@dataclass(frozen=True)
class PersonRenamed:
    name: str


class Person(Aggregate):
    """The documented style: apply methods take the payload."""

    def __init__(self) -> None:
        self.name = ""

    def register(self, name: str) -> None:
        self.record(PersonRegistered(name))

    def apply_person_registered(self, event: PersonRegistered) -> None:
        self.name = event.name


def saved_person(store: EventStore) -> Person:
    person = Person()
    person.register("Kris")
    EventStore(store.backend, types=[PersonRegistered]).save(person)
    return person


# -- Aggregate: apply methods always receive the typed payload -------------------


def test_an_aggregate_gets_the_same_payload_when_recorded_and_when_loaded(
    store: EventStore,
) -> None:
    person = saved_person(store)
    assert person.name == "Kris"
    loaded = EventStore(store.backend, types=[PersonRegistered]).load(person.id, Person)
    assert (loaded.name, loaded.version) == ("Kris", 1)


def test_loading_an_aggregate_without_its_event_classes_raises_naming_the_fix(
    store: EventStore,
) -> None:
    person = saved_person(store)
    [event] = store.get(person.id)
    with pytest.raises(ReplayError) as refused:
        store.load(person.id, Person)  # no types: plain events, no payload
    error = refused.value
    assert (error.event_id, error.name, error.entity) == (event.id, "person_registered", "Person")
    assert "register" in str(error)
    assert "types=" in str(error)
    assert str(event.id) in str(error)


def test_an_event_an_aggregate_has_no_apply_method_for_raises(store: EventStore) -> None:
    person = saved_person(store)
    reader = EventStore(store.backend, types=[PersonRegistered, PersonRenamed])
    reader.push(PersonRenamed("Kit"), person.id)
    with pytest.raises(ReplayError, match="no apply_person_renamed method") as refused:
        reader.load(person.id, Person)
    assert refused.value.name == "person_renamed"


def test_recording_an_event_without_an_apply_method_raises_and_queues_nothing() -> None:
    person = Person()
    with pytest.raises(ReplayError, match="apply_person_renamed"):
        person.record(PersonRenamed("Kit"))
    assert person.pending_events == ()


def test_replay_onto_an_aggregate_follows_the_aggregates_rules(store: EventStore) -> None:
    person = saved_person(store)
    reader = EventStore(store.backend, types=[PersonRegistered])
    rebuilt = conduit.replay(reader.get(person.id), onto=Person())
    assert (rebuilt.name, rebuilt.version) == ("Kris", 1)
    with pytest.raises(ReplayError):
        conduit.replay(store.get(person.id), onto=Person())  # plain events


# -- replay onto plain objects: data becomes attributes, never over methods -------


class Profile:
    """A plain entity with no handler for ``profile_updated`` (a typo, say)."""

    def __init__(self) -> None:
        self.city = ""
        self.version = 0
        self._secret = "kept"

    @property
    def label(self) -> str:
        return self.city.upper()

    def apply_profile_creatd(self, event: Any) -> None:  # the typo
        self.city = event.data["city"]


def test_data_without_a_handler_becomes_attributes(store: EventStore) -> None:
    store.push("profile_updated", "p", {"city": "Oslo", "version": 3, "id": 7})
    profile = conduit.replay(store.get("p"), onto=Profile())
    assert (profile.city, profile.version, vars(profile)["id"]) == ("Oslo", 3, 7)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("apply_profile_creatd", "method"),
        ("label", "property"),
        ("_secret", "private"),
        ("__class__", "special"),
    ],
)
def test_data_never_overwrites_a_method_a_property_or_a_private_name(
    store: EventStore, key: str, why: str
) -> None:
    event = store.push("profile_updated", "p", {"city": "Oslo", key: "overwritten"})
    profile = Profile()
    with pytest.raises(ReplayError, match=why) as refused:
        conduit.replay(store.get("p"), onto=profile)
    error = refused.value
    assert (error.key, error.event_id, error.name) == (key, event.id, "profile_updated")
    assert repr(key) in str(error)
    assert profile.city == ""  # nothing of the event was applied
    assert profile._secret == "kept"
    assert callable(profile.apply_profile_creatd)


def test_a_callable_attribute_is_not_overwritten_either(store: EventStore) -> None:
    class Holder:
        def __init__(self) -> None:
            self.callback = print

    store.push("holder_changed", "h", {"callback": "oops"})
    holder = Holder()
    with pytest.raises(ReplayError, match="callable"):
        conduit.replay(store.get("h"), onto=holder)
    assert holder.callback is print


def test_slotted_plain_entities_still_get_their_data(store: EventStore) -> None:
    class Point:
        __slots__ = ("x", "y")
        x: int
        y: int

    store.push("point_moved", "pt", {"x": 1, "y": 2})
    point = conduit.replay(store.get("pt"), onto=Point())
    assert (point.x, point.y) == (1, 2)


def test_plain_entities_with_handlers_receive_the_event(store: EventStore) -> None:
    seen: list[object] = []

    class Entity:
        def on_thing_happened(self, event: Any) -> None:
            seen.append(event)

    [event] = [store.push("thing_happened", new_id(), {"n": 1})]
    conduit.replay(event, onto=Entity())
    assert seen == [event]
