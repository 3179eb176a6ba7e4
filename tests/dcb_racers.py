"""Workers of the DCB race tests, importable by spawned children (see torture_workers).

Each worker opens its own store from a spec (``{"url": ..., "schema": ...}``)
or, for the memory engine, is handed the store itself and runs in a thread.
Every loop is bounded in count and in wall-clock time.
"""

from __future__ import annotations

import random
import time
from typing import Any

from conduit import (
    AppendCondition,
    AppendConditionFailed,
    EventStore,
    Query,
    QueryItem,
    WrongExpectedVersion,
)

__all__ = ["race_for_seats", "transfer", "write_own_tags"]


def _open(spec: Any) -> tuple[EventStore, bool]:
    if isinstance(spec, EventStore):
        return spec, False
    options: dict[str, Any] = {}
    if spec.get("schema"):  # PostgreSQL: a small pool, as the server is shared
        options.update(schema=spec["schema"], pool_size=2)
    if spec["url"].startswith("sqlite"):
        options["synchronous"] = "normal"
    return EventStore(spec["url"], **options), True


def _decide(store: EventStore, query: Query) -> tuple[list[Any], int]:
    """The query's matches and the position to base a decision on."""
    head = store.head_position()
    found = store.read_query(query)
    after = max([head, *(event.position for event in found)])
    return found, after


def race_for_seats(
    spec: Any, racer: int, rounds: int, capacity: int, barrier: Any, deadline: float
) -> dict[str, int]:
    """For each course in turn, take seats while fewer than ``capacity`` are taken."""
    store, owned = _open(spec)
    wins = losses = 0
    try:
        barrier.wait(timeout=120)
        for course in range(rounds):
            query = Query(QueryItem(names=["seat_taken"], tags=[f"course:{course}"]))
            failed = 0
            while True:  # bounded by the deadline; each failure: someone else took a seat
                if time.time() > deadline:
                    raise TimeoutError(f"racer {racer} at course {course} past the deadline")
                if failed > 20:
                    # On PostgreSQL, reads stop at the reader horizon: while a
                    # transaction elsewhere holds it back, a seat just taken
                    # stays unseen and each try fails. Wait for it to move.
                    time.sleep(0.05)
                taken, after = _decide(store, query)
                if len(taken) >= capacity:
                    break
                try:
                    store.append(
                        [
                            {
                                "name": "seat_taken",
                                "data": {"racer": racer},
                                "tags": [f"course:{course}", f"student:{racer}"],
                            }
                        ],
                        condition=AppendCondition(query, after=after),
                    )
                    wins += 1
                    break  # one seat per racer and course
                except AppendConditionFailed:
                    losses += 1
                    failed += 1
        return {"wins": wins, "losses": losses}
    finally:
        if owned:
            store.close()


def write_own_tags(spec: Any, writer: int, barrier: Any, seconds: float) -> dict[str, int]:
    """Conditional appends on a tag of this writer's own for ``seconds`` from the moment
    every writer is ready (the barrier)."""
    store, owned = _open(spec)
    appended = failures = 0
    query = Query(QueryItem(tags=[f"writer:{writer}"]))
    try:
        barrier.wait(timeout=120)
        until = time.time() + seconds
        last = store.head_position()
        while time.time() < until and appended < 100_000:
            try:
                [event] = store.append(
                    [{"name": "noted", "data": {"n": appended}, "tags": [f"writer:{writer}"]}],
                    condition=AppendCondition(query, after=last),
                )
                last = event.position
                appended += 1
            except AppendConditionFailed:
                failures += 1
                last = max(store.head_position(), last)
        return {"appended": appended, "failures": failures}
    finally:
        if owned:
            store.close()


def _balance(store: EventStore, account: str) -> tuple[int, int]:
    events = store.get(account)
    total = 0
    for event in events:
        total += event.data["amount"] if event.name == "credited" else -event.data["amount"]
    return total, len(events)


def transfer(
    spec: Any, worker: int, accounts: int, transfers: int, barrier: Any, deadline: float
) -> dict[str, int]:
    """``transfers`` transfers between random accounts, each retried on a conflict."""
    store, owned = _open(spec)
    rng = random.Random(worker)
    done = retries = 0
    try:
        barrier.wait(timeout=120)
        while done < transfers:
            if time.time() > deadline:
                raise TimeoutError(f"worker {worker} past the deadline after {done} transfers")
            a, b = rng.sample(range(accounts), 2)
            source, target = f"account-{a}", f"account-{b}"
            balance, source_version = _balance(store, source)
            _, target_version = _balance(store, target)
            amount = min(balance, rng.randint(1, 20))
            if amount <= 0:
                continue
            ref = f"{worker}-{done}"
            try:
                store.push_many(
                    {
                        source: [("debited", {"amount": amount, "ref": ref})],
                        target: [("credited", {"amount": amount, "ref": ref})],
                    },
                    expected_versions={source: source_version, target: target_version},
                )
                done += 1
            except WrongExpectedVersion:
                retries += 1
        return {"done": done, "retries": retries}
    finally:
        if owned:
            store.close()
