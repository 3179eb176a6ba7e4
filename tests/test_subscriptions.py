"""Named subscriptions on every engine: checkpoints, order, filters, parking, drivers, leases.

A named subscription keeps a checkpoint and receives every event after it,
in global-log order, dispatched to ``on_<event name>`` and ``on_event``
(docs/design.md §4). Every test runs on memory, SQLite and PostgreSQL through the
``store`` / ``make_store`` fixtures, with no engine-specific branch.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from conduit import BackendError, Event, EventStore, InvalidArgument, ProjectionError
from conduit.core.effects import Op
from conduit.subscriptions.drivers import Mode, Subscription

MODES: list[Mode] = ["inline", "background"]

WAIT = 15.0
"""Seconds a test waits for a driver before failing: a bound, never an expectation."""


class Recorder:
    """Records every event it is given, by handler."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        with self._lock:
            self.seen.append(event)
            self.calls.append(("on_event", event.name))

    @property
    def positions(self) -> list[int]:
        with self._lock:
            return [event.position for event in self.seen]

    @property
    def ids(self) -> list[Any]:
        with self._lock:
            return [event.id for event in self.seen]


class Flaky(Recorder):
    """Fails on every event whose data says ``bad`` until ``fixed`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.fixed = False
        self.failures = 0

    def on_event(self, event: Event) -> None:
        if event.data.get("bad") and not self.fixed:
            self.failures += 1
            fail_on_purpose(event)
        super().on_event(event)


def fail_on_purpose(event: Event) -> None:
    raise RuntimeError(f"cannot handle {event.name} #{event.data.get('n')}")


def eventually(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Wait, bounded, until ``check()`` holds (for what ``wait_for`` cannot express)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.01)


class LeaseLog:
    """Records every ``try_lease`` of a store's engine: who asked, and the answer.

    Shows that a driver was refused the lease (or never got it) through the
    lease itself, rather than through time elapsed.
    """

    def __init__(self, store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: list[tuple[str, bool]] = []
        engine = store._core.engine  # what drivers ask, as operations
        real = engine.try_lease

        def try_lease(name: str, owner: str, ttl: float) -> Op[bool]:
            answer: bool = yield from real(name, owner, ttl)
            self.answers.append((owner, answer))
            return answer

        monkeypatch.setattr(engine, "try_lease", try_lease)

    def refused(self, driver: Subscription) -> int:
        return sum(
            1 for owner, answer in list(self.answers) if owner == driver.owner and not answer
        )

    def granted(self, driver: Subscription) -> int:
        return sum(1 for owner, answer in list(self.answers) if owner == driver.owner and answer)


def settle(store: EventStore) -> None:
    """Return once every store sees what ``store`` pushed.

    On PostgreSQL another store object sees an event only once the server's
    reader horizon has passed it (docs/design.md §3.3); the pushing store waits for
    that when it reads.
    """
    store.head_position()


def push_numbered(store: EventStore, stream: str, count: int, start: int = 0) -> list[Event]:
    return [store.push("thing_happened", stream, {"n": start + i}) for i in range(count)]


# -- delivery ------------------------------------------------------------------


def test_inline_subscription_sees_the_event_before_push_returns(store: EventStore) -> None:
    recorder = Recorder()
    store.subscribe(recorder, name="audit", mode="inline")

    event = store.push("person_registered", "person-1", {"first_name": "Kris"})

    assert recorder.ids == [event.id]


@pytest.mark.parametrize("mode", MODES)
def test_events_arrive_in_global_log_order_across_streams(store: EventStore, mode: Mode) -> None:
    recorder = Recorder()
    subscription = store.subscribe(recorder, name="audit", mode=mode)

    pushed = []
    for n in range(12):
        pushed.append(store.push("thing_happened", f"stream-{n % 3}", {"n": n}))
    pushed += store.push_many("stream-9", [("thing_happened", {"n": 100 + n}) for n in range(5)])
    subscription.wait_for(pushed[-1], timeout=WAIT)

    in_log_order = [event.position for event in store.read_all()]
    assert recorder.positions == in_log_order
    assert sorted(recorder.ids) == sorted(event.id for event in pushed)


def test_a_subscription_starts_from_the_first_event_already_recorded(store: EventStore) -> None:
    before = push_numbered(store, "early", 3)
    recorder = Recorder()

    store.subscribe(recorder, name="late", mode="inline")

    assert recorder.ids == [event.id for event in before]


def test_specific_handler_runs_before_on_event(store: EventStore) -> None:
    class Both(Recorder):
        def on_person_registered(self, event: Event) -> None:
            self.calls.append(("on_person_registered", event.name))

    both = Both()
    store.subscribe(both, name="both")

    store.push("person_registered", "person-1", {})
    store.push("person_renamed", "person-1", {})

    assert both.calls == [
        ("on_person_registered", "person_registered"),
        ("on_event", "person_registered"),
        ("on_event", "person_renamed"),
    ]


def test_event_without_a_handler_is_passed_over_and_checkpointed(store: EventStore) -> None:
    class OnlyRegistrations:
        def __init__(self) -> None:
            self.first_names: list[str] = []

        def on_person_registered(self, event: Event) -> None:
            self.first_names.append(event.data["first_name"])

    projection = OnlyRegistrations()
    subscription = store.subscribe(projection, name="registrations")

    store.push("person_registered", "person-1", {"first_name": "Kris"})
    last = store.push("person_renamed", "person-1", {"first_name": "Kim"})

    assert projection.first_names == ["Kris"]
    assert subscription.checkpoint == last.position


# -- filters -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_names_filter_delivers_only_those_names(store: EventStore, mode: Mode) -> None:
    recorder = Recorder()
    subscription = store.subscribe(
        recorder, name="registrations", mode=mode, names=["person_registered"]
    )

    kept = store.push("person_registered", "person-1", {})
    store.push("person_renamed", "person-1", {})
    last = store.push("person_moved", "person-1", {})
    # The checkpoint moves past the events the filter leaves out, so waiting
    # for one of them ends.
    subscription.wait_for(last, timeout=WAIT)

    assert recorder.ids == [kept.id]
    assert subscription.checkpoint >= last.position


@pytest.mark.parametrize("mode", MODES)
def test_streams_prefix_filter_delivers_only_matching_streams(
    store: EventStore, mode: Mode
) -> None:
    recorder = Recorder()
    subscription = store.subscribe(recorder, name="orders", mode=mode, streams="order-")

    kept = [
        store.push("thing_happened", "order-1", {}),
        store.push("thing_happened", "order-2", {}),
    ]
    store.push("thing_happened", "customer-1", {})
    last = store.push("thing_happened", "border-1", {})
    subscription.wait_for(last, timeout=WAIT)

    assert recorder.ids == [event.id for event in kept]
    assert subscription.checkpoint >= last.position


# -- checkpoints ---------------------------------------------------------------


def test_checkpoint_survives_a_new_store_and_resumes_without_repeating(
    make_store: Callable[[], EventStore],
) -> None:
    first_store = make_store()
    first = Recorder()
    subscription = first_store.subscribe(first, name="audit")
    handled = push_numbered(first_store, "s", 3)
    first_store.unsubscribe(subscription)
    missed = push_numbered(first_store, "s", 2, start=3)
    settle(first_store)

    second_store = make_store()
    second = Recorder()
    second_store.subscribe(second, name="audit")

    assert first.ids == [event.id for event in handled]
    assert second.ids == [event.id for event in missed]


def test_unsubscribed_subscription_receives_nothing_more(store: EventStore) -> None:
    recorder = Recorder()
    subscription = store.subscribe(recorder, name="audit")
    before = store.push("thing_happened", "s", {})

    store.unsubscribe(subscription)
    store.push("thing_happened", "s", {})

    assert recorder.ids == [before.id]


# -- failures: retry, park, stop -------------------------------------------------


def push_with_one_bad(store: EventStore) -> tuple[list[Event], Event]:
    """Pushes good, bad, good, good; returns the good ones and the bad one."""
    first = store.push("thing_happened", "s", {"n": 0})
    bad = store.push("thing_happened", "s", {"n": 1, "bad": True})
    rest = push_numbered(store, "s", 2, start=2)
    return [first, *rest], bad


@pytest.mark.parametrize("mode", MODES)
def test_failing_handler_is_retried_then_parked_and_the_rest_projected(
    store: EventStore, mode: Mode
) -> None:
    flaky = Flaky()
    subscription = store.subscribe(flaky, name="flaky", mode=mode, max_attempts=3, backoff=0.001)

    good, bad = push_with_one_bad(store)
    subscription.wait_for(good[-1], timeout=WAIT)

    assert flaky.ids == [event.id for event in good]
    assert flaky.failures == 3
    [parked] = store.parked()
    assert parked.subscription == "flaky"
    assert parked.event_id == bad.id
    assert parked.position == bad.position
    assert parked.attempts == 3
    assert "cannot handle thing_happened #1" in parked.error
    assert "Traceback" in parked.traceback
    assert "fail_on_purpose" in parked.traceback
    assert parked.parked_at.tzinfo is not None
    assert not parked.retry_requested
    assert [p.id for p in store.parked("flaky")] == [parked.id]
    assert list(store.parked("another")) == []


@pytest.mark.parametrize("mode", MODES)
def test_retrying_a_parked_event_after_fixing_applies_it_once(
    store: EventStore, mode: Mode
) -> None:
    flaky = Flaky()
    subscription = store.subscribe(flaky, name="flaky", mode=mode, max_attempts=2, backoff=0.001)
    good, bad = push_with_one_bad(store)
    subscription.wait_for(good[-1], timeout=WAIT)
    [parked] = store.parked()

    flaky.fixed = True
    assert store.retry_parked(parked.id) == 1
    eventually(lambda: not list(store.parked()), "the retried event leaves the parked list")

    assert flaky.ids.count(bad.id) == 1
    assert store.retry_parked(parked.id) == 0
    later = store.push("thing_happened", "s", {"n": 9})
    subscription.wait_for(later, timeout=WAIT)
    assert flaky.ids.count(bad.id) == 1
    assert flaky.ids[-1] == later.id


@pytest.mark.parametrize("mode", MODES)
def test_a_parked_event_that_still_fails_stays_parked(store: EventStore, mode: Mode) -> None:
    flaky = Flaky()
    subscription = store.subscribe(flaky, name="flaky", mode=mode, max_attempts=2, backoff=0.001)
    good, _ = push_with_one_bad(store)
    subscription.wait_for(good[-1], timeout=WAIT)
    [parked] = store.parked()

    assert store.retry_parked(parked.id) == 1
    eventually(lambda: flaky.failures > 2, "the driver retries the parked event")
    eventually(lambda: not next(store.parked()).retry_requested, "the failed retry is recorded")

    [still] = store.parked()
    assert still.event_id == parked.event_id
    assert still.attempts > parked.attempts


def test_drop_parked_forgets_the_event_for_good(store: EventStore) -> None:
    flaky = Flaky()
    store.subscribe(flaky, name="flaky", max_attempts=1)
    push_with_one_bad(store)
    [parked] = store.parked()

    assert store.drop_parked(parked.id) is True

    assert list(store.parked()) == []
    assert store.drop_parked(parked.id) is False
    flaky.fixed = True
    assert store.retry_parked(parked.id) == 0
    store.push("thing_happened", "s", {})
    assert flaky.failures == 1
    assert not any(event.data.get("bad") for event in flaky.seen)


def test_retry_parked_without_an_id_retries_every_parked_event(store: EventStore) -> None:
    flaky = Flaky()
    store.subscribe(flaky, name="flaky", max_attempts=1)
    bad = [store.push("thing_happened", "s", {"n": n, "bad": True}) for n in range(3)]
    assert len(list(store.parked())) == 3

    flaky.fixed = True
    assert store.retry_parked(subscription="flaky") == 3

    eventually(lambda: not list(store.parked()), "every retried event leaves the list")
    assert sorted(flaky.ids) == sorted(event.id for event in bad)


@pytest.mark.parametrize("mode", MODES)
def test_on_failure_stop_stops_the_subscription_and_wait_for_raises(
    store: EventStore, mode: Mode
) -> None:
    flaky = Flaky()
    subscription = store.subscribe(
        flaky, name="strict", mode=mode, max_attempts=2, backoff=0.001, on_failure="stop"
    )

    good, bad = push_with_one_bad(store)

    with pytest.raises(ProjectionError, match="strict"):
        subscription.wait_for(good[-1], timeout=WAIT)
    assert flaky.ids == [good[0].id]
    assert flaky.failures == 2
    assert subscription.checkpoint == good[0].position
    assert list(store.parked()) == []
    assert [event.id for event in store.get("s")] == [good[0].id, bad.id, *(e.id for e in good[1:])]


def test_a_failing_inline_subscription_never_undoes_the_push(store: EventStore) -> None:
    class Broken:
        def on_event(self, event: Event) -> None:
            raise RuntimeError("broken read model")

    store.subscribe(Broken(), name="broken", max_attempts=1, on_failure="stop")

    first = store.push("thing_happened", "s", {"n": 1})
    second = store.push("thing_happened", "s", {"n": 2})

    assert [event.id for event in store.get("s")] == [first.id, second.id]
    assert store.stream_version("s") == 2


# -- drivers -------------------------------------------------------------------


def test_background_subscription_applies_events_pushed_by_another_store(
    make_store: Callable[[], EventStore],
) -> None:
    store, other = make_store(), make_store()
    recorder = Recorder()
    subscription = store.subscribe(recorder, name="audit", mode="background")

    pushed = push_numbered(other, "elsewhere", 5)
    subscription.wait_for(pushed[-1], timeout=WAIT)

    assert recorder.ids == [event.id for event in pushed]


def test_background_subscription_runs_in_another_thread(store: EventStore) -> None:
    threads: list[int] = []

    class ThreadRecorder:
        def on_event(self, event: Event) -> None:
            threads.append(threading.get_ident())

    subscription = store.subscribe(ThreadRecorder(), name="audit", mode="background")
    event = store.push("thing_happened", "s", {})
    subscription.wait_for(event, timeout=WAIT)

    assert threads
    assert threading.get_ident() not in threads
    assert subscription.active


def test_wait_for_accepts_a_position(store: EventStore) -> None:
    subscription = store.subscribe(Recorder(), name="audit", mode="background")
    event = store.push("thing_happened", "s", {})

    subscription.wait_for(event.position, timeout=WAIT)

    assert subscription.checkpoint >= event.position


def test_wait_for_an_event_never_reached_times_out(store: EventStore) -> None:
    subscription = store.subscribe(Recorder(), name="audit")
    event = store.push("thing_happened", "s", {})

    with pytest.raises(TimeoutError, match="audit"):
        subscription.wait_for(event.position + 1_000_000, timeout=0.2)


def test_of_two_background_drivers_one_is_active_and_the_other_takes_over(
    make_store: Callable[[], EventStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store_a, store_b = make_store(), make_store()
    leases = LeaseLog(store_b, monkeypatch)
    first, second = Recorder(), Recorder()
    driver_a = store_a.subscribe(first, name="shared", mode="background", lease_ttl=5.0)
    eventually(lambda: driver_a.active, "the first driver takes the lease")
    driver_b = store_b.subscribe(second, name="shared", mode="background", lease_ttl=5.0)
    before = push_numbered(store_a, "s", 5)
    driver_a.wait_for(before[-1], timeout=WAIT)
    # The second driver asks for the lease (every second) and is refused it.
    eventually(lambda: leases.refused(driver_b) >= 2, "the second driver is refused the lease")
    assert driver_a.active
    assert not driver_b.active
    assert second.ids == []

    store_a.unsubscribe(driver_a)
    eventually(lambda: driver_b.active, "the second driver takes over the lease")
    after = push_numbered(store_a, "s", 3, start=5)
    driver_b.wait_for(after[-1], timeout=WAIT)

    assert first.ids == [event.id for event in before]
    assert second.ids == [event.id for event in after]


def test_a_driver_keeps_its_lease_through_a_catch_up_longer_than_lease_ttl(
    make_store: Callable[[], EventStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Slow(Recorder):
        def on_event(self, event: Event) -> None:
            time.sleep(0.05)  # 60 events: a catch-up of twice lease_ttl
            super().on_event(event)

    # Each batch (0.25 s) takes well under lease_ttl; the whole catch-up, twice it.
    options: dict[str, Any] = {"mode": "background", "lease_ttl": 1.5, "batch_size": 5}

    store_a, store_b = make_store(), make_store()
    leases = LeaseLog(store_b, monkeypatch)
    pushed = push_numbered(store_a, "s", 60)
    settle(store_a)
    first, second = Slow(), Slow()
    driver_a = store_a.subscribe(first, name="shared", **options)
    eventually(lambda: driver_a.active, "the first driver takes the lease")
    driver_b = store_b.subscribe(second, name="shared", **options)

    driver_a.wait_for(pushed[-1], timeout=WAIT)

    eventually(lambda: leases.refused(driver_b) >= 1, "the other driver is refused the lease")
    assert leases.granted(driver_b) == 0, "the other driver took the lease during the catch-up"
    assert second.ids == []
    assert first.ids == [event.id for event in pushed]


def test_a_driver_keeps_its_lease_while_it_retries_a_failing_event(
    make_store: Callable[[], EventStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Flaky(Recorder):
        """Fails its first attempts: with the backoff, for several lease_ttl."""

        def __init__(self, failures: int) -> None:
            super().__init__()
            self.failures = failures
            self.attempts = 0

        def on_event(self, event: Event) -> None:
            self.attempts += 1
            if self.attempts <= self.failures:
                raise RuntimeError(f"attempt {self.attempts} fails")
            super().on_event(event)

    options: dict[str, Any] = {
        "mode": "background",
        "lease_ttl": 1.0,
        "max_attempts": 10,
        "backoff": 0.25,
    }
    store_a, store_b = make_store(), make_store()
    leases = LeaseLog(store_b, monkeypatch)
    first, second = Flaky(failures=4), Flaky(failures=0)
    driver_a = store_a.subscribe(first, name="shared", **options)
    eventually(lambda: driver_a.active, "the first driver takes the lease")
    driver_b = store_b.subscribe(second, name="shared", **options)
    pushed = store_a.push("thing_happened", "s", {})

    # Four failures and their backoff (0.25 + 0.5 + 1 + 2 s): almost four times lease_ttl.
    driver_a.wait_for(pushed, timeout=WAIT)

    assert first.ids == [pushed.id]
    assert first.attempts == 5
    eventually(lambda: leases.refused(driver_b) >= 1, "the other driver is refused the lease")
    assert leases.granted(driver_b) == 0, "the other driver took the lease during the retries"
    assert second.attempts == 0
    assert driver_a.active
    assert list(store_a.parked()) == []


def test_stopped_driver_gives_up_its_lease(make_store: Callable[[], EventStore]) -> None:
    store_a, store_b = make_store(), make_store()
    driver_a = store_a.subscribe(Recorder(), name="shared", mode="background", lease_ttl=30.0)
    eventually(lambda: driver_a.active, "the first driver takes the lease")

    store_a.close()
    # The lease was released, not left to expire: the next driver need not
    # wait out lease_ttl (30 s, longer than the wait below).
    driver_b = store_b.subscribe(Recorder(), name="shared", mode="background", lease_ttl=30.0)

    eventually(lambda: driver_b.active, "the second driver takes the released lease", 10.0)
    assert not driver_a.active


# -- status and lag --------------------------------------------------------------


def test_subscription_status_reports_checkpoint_head_and_lag(
    make_store: Callable[[], EventStore],
) -> None:
    store = make_store()
    subscription = store.subscribe(Recorder(), name="audit")
    handled = push_numbered(store, "s", 2)
    up_to_date = subscription.status()
    store.unsubscribe(subscription)
    pushed = push_numbered(store, "s", 3, start=2)
    settle(store)

    [status] = make_store().subscription_status()

    assert (up_to_date.name, up_to_date.checkpoint, up_to_date.behind) == (
        "audit",
        handled[-1].position,
        0,
    )
    assert up_to_date.head == handled[-1].position
    assert status.name == "audit"
    assert status.checkpoint == handled[-1].position
    assert status.head == pushed[-1].position
    assert status.behind == 3


def test_status_of_a_stopped_subscription_shows_how_far_behind(store: EventStore) -> None:
    flaky = Flaky()
    subscription = store.subscribe(flaky, name="strict", max_attempts=1, on_failure="stop")
    good, _ = push_with_one_bad(store)

    status = subscription.status()
    [listed] = store.subscription_status()

    assert status.checkpoint == good[0].position
    assert status.head == good[-1].position
    assert status.behind == 3
    assert listed == status


def test_status_lists_every_subscription_by_name(store: EventStore) -> None:
    store.subscribe(Recorder(), name="zeta")
    store.subscribe(Recorder(), name="alpha", mode="background")
    event = store.push("thing_happened", "s", {})

    eventually(
        lambda: all(s.checkpoint == event.position for s in store.subscription_status()),
        "both subscriptions catch up",
    )
    statuses = store.subscription_status()

    assert [s.name for s in statuses] == ["alpha", "zeta"]
    assert {(s.head, s.behind) for s in statuses} == {(event.position, 0)}


# -- names ---------------------------------------------------------------------


def test_a_second_subscription_with_the_same_name_in_one_store_is_refused(
    store: EventStore,
) -> None:
    recorder = Recorder()
    store.subscribe(recorder, name="audit")

    with pytest.raises(InvalidArgument, match="audit"):
        store.subscribe(Recorder(), name="audit", mode="background")

    event = store.push("thing_happened", "s", {})
    assert recorder.ids == [event.id]


def test_a_listener_with_a_name_attribute_stays_a_plain_listener(store: EventStore) -> None:
    class Named(Recorder):
        name = "named"

    earlier = store.push("thing_happened", "s", {})
    listener = Named()

    assert store.subscribe(listener) is listener
    later = store.push("thing_happened", "s", {})

    assert listener.ids == [later.id]  # no replay of the log: a plain listener
    assert earlier.id not in listener.ids
    assert store.subscription_status() == []  # no checkpoint kept


def test_a_name_makes_a_named_subscription(store: EventStore) -> None:
    class Named(Recorder):
        name = "named"

    earlier = store.push("thing_happened", "s", {})

    subscription = store.subscribe(Named(), name="audit")

    assert isinstance(subscription, Subscription)
    assert subscription.name == "audit"
    assert subscription.checkpoint == earlier.position
    assert [status.name for status in store.subscription_status()] == ["audit"]


@pytest.mark.parametrize(
    "option",
    [
        {"mode": "background"},
        {"mode": "inline"},
        {"names": ["thing_happened"]},
        {"streams": "s"},
        {"max_attempts": 1},
        {"on_failure": "stop"},
        {"poll_interval": 1.0},
    ],
)
def test_a_named_subscriptions_option_for_a_plain_listener_is_refused(
    store: EventStore, option: dict[str, Any]
) -> None:
    recorder = Recorder()
    with pytest.raises(InvalidArgument, match="name="):
        store.subscribe(recorder, **option)

    store.push("thing_happened", "s", {})
    assert recorder.ids == []


def test_a_failing_first_inline_catch_up_leaves_nothing_subscribed_and_a_retry_works(
    store: EventStore,
) -> None:
    good, bad = push_with_one_bad(store)
    flaky = Flaky()

    with pytest.raises(ProjectionError, match="strict"):
        store.subscribe(flaky, name="strict", max_attempts=1, on_failure="stop")
    later = store.push("thing_happened", "s", {"n": 9})
    assert flaky.ids == [good[0].id]  # not driven by the push: not subscribed

    flaky.fixed = True
    subscription = store.subscribe(flaky, name="strict", max_attempts=1, on_failure="stop")

    assert subscription.checkpoint == later.position
    assert flaky.ids == [good[0].id, bad.id, *(e.id for e in good[1:]), later.id]


@pytest.mark.parametrize("bad", ["", 42])
def test_a_subscription_name_must_be_a_non_empty_string(store: EventStore, bad: Any) -> None:
    with pytest.raises(InvalidArgument):
        store.subscribe(Recorder(), name=bad)


def test_a_background_driver_survives_a_failure_of_the_store(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    engine = store._core.engine  # what drivers read through, as operations
    real_read_all = engine.read_all
    calls = {"n": 0}

    def flaky_read_all(**options: Any) -> Op[list[Event]]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise BackendError("the server went away")
        page: list[Event] = yield from real_read_all(**options)
        return page

    monkeypatch.setattr(engine, "read_all", flaky_read_all)

    class Seen:
        name = "seen"

        def on_event(self, event: Event) -> None:
            seen.append(event.version)

    subscription = store.subscribe(
        Seen(), name="seen", mode="background", poll_interval=0.01, backoff=0.01
    )
    last = [store.push("thing_happened", "s", {}) for _ in range(5)][-1]
    subscription.wait_for(last, timeout=20)
    assert seen == [1, 2, 3, 4, 5]
    assert calls["n"] >= 2
    assert subscription.error is None


def test_a_projection_cannot_be_subscribed_under_another_name(store: EventStore) -> None:
    class Named:
        name = "kept_as_this"

        def load_checkpoint(self) -> int:
            return 0

        def apply(self, events: list[Event], up_to: int) -> None:
            """Nothing to apply."""

        def apply_parked(self, event: Event) -> None:
            """Nothing to apply."""

    with pytest.raises(InvalidArgument, match="kept_as_this"):
        store.subscribe(Named(), name="another")


# -- another driver moving the checkpoint ------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_checkpoint_moved_by_another_driver_while_parking_is_quiet_and_the_subscription_goes_on(
    store: EventStore, mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    class TakenOver(Recorder):
        """Fails on the bad event; on its last attempt another driver moves the checkpoint
        past it (as a driver that took over would), before this one parks it."""

        def __init__(self) -> None:
            super().__init__()
            self.attempts = 0

        def on_event(self, event: Event) -> None:
            if event.data.get("bad"):
                self.attempts += 1
                if self.attempts == 2:
                    before = store.backend.load_checkpoint("taken")
                    assert store.backend.save_checkpoint("taken", event.position, expected=before)
                fail_on_purpose(event)
            super().on_event(event)

    projection = TakenOver()
    subscription = store.subscribe(projection, name="taken", mode=mode, max_attempts=2, backoff=0)
    with caplog.at_level(logging.INFO, "conduit"):
        good, bad = push_with_one_bad(store)
        subscription.wait_for(good[-1], timeout=WAIT)
        later = store.push("thing_happened", "s", {"n": 9})
        subscription.wait_for(later, timeout=WAIT)

    assert subscription.error is None
    assert projection.ids == [event.id for event in [*good, later]]
    assert [parked.event_id for parked in store.parked("taken")] == [bad.id]
    assert "another driver moved the checkpoint" in caplog.text
    assert not [r for r in caplog.records if r.exc_info], (
        "the lost checkpoint was logged as a failure"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and "parked" not in r.msg]


# -- status with filters -----------------------------------------------------------


def test_status_of_a_running_subscription_counts_only_what_its_filters_keep(
    store: EventStore,
) -> None:
    flaky = Flaky()
    subscription = store.subscribe(
        flaky,
        name="orders",
        names=["thing_happened"],
        streams="order-",
        max_attempts=1,
        on_failure="stop",
    )
    handled = store.push("thing_happened", "order-1", {"n": 0})
    store.push("thing_happened", "order-2", {"n": 1, "bad": True})  # stops it
    store.push("thing_happened", "customer-1", {"n": 2})  # another prefix
    store.push("thing_reported", "order-3", {"n": 3})  # another name
    store.push("thing_happened", "order-4", {"n": 4})

    status = subscription.status()
    [listed] = store.subscription_status()

    assert status.checkpoint == handled.position
    assert status.behind == 2  # order-2 and order-4
    assert listed == status


def test_status_with_a_stream_prefix_reads_a_bounded_part_of_the_log(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conduit.subscriptions import lag

    monkeypatch.setattr(lag, "SCAN_LIMIT", 3)
    flaky = Flaky()
    subscription = store.subscribe(
        flaky, name="orders", streams="order-", max_attempts=1, on_failure="stop"
    )
    store.push("thing_happened", "order-1", {"n": 0, "bad": True})  # stops it
    for n in range(1, 9):
        store.push("thing_happened", "customer-1" if n % 2 else f"order-{n}", {"n": n})
    read: list[int] = []
    real_read_all = store.backend.read_all

    def counting_read_all(**options: Any) -> list[Event]:
        page = real_read_all(**options)
        read.append(len(page))
        return page

    monkeypatch.setattr(store.backend, "read_all", counting_read_all)

    status = subscription.status()

    assert sum(read) <= 3
    # Exact over the first three events (order-1, customer-1, order-2), then an
    # upper bound: the six events after them, whatever their stream.
    assert status.behind == 2 + 6
    assert status.behind >= 5  # the exact count


# -- polling -------------------------------------------------------------------------


class CountingBackend:
    """Wraps a store's engine and counts the calls made to it."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._backend, name)
        if not callable(found) or name in ("add_waker", "remove_waker"):
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return found(*args, **kwargs)

        return counted


