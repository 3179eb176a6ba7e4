"""Contract: leases, which elect the one driver of a subscription, on ``store.backend``.

A lease is held by one owner at a time; its owner renews it by taking it
again and gives it up with ``release_lease``. How a lease of a holder that
died ends is the engine's to declare, with a class attribute of its backend:

- ``leases_expire = True`` (the default, when the attribute is absent): a
  lease its owner does not renew within ``ttl`` seconds is free for another
  owner (SQLite, memory: a row or an entry with an expiry);
- ``leases_expire = False``: leases ignore ``ttl`` and last as long as the
  holder's session, ending when its store closes or its process dies
  (PostgreSQL: a session advisory lock on a connection of its own).

The lints of the other kind are skipped, with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from conduit import EventStore
from conduit.testing.waits import eventually, run_together, wait_past

__all__ = [
    "test_a_lease_does_not_hold_leases_of_other_names",
    "test_a_lease_ends_with_its_holders_store",
    "test_a_lease_is_held_by_one_owner_at_a_time",
    "test_a_lease_is_held_by_one_store_at_a_time",
    "test_a_lease_its_holder_no_longer_has_is_not_held",
    "test_a_lease_not_renewed_expires_after_its_ttl",
    "test_a_released_lease_is_free_for_another_owner",
    "test_an_expired_lease_taken_by_another_is_not_renewed_by_its_former_owner",
    "test_concurrent_owners_take_a_free_lease_exactly_once",
    "test_leases_held_are_those_some_driver_holds_now",
    "test_release_by_an_owner_that_does_not_hold_the_lease_changes_nothing",
    "test_renewing_a_lease_keeps_it_past_its_first_ttl",
    "test_the_owner_renews_its_lease",
]

LONG = 60.0
"""A ttl no test outlives: the lease cannot expire while the test looks."""

SHORT = 0.2
"""A ttl the tests wait past."""

RACERS = 8


def leases_expire(store: EventStore) -> bool:
    """Whether the store's engine declares that leases expire after their ttl."""
    return bool(getattr(store.backend, "leases_expire", True))


def test_a_lease_is_held_by_one_owner_at_a_time(store: EventStore) -> None:
    backend = store.backend
    assert backend.try_lease("ledger", "worker-a", LONG) is True
    assert backend.try_lease("ledger", "worker-b", LONG) is False


def test_a_lease_is_held_by_one_store_at_a_time(make_store: Callable[[], EventStore]) -> None:
    first, second = make_store(), make_store()
    assert first.backend.try_lease("ledger", "worker-a", LONG) is True
    assert second.backend.try_lease("ledger", "worker-b", LONG) is False


def test_the_owner_renews_its_lease(store: EventStore) -> None:
    backend = store.backend
    backend.try_lease("ledger", "worker-a", LONG)
    assert backend.try_lease("ledger", "worker-a", LONG) is True
    assert backend.try_lease("ledger", "worker-b", LONG) is False


def test_renewing_a_lease_keeps_it_past_its_first_ttl(store: EventStore) -> None:
    backend = store.backend
    taken = time.monotonic()
    assert backend.try_lease("ledger", "worker-a", SHORT) is True
    assert backend.try_lease("ledger", "worker-a", LONG) is True
    wait_past(taken + 2 * SHORT)
    assert backend.try_lease("ledger", "worker-b", LONG) is False


def test_a_lease_does_not_hold_leases_of_other_names(store: EventStore) -> None:
    backend = store.backend
    backend.try_lease("ledger", "worker-a", LONG)
    assert backend.try_lease("mailer", "worker-b", LONG) is True
    assert backend.try_lease("Ledger", "worker-b", LONG) is True  # names are case-sensitive


def test_a_released_lease_is_free_for_another_owner(store: EventStore) -> None:
    backend = store.backend
    backend.try_lease("ledger", "worker-a", LONG)
    backend.release_lease("ledger", "worker-a")
    assert backend.try_lease("ledger", "worker-b", LONG) is True
    assert backend.try_lease("ledger", "worker-a", LONG) is False


def test_release_by_an_owner_that_does_not_hold_the_lease_changes_nothing(
    store: EventStore,
) -> None:
    backend = store.backend
    backend.try_lease("ledger", "worker-a", LONG)
    backend.release_lease("ledger", "worker-b")
    backend.release_lease("mailer", "worker-a")
    assert backend.try_lease("ledger", "worker-b", LONG) is False
    assert backend.try_lease("ledger", "worker-a", LONG) is True


def test_concurrent_owners_take_a_free_lease_exactly_once(
    make_store: Callable[[], EventStore],
) -> None:
    stores = [make_store() for _ in range(RACERS)]
    won = run_together(RACERS, lambda i: stores[i].backend.try_lease("ledger", f"worker-{i}", LONG))
    assert won.count(True) == 1


def test_a_lease_not_renewed_expires_after_its_ttl(store: EventStore) -> None:
    if not leases_expire(store):
        pytest.skip("the engine declares leases_expire = False: leases end with the session")
    backend = store.backend
    assert backend.try_lease("ledger", "worker-a", SHORT) is True
    eventually(
        lambda: backend.try_lease("ledger", "worker-b", LONG),
        "another owner takes the lease its owner stopped renewing",
    )


def test_an_expired_lease_taken_by_another_is_not_renewed_by_its_former_owner(
    store: EventStore,
) -> None:
    if not leases_expire(store):
        pytest.skip("the engine declares leases_expire = False: leases end with the session")
    backend = store.backend
    backend.try_lease("ledger", "worker-a", SHORT)
    eventually(lambda: backend.try_lease("ledger", "worker-b", LONG), "worker-b takes the lease")
    assert backend.try_lease("ledger", "worker-a", LONG) is False


def test_a_lease_ends_with_its_holders_store(make_store: Callable[[], EventStore]) -> None:
    holder, other = make_store(), make_store()
    if leases_expire(holder):
        pytest.skip("the engine declares that leases expire after their ttl, not with a session")
    taken = time.monotonic()
    assert holder.backend.try_lease("ledger", "worker-a", SHORT) is True
    wait_past(taken + 2 * SHORT)  # a session's lease ignores its ttl
    assert other.backend.try_lease("ledger", "worker-b", LONG) is False
    holder.close()
    eventually(
        lambda: other.backend.try_lease("ledger", "worker-b", LONG),
        "another owner takes the lease once its holder's store is closed",
    )


def test_leases_held_are_those_some_driver_holds_now(make_store: Callable[[], EventStore]) -> None:
    holder, other = make_store(), make_store()
    assert holder.backend.try_lease("ledger", "worker-a", LONG) is True
    assert holder.backend.try_lease("mailer", "worker-a", LONG) is True
    holder.backend.release_lease("mailer", "worker-a")
    wanted = ["ledger", "mailer", "never-taken"]
    assert other.backend.leases_held(wanted) == {"ledger"}  # another store sees it
    assert holder.backend.leases_held(wanted) == {"ledger"}
    assert other.backend.leases_held([]) == set()


def test_a_lease_its_holder_no_longer_has_is_not_held(
    make_store: Callable[[], EventStore],
) -> None:
    holder, other = make_store(), make_store()
    expires = leases_expire(holder)
    assert holder.backend.try_lease("ledger", "worker-a", SHORT if expires else LONG) is True
    assert other.backend.leases_held(["ledger"]) == {"ledger"}
    if not expires:
        holder.close()  # a session's lease ends with it
    eventually(
        lambda: other.backend.leases_held(["ledger"]) == set(),
        "a lease past its ttl, or of a closed store, is no longer held",
    )
