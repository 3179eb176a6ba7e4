"""Snapshots and aggregates: loading entities, snapshot policies, concurrent saves."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from conduit import (
    Aggregate,
    EventStore,
    InvalidArgument,
    InvalidEvent,
    SnapshotWarning,
    WrongExpectedVersion,
    new_id,
)
from conduit.events import Snapshot, stream_key
from conduit.snapshots import class_name

APPLIED: list[int] = []
"""Versions of events applied by Account, so that tests see what a load replayed."""


@dataclass(frozen=True)
class Deposited:
    amount: Decimal
    on: date


@dataclass(frozen=True)
class Renamed:
    owner: str


class Account(Aggregate):
    # Annotated, so that snapshots restore decimals and dates, not their text.
    owner: str
    balance: Decimal
    days: set[date]

    def __init__(self) -> None:
        self.owner = ""
        self.balance = Decimal(0)
        self.days = set()

    def deposit(self, amount: Decimal, on: date) -> None:
        self.record(Deposited(amount, on))

    def rename(self, owner: str) -> None:
        self.record(Renamed(owner))

    def apply_deposited(self, event: Deposited) -> None:
        APPLIED.append(1)
        self.balance += event.amount
        self.days.add(event.on)

    def apply_renamed(self, event: Renamed) -> None:
        APPLIED.append(1)
        self.owner = event.owner

    def state(self) -> tuple[Any, ...]:
        return (self.owner, self.balance, self.days, self.version)


def typed(store: EventStore, **options: Any) -> EventStore:
    return EventStore(store.backend, types=[Deposited, Renamed], **options)


def long_account(store: EventStore, events: int) -> Account:
    account = Account()
    account.rename("Kris")
    for i in range(1, events):
        account.deposit(Decimal(i) / 100, date(2024, 1, 1 + i % 28))
    store.save(account)
    return account


def replayed(load: Callable[[], Account]) -> tuple[Account, int]:
    APPLIED.clear()
    account = load()
    return account, len(APPLIED)


def test_an_entity_of_10000_events_loads_equal_with_and_without_snapshots(
    store: EventStore,
) -> None:
    reader = typed(store, snapshot_every=100)
    saved = long_account(reader, 10_000)
    full, full_count = replayed(lambda: reader.load(saved.id, Account, use_snapshots=False))
    assert full_count == 10_000
    assert full.state() == saved.state()
    first, _ = replayed(lambda: reader.load(saved.id, Account))  # takes a snapshot at 10,000
    assert first.state() == saved.state()
    first.deposit(Decimal("0.01"), date(2025, 1, 1))
    reader.save(first)
    again, count = replayed(lambda: reader.load(saved.id, Account))
    assert count == 1
    full, _ = replayed(lambda: reader.load(saved.id, Account, use_snapshots=False))
    assert again.state() == full.state()
    assert again.version == 10_001


def test_save_takes_a_snapshot_every_n_events(store: EventStore) -> None:
    reader = typed(store, snapshot_every=10)
    account = long_account(reader, 25)
    kept = store.backend.load_snapshot(stream_key(account.id), class_name(Account))
    assert kept is not None
    assert kept.version == 25
    _, count = replayed(lambda: reader.load(account.id, Account))
    assert count == 0


def test_without_a_policy_no_snapshot_is_taken(store: EventStore) -> None:
    reader = typed(store)
    account = long_account(reader, 30)
    reader.load(account.id, Account)
    assert store.backend.load_snapshot(stream_key(account.id), class_name(Account)) is None


def test_an_explicit_snapshot_is_used_by_load(store: EventStore) -> None:
    reader = typed(store)
    account = long_account(reader, 20)
    reader.save_snapshot(account.id, account, account.version)
    account.deposit(Decimal(5), date(2024, 2, 1))
    reader.save(account)
    loaded, count = replayed(lambda: reader.load(account.id, Account))
    assert count == 1
    assert loaded.state() == account.state()


def test_a_corrupt_snapshot_is_ignored_with_a_warning(store: EventStore) -> None:
    reader = typed(store)
    account = long_account(reader, 20)
    corrupt = Snapshot(class_name(Account), 20, 1, '{"balance": "not a number", "days": 3}')
    store.backend.save_snapshot(stream_key(account.id), corrupt)
    with pytest.warns(SnapshotWarning, match="cannot be decoded"):
        loaded, count = replayed(lambda: reader.load(account.id, Account))
    assert count == 20
    assert loaded.state() == account.state()


def test_a_changed_snapshot_version_forces_a_full_replay(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = typed(store)
    account = long_account(reader, 20)
    reader.save_snapshot(account.id, account, account.version)
    monkeypatch.setattr(Account, "snapshot_version", 2)
    loaded, count = replayed(lambda: reader.load(account.id, Account))
    assert count == 20
    assert loaded.state() == account.state()


def test_a_newer_snapshot_is_not_replaced_by_an_older_one(store: EventStore) -> None:
    reader = typed(store)
    account = long_account(reader, 20)
    reader.save_snapshot(account.id, account, 20)
    reader.save_snapshot(account.id, Account(), 5)
    kept = store.backend.load_snapshot(stream_key(account.id), class_name(Account))
    assert kept is not None
    assert kept.version == 20


def test_a_state_that_would_not_read_back_equal_is_not_snapshotted(store: EventStore) -> None:
    class Loose:
        def __init__(self) -> None:
            self.when = datetime(2024, 1, 1, tzinfo=UTC)  # not annotated: would read as text

    with pytest.raises(InvalidArgument, match="would not read back equal") as refused:
        store.save_snapshot("s", Loose(), 1)
    assert isinstance(refused.value, ValueError)  # as it was before it was a ConduitError
    with pytest.raises(InvalidEvent, match="naive"):
        store.save_snapshot("s", _Naive(), 1)


class _Naive:
    when: datetime

    def __init__(self) -> None:
        self.when = datetime(2024, 1, 1)


class Counter:
    """A plain entity: no base class, rebuilt with replay's rules."""

    total: int

    def __init__(self) -> None:
        self.total = 0

    def apply_counted(self, event: Any) -> None:
        self.total += event.data["n"]