def test_an_idle_background_subscription_looks_at_the_log_less_and_less_often(
    store: EventStore,
) -> None:
    counting = CountingBackend(store.backend)
    store.backend = counting
    subscription = store.subscribe(Recorder(), name="idle", mode="background")
    event = store.push("thing_happened", "s", {})
    subscription.wait_for(event, timeout=WAIT)
    before = counting.calls

    # A bounded period of a quiet log. A loaded machine only makes fewer calls;
    # polling every poll_interval (20 ms) would make some 300 (two a look).
    time.sleep(3.0)
    calls = counting.calls - before

    assert calls <= 40, f"{calls} calls to the engine in 3 s of a quiet log"
    assert subscription.error is None


def test_a_push_through_the_store_wakes_an_idle_background_driver_at_once(
    store: EventStore,
) -> None:
    recorder = Recorder()
    subscription = store.subscribe(
        recorder, name="woken", mode="background", poll_interval=60.0, max_poll_interval=60.0
    )
    eventually(lambda: subscription.active, "the driver takes the lease")

    event = store.push("thing_happened", "s", {})

    subscription.wait_for(event, timeout=WAIT)  # well before its next look, 60 s on
    assert recorder.ids == [event.id]


@pytest.mark.parametrize("bad", [0, -1.0, "fast"])
def test_poll_intervals_must_be_positive(store: EventStore, bad: Any) -> None:
    for option in ("poll_interval", "max_poll_interval", "lease_ttl"):
        with pytest.raises(InvalidArgument, match=option):
            store.subscribe(Recorder(), name="audit", mode="background", **{option: bad})


