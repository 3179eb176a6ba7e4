"""Contract: parked events — kept, listed page by page, retried and dropped — on ``store.backend``.

A subscription parks an event it gave up on (with the error, traceback and
attempts); ``request_retry`` flags parked events for the subscription's
driver to try again, and ``unpark`` forgets one (dropped, or applied by a
retry). Parked ids only grow: ``parked(after=id)`` pages on them.
"""

from __future__ import annotations

from datetime import timedelta

from conduit import Event, EventStore
from conduit.events import ParkedEvent

__all__ = [
    "test_a_parked_event_is_listed_with_its_error",
    "test_one_event_parked_by_two_subscriptions_is_kept_twice",
    "test_parked_filters_by_subscription",
    "test_parked_ids_grow_and_are_never_reused",
    "test_parked_of_a_store_with_nothing_parked_is_empty",
    "test_parked_pages_by_id_with_after_and_limit",
    "test_parked_pages_through_one_subscriptions_events",
    "test_parking_an_event_again_replaces_its_parking",
    "test_request_retry_of_an_unknown_parked_event_marks_nothing",
    "test_request_retry_of_every_parked_event",
    "test_request_retry_of_every_parked_event_of_a_subscription",
    "test_request_retry_of_one_parked_event",
    "test_request_retry_of_one_parked_event_of_another_subscription_marks_nothing",
    "test_unpark_forgets_a_parked_event",
    "test_unpark_of_an_unknown_parked_event_is_false",
]


def _events(store: EventStore, count: int) -> list[Event]:
    return store.push_many("orders", [("order_placed", {"n": n}) for n in range(count)])


def _park(store: EventStore, subscription: str, event: Event, attempt: int = 3) -> None:
    store.backend.park(
        subscription,
        event,
        error=f"ValueError: bad order {event.data['n']}",
        traceback=f"Traceback (most recent call last):\n  attempt {attempt}\n",
        attempts=attempt,
    )


def _all(store: EventStore, subscription: str | None = None) -> list[ParkedEvent]:
    return store.backend.parked(subscription=subscription, after=0, limit=1000)


def _flags(store: EventStore) -> dict[tuple[str, int], bool]:
    """Each parked event's retry flag, by subscription and the event's position."""
    return {(p.subscription, p.position): p.retry_requested for p in _all(store)}


def test_parked_of_a_store_with_nothing_parked_is_empty(store: EventStore) -> None:
    assert _all(store) == []
    assert _all(store, "ledger") == []


def test_a_parked_event_is_listed_with_its_error(store: EventStore) -> None:
    (event,) = _events(store, 1)
    _park(store, "ledger", event)
    (parked,) = _all(store)
    assert (parked.subscription, parked.event_id, parked.position) == (
        "ledger",
        event.id,
        event.position,
    )
    assert parked.error == "ValueError: bad order 0"
    assert parked.traceback == "Traceback (most recent call last):\n  attempt 3\n"
    assert (parked.attempts, parked.retry_requested) == (3, False)
    assert parked.parked_at.utcoffset() == timedelta(0)


def test_parking_an_event_again_replaces_its_parking(store: EventStore) -> None:
    (event,) = _events(store, 1)
    _park(store, "ledger", event, attempt=3)
    (first,) = _all(store)
    store.backend.request_retry(first.id, subscription=None)
    _park(store, "ledger", event, attempt=6)  # the retry failed too
    (again,) = _all(store)
    assert again.id == first.id
    assert (again.attempts, again.traceback) == (
        6,
        "Traceback (most recent call last):\n  attempt 6\n",
    )
    assert again.retry_requested is False
    assert again.parked_at >= first.parked_at


def test_one_event_parked_by_two_subscriptions_is_kept_twice(store: EventStore) -> None:
    (event,) = _events(store, 1)
    _park(store, "ledger", event)
    _park(store, "mailer", event)
    assert [(p.subscription, p.event_id) for p in _all(store)] == [
        ("ledger", event.id),
        ("mailer", event.id),
    ]


def test_parked_ids_grow_and_are_never_reused(store: EventStore) -> None:
    events = _events(store, 3)
    _park(store, "ledger", events[0])
    _park(store, "ledger", events[1])
    first, second = _all(store)
    assert first.id < second.id
    store.backend.unpark(second.id)
    _park(store, "ledger", events[2])
    assert [p.position for p in _all(store)] == [events[0].position, events[2].position]
    assert _all(store)[-1].id > second.id