def test_plain_entities_load_with_snapshots_too(store: EventStore) -> None:
    reader = EventStore(store.backend, snapshot_every=5)
    reader.push_many("c", [("counted", {"n": n}) for n in range(12)])
    assert reader.load("c", Counter).total == 66
    kept = store.backend.load_snapshot(stream_key("c"), class_name(Counter))
    assert kept is not None
    assert kept.version == 12
    reader.push("counted", "c", {"n": 100})
    assert reader.load("c", Counter).total == 166


class Custom:
    """An entity with its own snapshot form."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def apply_added(self, event: Any) -> None:
        self.items.append(event.data["item"])

    def to_snapshot(self) -> dict[str, Any]:
        return {"joined": ",".join(self.items)}

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> Custom:
        entity = cls()
        entity.items = data["joined"].split(",") if data["joined"] else []
        return entity


def test_to_snapshot_and_from_snapshot_are_used_when_defined(store: EventStore) -> None:
    store.push_many("x", [("added", {"item": "a"}), ("added", {"item": "b"})])
    store.save_snapshot("x", store.load("x", Custom), 2)
    kept = store.backend.load_snapshot(stream_key("x"), class_name(Custom))
    assert kept is not None
    assert kept.data == '{"joined":"a,b"}'
    store.push("added", "x", {"item": "c"})
    assert store.load("x", Custom).items == ["a", "b", "c"]


def test_loading_a_stream_with_no_events_gives_a_new_entity(store: EventStore) -> None:
    account = typed(store).load(new_id(), Account)
    assert account.version == 0
    assert account.balance == 0


def test_two_concurrent_saves_one_wins_the_other_writes_nothing(
    make_store: Callable[[], EventStore],
) -> None:
    first, second = typed(make_store()), typed(make_store())
    account = long_account(first, 3)
    copies = [first.load(account.id, Account), second.load(account.id, Account)]
    stores = [first, second]
    outcomes: list[object] = [None, None]
    barrier = threading.Barrier(2)

    def edit(index: int) -> None:
        mine = copies[index]
        for n in range(3):
            mine.deposit(Decimal(index * 10 + n), date(2024, 3, 1))
        barrier.wait()
        try:
            outcomes[index] = stores[index].save(mine)
        except WrongExpectedVersion as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=edit, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [o for o in outcomes if isinstance(o, WrongExpectedVersion)]
    assert len(errors) == 1
    assert errors[0].expected == 3
    winner = next(i for i, o in enumerate(outcomes) if isinstance(o, list))
    events = first.get(account.id)
    assert len(events) == 6
    assert [e.payload.amount for e in events[3:]] == [  # type: ignore[attr-defined]
        Decimal(winner * 10 + n) for n in range(3)
    ]
    assert first.load(account.id, Account, use_snapshots=False).state() == copies[winner].state()
    loser = copies[1 - winner]
    assert len(loser.pending_events) == 3  # kept: reload and try again