def listening(postgres_url: str, schema: str) -> bool:
    """Whether a session of the server LISTENs for the appends to ``schema`` (its last
    statement was the LISTEN, and it waits for notifications since)."""
    import psycopg

    from conduit.backends.postgres.sql import channel, quote_ident

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = %s",
            (f"LISTEN {quote_ident(channel(schema))}",),
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.postgres
def test_notify_wakes_a_background_driver_for_an_event_pushed_by_another_store(
    postgres_url: str,
) -> None:
    schema = f"notify_{uuid.uuid4().hex[:8]}"
    with (
        EventStore(postgres_url, schema=schema, notify=True) as store,
        EventStore(postgres_url, schema=schema, notify=True) as other,
    ):
        store.setup()
        recorder = Recorder()
        subscription = store.subscribe(
            recorder, name="notified", mode="background", poll_interval=60.0
        )
        eventually(lambda: subscription.active, "the driver takes the lease")
        eventually(lambda: listening(postgres_url, schema), "the store LISTENs")

        event = other.push("thing_happened", "s", {})

        subscription.wait_for(event, timeout=WAIT)  # well before its next look, 60 s on
        assert recorder.ids == [event.id]


@pytest.mark.postgres
def test_a_store_without_notify_opens_no_listening_connection(postgres_url: str) -> None:
    schema = f"quiet_{uuid.uuid4().hex[:8]}"
    with EventStore(postgres_url, schema=schema) as store:
        store.setup()
        subscription = store.subscribe(Recorder(), name="polled", mode="background")
        eventually(lambda: subscription.active, "the driver takes the lease")
        event = store.push("thing_happened", "s", {})
        subscription.wait_for(event, timeout=WAIT)
        assert not listening(postgres_url, schema)


def test_status_counts_at_most_a_bounded_number_of_events_behind(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conduit.subscriptions import lag

    monkeypatch.setattr(lag, "BEHIND_LIMIT", 5)
    events = store.push_many("s", [("thing_happened", {})] * 12)
    assert len(list(store.read_all())) == 12  # reads its own push (a status only looks)
    store.backend.save_checkpoint("far-behind", 0, expected=None)
    (status,) = store.subscription_status()
    assert (status.name, status.behind, status.capped) == ("far-behind", 5, True)
    store.backend.save_checkpoint("far-behind", events[9].position, expected=0)
    (status,) = store.subscription_status()
    assert (status.behind, status.capped) == (2, False)
