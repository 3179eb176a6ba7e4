"""EventStore.follow: the global log, then every new event, as a blocking iterator (the
twin of AsyncEventStore.follow)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from conduit import EventStore
from conduit.events import Event
from conduit.testing.waits import eventually


def test_follow_catches_up_then_sees_pushes_of_this_store_and_of_others(
    make_store: Callable[[], EventStore],
) -> None:
    store, other = make_store(), make_store()
    store.push("thing_happened", "s", {"n": 0})
    seen: list[Event] = []

    def tail() -> None:
        for event in store.follow(max_poll_interval=0.2):
            seen.append(event)
            if len(seen) == 3:
                return

    thread = threading.Thread(target=tail)
    thread.start()
    eventually(lambda: len(seen) == 1, "the follower caught up")
    store.push("thing_happened", "s", {"n": 1})
    other.push("thing_happened", "s", {"n": 2})  # found by polling
    thread.join(30)
    assert not thread.is_alive()
    assert [e.data["n"] for e in seen] == [0, 1, 2]
    assert store._core.followers == set()


def test_follow_ends_when_the_store_closes(make_store: Callable[[], EventStore]) -> None:
    store = make_store()
    ended = threading.Event()

    def tail() -> None:
        for _event in store.follow():
            pass
        ended.set()

    thread = threading.Thread(target=tail)
    thread.start()
    eventually(lambda: bool(store._core.followers), "the follower waits")
    store.close()
    thread.join(30)
    assert ended.is_set()


def test_follow_filters_by_name_and_prefix(store: EventStore) -> None:
    store.push("order_placed", "order-1", {})
    store.push("order_paid", "order-1", {})
    store.push("order_placed", "cart-1", {})
    store.push("order_placed", "order-2", {})
    follower = store.follow(names=["order_placed"], stream_prefix="order-")
    found = [next(follower), next(follower)]
    follower.close()
    assert [(e.name, e.stream_id) for e in found] == [
        ("order_placed", "order-1"),
        ("order_placed", "order-2"),
    ]
