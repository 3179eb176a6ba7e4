"""Upcasting: stored data of older schema versions read in today's shape, on every engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from conduit import Event, EventDecodeError, EventStore, InvalidArgument, TypeRegistry, Upcasters


@dataclass(frozen=True)
class PersonRegistered:
    """Version 3: v1 had ``name``; v2 split it; v3 added ``country``."""

    event_version: ClassVar[int] = 3
    first_name: str
    last_name: str
    country: str


def registry() -> TypeRegistry:
    types = TypeRegistry([PersonRegistered])

    # Renamed, into the first shape of person_registered.
    @types.upcaster("user_signed_up", 1, rename="person_registered", to_version=1)
    def renamed(data: dict[str, Any]) -> dict[str, Any]:
        return {"name": data["username"]}

    @types.upcaster("person_registered", 1)
    def split_name(data: dict[str, Any]) -> dict[str, Any]:
        first, _, last = data.pop("name").partition(" ")
        return {**data, "first_name": first, "last_name": last}

    @types.upcaster("person_registered", 2)
    def add_country(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "country": "unknown"}

    return types


def test_a_v1_event_is_upcast_through_the_chain(store: EventStore) -> None:
    store.push("person_registered", "p", {"name": "Kris Nova"})
    [event] = EventStore(store.backend, types=registry()).get("p")
    assert event.payload == PersonRegistered("Kris", "Nova", "unknown")  # type: ignore[attr-defined]
    assert event.metadata["schema_version"] == 3


def test_a_v2_event_goes_through_the_rest_of_the_chain(store: EventStore) -> None:
    store.push(
        "person_registered",
        "p",
        {"first_name": "Kris", "last_name": "Nova"},
        metadata={"schema_version": 2},
    )
    [event] = EventStore(store.backend, types=registry()).get("p")
    assert event.payload == PersonRegistered("Kris", "Nova", "unknown")  # type: ignore[attr-defined]


def test_a_current_event_is_read_as_it_is(store: EventStore) -> None:
    reader = EventStore(store.backend, types=registry())
    pushed = reader.push(PersonRegistered("Kris", "Nova", "NL"), "p")
    assert pushed.metadata == {"schema_version": 3}
    assert reader.get("p")[0].payload == PersonRegistered("Kris", "Nova", "NL")  # type: ignore[attr-defined]


def test_a_renamed_event_is_read_under_its_new_name(store: EventStore) -> None:
    stored = store.push("user_signed_up", "p", {"username": "Kris Nova"})
    reader = EventStore(store.backend, types=registry())
    [event] = reader.get("p")
    assert event.name == "person_registered"
    assert event.id == stored.id
    assert event.payload == PersonRegistered("Kris", "Nova", "unknown")  # type: ignore[attr-defined]
    assert [e.id for e in reader.read_all(names=["person_registered"])] == [stored.id]
    assert list(reader.read_all(names=["user_signed_up"])) == []


def test_reading_never_rewrites_stored_events(store: EventStore) -> None:
    store.push("user_signed_up", "p", {"username": "Kris Nova"})
    EventStore(store.backend, types=registry()).get("p")
    [event] = store.get("p")
    assert (event.name, event.data, event.metadata) == (
        "user_signed_up",
        {"username": "Kris Nova"},
        {},
    )


def test_upcasters_apply_to_untyped_events_too(store: EventStore) -> None:
    upcasters = Upcasters()
    upcasters.register("thing_happened", 1, lambda data: {"count": data["n"]})
    store.push("thing_happened", "s", {"n": 2})
    [event] = EventStore(store.backend, types=TypeRegistry(upcasters=upcasters)).get("s")
    assert type(event) is Event
    assert event.data == {"count": 2}


def test_an_event_at_a_version_no_upcaster_leads_from_raises(store: EventStore) -> None:
    store.push("person_registered", "p", {"first_name": "K"}, metadata={"schema_version": 7})
    with pytest.raises(EventDecodeError, match="schema version 7"):
        EventStore(store.backend, types=registry()).get("p")


def test_a_failing_upcaster_raises_naming_the_event(store: EventStore) -> None:
    stored = store.push("person_registered", "p", {"nickname": "K"})
    with pytest.raises(EventDecodeError) as failure:
        EventStore(store.backend, types=registry()).get("p")
    assert failure.value.event_id == stored.id
    assert "upcaster" in str(failure.value)


def test_a_named_subscription_receives_upcast_events(store: EventStore) -> None:
    store.push("user_signed_up", "a", {"username": "Kris Nova"})
    store.push("person_registered", "b", {"name": "Ada Lovelace"})
    store.push("thing_happened", "c", {})
    reader = EventStore(store.backend, types=registry())
    seen: list[PersonRegistered] = []

    class People:
        def on_person_registered(self, event: Any) -> None:
            seen.append(event.payload)

    reader.subscribe(People(), name="people", names=["person_registered"])
    reader.push(PersonRegistered("Grace", "Hopper", "US"), "d")
    assert seen == [
        PersonRegistered("Kris", "Nova", "unknown"),
        PersonRegistered("Ada", "Lovelace", "unknown"),
        PersonRegistered("Grace", "Hopper", "US"),
    ]


def test_a_second_upcaster_for_one_version_is_refused() -> None:
    upcasters = Upcasters()
    upcasters.register("a", 1, dict)
    with pytest.raises(InvalidArgument, match="already"):
        upcasters.register("a", 1, dict)


def test_an_upcaster_loop_is_refused() -> None:
    upcasters = Upcasters()
    upcasters.register("a", 1, dict, rename="b", to_version=1)
    with pytest.raises(InvalidArgument, match="loop"):
        upcasters.register("b", 1, dict, rename="a", to_version=1)
