"""Contract: subscription checkpoints and their compare-and-set, on ``store.backend``.

Several drivers of one subscription (threads, processes, machines) may race
to move its checkpoint; ``save_checkpoint`` moves it only from the position
the caller loaded, so that exactly one of them wins each move — the first
insert included (``expected=None``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from conduit import EventStore
from conduit.testing.waits import run_together

__all__ = [
    "test_a_working_state_whose_driver_holds_no_lease_shows_as_stopped",
    "test_checkpoint_keeps_a_64_bit_position_exactly",
    "test_checkpoint_moves_from_the_expected_position",
    "test_checkpoint_of_a_subscription_that_never_ran_is_none",
    "test_checkpoint_with_a_stale_expected_position_is_not_moved",
    "test_checkpoints_are_kept_per_subscription",
    "test_checkpoints_list_every_subscription_by_name_code_points",
    "test_checkpoints_of_a_store_with_no_subscription_is_empty",
    "test_concurrent_first_saves_of_one_checkpoint_let_exactly_one_win",
    "test_concurrent_moves_from_one_position_let_exactly_one_win",
    "test_first_save_of_a_checkpoint_inserts_it",
    "test_first_save_of_a_checkpoint_that_exists_changes_nothing",
    "test_moving_a_checkpoint_that_does_not_exist_creates_nothing",
    "test_subscription_states_are_kept_by_name_and_replaced",
    "test_subscription_states_show_in_the_status_beside_the_checkpoint",
]

RACERS = 8


def test_checkpoint_of_a_subscription_that_never_ran_is_none(store: EventStore) -> None:
    assert store.backend.load_checkpoint("never-ran") is None


def test_first_save_of_a_checkpoint_inserts_it(store: EventStore) -> None:
    assert store.backend.save_checkpoint("ledger", 7, expected=None) is True
    assert store.backend.load_checkpoint("ledger") == 7


def test_first_save_of_a_checkpoint_that_exists_changes_nothing(store: EventStore) -> None:
    backend = store.backend
    backend.save_checkpoint("ledger", 7, expected=None)
    assert backend.save_checkpoint("ledger", 9, expected=None) is False
    assert backend.load_checkpoint("ledger") == 7


def test_checkpoint_moves_from_the_expected_position(store: EventStore) -> None:
    backend = store.backend
    backend.save_checkpoint("ledger", 7, expected=None)
    assert backend.save_checkpoint("ledger", 12, expected=7) is True
    assert backend.load_checkpoint("ledger") == 12
    assert backend.save_checkpoint("ledger", 3, expected=12) is True  # a replay moves it back
    assert backend.load_checkpoint("ledger") == 3


def test_checkpoint_with_a_stale_expected_position_is_not_moved(store: EventStore) -> None:
    backend = store.backend
    backend.save_checkpoint("ledger", 7, expected=None)
    backend.save_checkpoint("ledger", 12, expected=7)
    assert backend.save_checkpoint("ledger", 20, expected=7) is False
    assert backend.load_checkpoint("ledger") == 12


def test_moving_a_checkpoint_that_does_not_exist_creates_nothing(store: EventStore) -> None:
    assert store.backend.save_checkpoint("ledger", 5, expected=4) is False
    assert store.backend.load_checkpoint("ledger") is None
    assert store.backend.checkpoints() == []


def test_checkpoint_keeps_a_64_bit_position_exactly(store: EventStore) -> None:
    # PostgreSQL positions are (transaction id << 20) | ordinal: large integers.
    big = 2**62 + 12345
    store.backend.save_checkpoint("ledger", big, expected=None)
    assert store.backend.load_checkpoint("ledger") == big
    assert store.backend.save_checkpoint("ledger", big + 1, expected=big) is True
    assert store.backend.load_checkpoint("ledger") == big + 1


def test_checkpoints_are_kept_per_subscription(store: EventStore) -> None:
    backend = store.backend
    backend.save_checkpoint("ledger", 4, expected=None)
    backend.save_checkpoint("mailer", 9, expected=None)
    backend.save_checkpoint("ledger", 5, expected=4)
    assert (backend.load_checkpoint("ledger"), backend.load_checkpoint("mailer")) == (5, 9)
    assert backend.load_checkpoint("Ledger") is None  # names are case-sensitive


def test_checkpoints_of_a_store_with_no_subscription_is_empty(store: EventStore) -> None:
    assert store.backend.checkpoints() == []


def test_checkpoints_list_every_subscription_by_name_code_points(store: EventStore) -> None:
    names = ["mailer", "Ledger", "ledger", "é-report", "Z", "ledger-2"]
    for position, name in enumerate(names, 1):
        store.backend.save_checkpoint(name, position, expected=None)
    expected = sorted((name, position) for position, name in enumerate(names, 1))
    assert store.backend.checkpoints() == expected


def test_concurrent_first_saves_of_one_checkpoint_let_exactly_one_win(
    make_store: Callable[[], EventStore],
) -> None:
    stores = [make_store() for _ in range(RACERS)]
    won = run_together(
        RACERS, lambda i: stores[i].backend.save_checkpoint("ledger", 100 + i, expected=None)
    )
    assert won.count(True) == 1
    assert stores[0].backend.load_checkpoint("ledger") == 100 + won.index(True)


def test_concurrent_moves_from_one_position_let_exactly_one_win(
    make_store: Callable[[], EventStore],
) -> None:
    stores = [make_store() for _ in range(RACERS)]
    stores[0].backend.save_checkpoint("ledger", 50, expected=None)
    won = run_together(
        RACERS, lambda i: stores[i].backend.save_checkpoint("ledger", 100 + i, expected=50)
    )
    assert won.count(True) == 1
    assert stores[0].backend.load_checkpoint("ledger") == 100 + won.index(True)


def test_subscription_states_are_kept_by_name_and_replaced(store: EventStore) -> None:
    backend = store.backend
    assert backend.subscription_states() == []
    before = datetime.now(UTC) - timedelta(seconds=5)  # the database's clock may lag a little
    backend.save_subscription_state("relay-b", "relaying", None)
    backend.save_subscription_state("relay-a", "retrying", "BrokerError: refused")
    backend.save_subscription_state("relay-b", "stopped", None)
    states = backend.subscription_states()
    assert [(s.name, s.state, s.detail) for s in states] == [
        ("relay-a", "retrying", "BrokerError: refused"),
        ("relay-b", "stopped", None),
    ]
    assert all(s.updated_at.tzinfo is not None and s.updated_at > before for s in states)
    assert backend.checkpoints() == []  # a state is not a checkpoint


def test_subscription_states_show_in_the_status_beside_the_checkpoint(store: EventStore) -> None:
    pushed = store.push("thing_happened", "s-1", {})
    store.backend.save_checkpoint("relay-a", pushed.position, expected=None)
    store.backend.save_subscription_state("relay-a", "retrying", "BrokerError: refused")
    store.backend.save_subscription_state("relay-b", "retrying", None)  # no checkpoint yet
    a, b = store.subscription_status()
    assert (a.name, a.checkpoint, a.behind, b.name, b.checkpoint, b.behind) == (
        "relay-a",
        pushed.position,
        0,
        "relay-b",
        0,
        1,
    )
    assert a.state is not None
    assert b.state is not None
    assert (a.state.state, a.state.detail, b.state.state) == (
        "retrying",
        "BrokerError: refused",
        "retrying",
    )


def test_a_working_state_whose_driver_holds_no_lease_shows_as_stopped(store: EventStore) -> None:
    # A relay says relaying or idle only while it holds (and renews) its lease: one
    # that says so without it was killed before it could say it stopped.
    backend = store.backend
    assert backend.try_lease("relay-b", "worker-b", 60.0) is True
    backend.save_subscription_state("relay-a", "relaying", None)
    backend.save_subscription_state("relay-b", "idle", None)
    backend.save_subscription_state("relay-c", "retrying", "BrokerError: refused")
    kept = {s.name: s for s in backend.subscription_states()}
    a, b, c = (status.state for status in store.subscription_status())
    assert a is not None
    assert b is not None
    assert c is not None
    assert (a.name, a.state, b.state, c.state) == ("relay-a", "stopped", "idle", "retrying")
    assert a.detail is not None
    assert "it last said 'relaying'" in a.detail
    assert a.updated_at == kept["relay-a"].updated_at  # when it was last heard of
    assert kept["relay-a"].state == "relaying"  # what it said is kept as it said it
