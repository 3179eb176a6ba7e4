"""Contract: listeners notified after commit, and replaying events onto an object."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from conduit import Event, EventStore, InvalidEvent, WrongExpectedVersion, replay

__all__ = [
    "test_a_failed_push_notifies_nothing",
    "test_listener_is_called_after_commit_in_the_pushing_thread",
    "test_listener_on_event_sees_every_event_after_the_named_handler",
    "test_listener_sees_a_batch_in_order",
    "test_raising_listener_does_not_undo_the_push_or_stop_others",
    "test_raising_listener_is_logged_with_the_event_id",
    "test_replay_accepts_a_single_event",
    "test_replay_calls_apply_before_on",
    "test_replay_calls_on_name_methods",
    "test_replay_sets_data_keys_as_attributes_without_a_method",
    "test_subscribe_returns_the_listener",
    "test_unsubscribed_listener_is_not_notified",
]


class Recorder:
    """A listener that remembers what it saw, and where."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Event]] = []
        self.threads: list[int] = []

    def on_order_placed(self, event: Event) -> None:
        self.seen.append(("on_order_placed", event))
        self.threads.append(threading.get_ident())

    def on_event(self, event: Event) -> None:
        self.seen.append(("on_event", event))


class Exploding:
    """A listener whose handler always fails."""

    def on_order_placed(self, event: Event) -> None:
        raise RuntimeError("the projection is broken")


def test_subscribe_returns_the_listener(store: EventStore) -> None:
    listener = Recorder()
    assert store.subscribe(listener) is listener


def test_listener_is_called_after_commit_in_the_pushing_thread(store: EventStore) -> None:
    visible: list[bool] = []

    class Checker:
        def on_order_placed(self, event: Event) -> None:
            visible.append(store.get(event.stream_id) == [event])
            visible.append(any(logged.id == event.id for logged in store.read_all()))

    listener = Recorder()
    store.subscribe(Checker())
    store.subscribe(listener)
    event = store.push("OrderPlaced", "o", {"n": 1})
    assert visible == [True, True]
    assert [name for name, _ in listener.seen] == ["on_order_placed", "on_event"]
    assert listener.seen[0][1] == event
    assert listener.threads == [threading.get_ident()]


def test_listener_on_event_sees_every_event_after_the_named_handler(store: EventStore) -> None:
    listener = Recorder()
    store.subscribe(listener)
    placed = store.push("order_placed", "o", {})
    paid = store.push("order_paid", "o", {})
    assert listener.seen == [("on_order_placed", placed), ("on_event", placed), ("on_event", paid)]


def test_listener_sees_a_batch_in_order(store: EventStore) -> None:
    listener = Recorder()
    store.subscribe(listener)
    events = store.push_many("o", [("order_placed", {"n": n}) for n in range(3)])
    assert [event for name, event in listener.seen if name == "on_order_placed"] == events
    assert [event for name, event in listener.seen if name == "on_event"] == events


def test_raising_listener_does_not_undo_the_push_or_stop_others(store: EventStore) -> None:
    store.subscribe(Exploding())
    listener = Recorder()
    store.subscribe(listener)
    events = [store.push("order_placed", "o", {"n": n}) for n in range(2)]
    assert store.get("o") == events
    assert [event for name, event in listener.seen if name == "on_order_placed"] == events


def test_raising_listener_is_logged_with_the_event_id(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.subscribe(Exploding())
    with caplog.at_level(logging.ERROR):
        event = store.push("order_placed", "o", {})
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert any(str(event.id) in record.getMessage() for record in errors)
    assert any(record.exc_info is not None for record in errors)


def test_unsubscribed_listener_is_not_notified(store: EventStore) -> None:
    listener = Recorder()
    store.subscribe(listener)
    store.push("order_placed", "o", {})
    store.unsubscribe(listener)
    store.push("order_placed", "o", {})
    assert len(listener.seen) == 2  # on_order_placed and on_event, for the first push only


def test_a_failed_push_notifies_nothing(store: EventStore) -> None:
    listener = Recorder()
    store.subscribe(listener)
    store.push("thing_happened", "o", {})
    listener.seen.clear()
    with pytest.raises(WrongExpectedVersion):
        store.push("order_placed", "o", {}, expected_version=0)
    with pytest.raises(InvalidEvent):
        store.push("order_placed", "o", {"bad": float("nan")})
    with pytest.raises(WrongExpectedVersion):
        store.push_many("o", [("order_placed", {})], expected_version=5)
    assert listener.seen == []


class Person:
    """An entity to replay onto."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.first_name: Any = None

    def apply_person_registered(self, event: Event) -> None:
        self.calls.append("apply")
        self.first_name = event.data["first_name"]

    def on_person_registered(self, event: Event) -> None:
        self.calls.append("on")

    def on_person_renamed(self, event: Event) -> None:
        self.calls.append("on_renamed")
        self.first_name = event.data["first_name"]


def test_replay_calls_apply_before_on(store: EventStore) -> None:
    events = [store.push("PersonRegistered", "p", {"first_name": "Kris"})]
    person = replay(events, onto=Person())
    assert person.calls == ["apply"]
    assert person.first_name == "Kris"


def test_replay_calls_on_name_methods(store: EventStore) -> None:
    store.push("person_registered", "p", {"first_name": "Kris"})
    store.push("person_renamed", "p", {"first_name": "Chris"})
    person = replay(store.get("p"), onto=Person())
    assert person.calls == ["apply", "on_renamed"]
    assert person.first_name == "Chris"


def test_replay_sets_data_keys_as_attributes_without_a_method(store: EventStore) -> None:
    store.push("person_registered", "p", {"first_name": "Kris"})
    store.push("address_changed", "p", {"city": "Oslo", "zip": "0150"})
    store.push("address_changed", "p", {"city": "Bergen"})
    person = replay(store.read("p"), onto=Person())
    assert (person.first_name, person.city, person.zip) == ("Kris", "Bergen", "0150")  # type: ignore[attr-defined]


def test_replay_accepts_a_single_event(store: EventStore) -> None:
    event = store.push("person_registered", "p", {"first_name": "Kris"})
    target = Person()
    assert replay(event, onto=target) is target
    assert target.first_name == "Kris"
