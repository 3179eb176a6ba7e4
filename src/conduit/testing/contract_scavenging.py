"""Contract: removals while others write and read, each thread with its own store.

Bounded in size, never in time: the tests count outcomes, they do not time them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from conduit import Event, EventStore, StreamDeleted
from conduit.testing.waits import eventually, run_together

__all__ = [
    "test_a_push_racing_a_hard_delete_is_removed_or_refused",
    "test_scavenging_while_writers_append_and_a_reader_follows_the_log",
]

WRITERS = 4
EVENTS_PER_WRITER = 120
MAX_RACING_PUSHES = 5000  # a bound: the delete comes after about 20


def test_a_push_racing_a_hard_delete_is_removed_or_refused(
    make_store: Callable[[], EventStore],
) -> None:
    pushers = [make_store() for _ in range(3)]
    deleter = make_store()
    deleter.push("opened", "raced", {})
    landed: list[list[Event]] = [[] for _ in pushers]
    refused = [0 for _ in pushers]

    def work(index: int) -> None:
        if index == len(pushers):
            while deleter.stream_version("raced") < 20:
                threading.Event().wait(0.001)  # delete mid-race, the pushers under way
            deleter.delete_stream("raced", hard=True)
            return
        store = pushers[index]
        for n in range(MAX_RACING_PUSHES):
            try:
                landed[index].append(store.push("raced", "raced", {"by": index, "n": n}))
            except StreamDeleted:
                refused[index] += 1
                if refused[index] == 3:  # and again: once refused, always refused
                    return
            else:
                assert not refused[index], "a push landed after one was refused"

    run_together(len(pushers) + 1, work)
    reader = make_store()
    assert [e for e in reader.read_all() if e.stream_id == "raced"] == []
    assert reader.get("raced") == []
    assert refused == [3, 3, 3]
    assert sum(len(pushed) for pushed in landed) >= 19


def test_scavenging_while_writers_append_and_a_reader_follows_the_log(
    make_store: Callable[[], EventStore],
) -> None:
    setup = make_store()
    for writer in range(WRITERS):
        setup.push("opened", f"capped-{writer}", {})
        setup.set_stream_metadata(f"capped-{writer}", max_count=3)
    writers = [make_store() for _ in range(WRITERS)]
    scavenger, tailer = make_store(), make_store()
    pushed: list[list[Event]] = [[] for _ in writers]
    done = threading.Event()
    seen: list[Event] = []
    passes = [0]

    def work(index: int) -> None:
        if index < WRITERS:
            store = writers[index]
            for n in range(EVENTS_PER_WRITER):
                # Each writer also feeds a stream no limit touches: what must stay.
                stream = f"capped-{index}" if n % 2 else f"kept-{index}"
                pushed[index].append(store.push("wrote", stream, {"n": n}))
            return
        if index == WRITERS:  # the scavenger, over and over until the writers are done
            # (at least once: on memory the writers may be done before its first pass)
            while True:
                scavenger.scavenge(batch_size=16)
                passes[0] += 1
                if done.is_set():
                    return
        position = 0  # the tailer: follows the log until it has seen every writer's last
        while True:
            page = list(tailer.read_all(after=position, limit=50))
            seen.extend(page)
            if page:
                position = page[-1].position
            elif done.is_set() and not page:
                return

    def watch(index: int) -> None:
        if index < WRITERS + 2:
            work(index)
            return
        # The last thread ends the scavenger and the tailer once the writers are done.
        while sum(len(p) for p in pushed) < WRITERS * EVENTS_PER_WRITER:
            threading.Event().wait(0.01)
        done.set()

    run_together(WRITERS + 3, watch)
    scavenger.scavenge()
    everything = [e for p in pushed for e in p]
    positions = [e.position for e in everything]
    assert len(set(positions)) == len(positions), "a position was given twice"
    seen_positions = [e.position for e in seen]
    assert seen_positions == sorted(set(seen_positions)), "the reader saw one twice or out of order"
    remaining = {
        e.position for e in tailer.read_all() if not str(e.stream_id).startswith("conduit.")
    }
    written = set(positions) | {e.position for e in setup.read_all() if e.name == "opened"}
    assert remaining <= written
    missed = {p for p in remaining if p <= max(seen_positions)} - set(seen_positions)
    assert not missed, f"the reader skipped events still stored: {sorted(missed)[:5]}"
    for index in range(WRITERS):
        kept = [e for e in pushed[index] if e.stream_id == f"kept-{index}"]
        assert tailer.get(f"kept-{index}") == kept
        capped = [e.data["n"] for e in tailer.get(f"capped-{index}")]
        assert capped == [EVENTS_PER_WRITER - 5, EVENTS_PER_WRITER - 3, EVENTS_PER_WRITER - 1]
        # The scavenger removed the rest (PostgreSQL: the log's last events are read
        # once no transaction elsewhere on the server holds the reader horizon back).
        stream = f"capped-{index}"

        def kept_three(stream: str = stream) -> bool:
            return len([e for e in tailer.read_all() if e.stream_id == stream]) == 3

        eventually(kept_three, f"{stream} keeps its 3 last events in the log")
    assert passes[0] >= 1