def test_parked_pages_by_id_with_after_and_limit(store: EventStore) -> None:
    events = _events(store, 5)
    for event in events:
        _park(store, "ledger", event)
    every = _all(store)
    assert [p.position for p in every] == [e.position for e in events]
    backend = store.backend
    first_page = backend.parked(subscription=None, after=0, limit=2)
    assert first_page == every[:2]
    assert backend.parked(subscription=None, after=first_page[-1].id, limit=2) == every[2:4]
    assert backend.parked(subscription=None, after=every[3].id, limit=2) == every[4:]
    assert backend.parked(subscription=None, after=every[-1].id, limit=2) == []


def test_parked_filters_by_subscription(store: EventStore) -> None:
    events = _events(store, 4)
    for index, event in enumerate(events):
        _park(store, "ledger" if index % 2 == 0 else "mailer", event)
    assert [p.position for p in _all(store, "ledger")] == [events[0].position, events[2].position]
    assert [p.position for p in _all(store, "mailer")] == [events[1].position, events[3].position]
    assert _all(store, "Ledger") == []  # names are case-sensitive
    assert _all(store, "ledge") == []


def test_parked_pages_through_one_subscriptions_events(store: EventStore) -> None:
    events = _events(store, 9)
    for index, event in enumerate(events):
        _park(store, "ledger" if index % 3 else "mailer", event)
    wanted = _all(store, "ledger")
    assert len(wanted) == 6
    pages: list[list[ParkedEvent]] = []
    after = 0
    while page := store.backend.parked(subscription="ledger", after=after, limit=4):
        assert len(pages) < 3, "parked() pages past its last page"
        pages.append(page)
        after = page[-1].id
    assert [len(page) for page in pages] == [4, 2]
    assert [p for page in pages for p in page] == wanted


def test_request_retry_of_one_parked_event(store: EventStore) -> None:
    events = _events(store, 2)
    _park(store, "ledger", events[0])
    _park(store, "ledger", events[1])
    first = _all(store)[0]
    assert store.backend.request_retry(first.id, subscription=None) == 1
    assert _flags(store) == {
        ("ledger", events[0].position): True,
        ("ledger", events[1].position): False,
    }


def test_request_retry_of_every_parked_event_of_a_subscription(store: EventStore) -> None:
    events = _events(store, 3)
    _park(store, "ledger", events[0])
    _park(store, "mailer", events[1])
    _park(store, "ledger", events[2])
    assert store.backend.request_retry(None, subscription="ledger") == 2
    assert _flags(store) == {
        ("ledger", events[0].position): True,
        ("mailer", events[1].position): False,
        ("ledger", events[2].position): True,
    }


def test_request_retry_of_every_parked_event(store: EventStore) -> None:
    events = _events(store, 3)
    for subscription, event in zip(["ledger", "mailer", "ledger"], events, strict=True):
        _park(store, subscription, event)
    assert store.backend.request_retry(None, subscription=None) == 3
    assert set(_flags(store).values()) == {True}


def test_request_retry_of_one_parked_event_of_another_subscription_marks_nothing(
    store: EventStore,
) -> None:
    (event,) = _events(store, 1)
    _park(store, "ledger", event)
    parked = _all(store)[0]
    assert store.backend.request_retry(parked.id, subscription="mailer") == 0
    assert _flags(store) == {("ledger", event.position): False}


def test_request_retry_of_an_unknown_parked_event_marks_nothing(store: EventStore) -> None:
    (event,) = _events(store, 1)
    _park(store, "ledger", event)
    unknown = _all(store)[0].id + 1000
    assert store.backend.request_retry(unknown, subscription=None) == 0
    assert _flags(store) == {("ledger", event.position): False}


def test_unpark_forgets_a_parked_event(store: EventStore) -> None:
    events = _events(store, 2)
    _park(store, "ledger", events[0])
    _park(store, "ledger", events[1])
    first, second = _all(store)
    assert store.backend.unpark(first.id) is True
    assert _all(store) == [second]
    assert store.backend.unpark(first.id) is False


def test_unpark_of_an_unknown_parked_event_is_false(store: EventStore) -> None:
    (event,) = _events(store, 1)
    _park(store, "ledger", event)
    assert store.backend.unpark(_all(store)[0].id + 1000) is False
    assert len(_all(store)) == 1
