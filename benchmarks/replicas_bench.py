"""Read replicas (issue 14): reading the global log and a stream from a hot standby
against reading them from the primary, in the same run.

``python -m benchmarks --only replicas`` starts a PostgreSQL 15 primary and one
asynchronous hot standby of its own on free ports of 127.0.0.1 (the test
harness, tests/pgcluster/), fills one store on the primary, waits until the
standby has replayed it, and then times the same reads through two stores:
one on the primary alone, one with the standby as its replica. The readers
never push, so no read waits for its own writes; a third figure times what a
store that just pushed pays to read its own event through the replica (it
waits for the replica's replay).

Its figures form a block of docs/benchmarks.md of their own (between
:data:`START` and :data:`END`), which this run replaces and the default run keeps.
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.common import Row, Section, Settings, Target, event_data
from conduit import EventStore

if TYPE_CHECKING:
    from pgcluster import Cluster

__all__ = ["END", "START", "keep_block", "replace_block", "run"]

START = "<!-- replicas:start -->"
END = "<!-- replicas:end -->"

REPLICA = "replica"
PRIMARY = "primary"
GLOBAL_READ = "read the global log (events/s)"
STREAM_READ = "read one 10,000-event stream (events/s)"
OWN_WRITE = "push, then read it back (ms, median)"
BATCH = 100
SCHEMA = "bench_replicas"
ROUNDS = 6
ROUNDS_QUICK = 2
"""Each read is timed for this many times the settings' duration, in alternation."""
REPEATS = 3
"""The whole timing is repeated; the table shows the median repeat (by its ratio), and
every repeat's ratio is listed beside it: the spread of the figures."""
Log = Callable[[str], None]


def _start_cluster() -> Cluster:
    """A primary and a standby, by tests/pgcluster: the tests' harness (not installed
    with the package, so it is imported from the checkout)."""
    tests = Path(__file__).resolve().parent.parent / "tests"
    if str(tests) not in sys.path:
        sys.path.insert(0, str(tests))
    from pgcluster import start_cluster

    return start_cluster(settings={"shared_buffers": "128MB"})  # PostgreSQL's default


def _count_log(store: EventStore) -> int:
    return sum(1 for _ in store.read_all())


def _count_stream(store: EventStore, stream: uuid.UUID) -> int:
    return sum(1 for _ in store.read(stream))


def _paired_rates(seconds: float, reads: dict[str, Callable[[], int]]) -> dict[str, float]:
    """Events per second of each read, timed in alternation for about ``seconds`` in all:
    one read of each in turn, the first of each pair alternating, so that both see
    the same load of a shared machine. A figure is the events of one read over the
    median time of its reads (a burst of other work on the machine moves a median
    far less than a sum)."""
    events = dict.fromkeys(reads, 0)
    times: dict[str, list[float]] = {name: [] for name in reads}
    names = list(reads)
    deadline = time.perf_counter() + seconds
    turn = 0
    while time.perf_counter() < deadline or turn < 4:
        for name in names if turn % 2 == 0 else reversed(names):
            start = time.perf_counter()
            events[name] = reads[name]()
            times[name].append(time.perf_counter() - start)
        turn += 1
    return {name: events[name] / statistics.median(times[name]) for name in names}


def run(settings: Settings, log: Log, *, quick: bool = False) -> Section:
    """Start a primary and a standby, fill a store, and time reads from each."""
    section = Section(
        "Read replicas (issue 14)",
        [REPLICA, PRIMARY],
        notes=[
            "A PostgreSQL 15 primary and one asynchronous hot standby, started for the run "
            "on this machine (tests/pgcluster: `initdb`, `pg_basebackup -R`, fsync on, "
            "shared_buffers 128MB each, PostgreSQL's default, which holds the whole store), so "
            "both servers share the same 2 cores.",
            f"One store of {settings.global_events:,} events ({BATCH}-event batches), one "
            f"stream of {settings.stream_events:,} of them; VACUUM ANALYZE and a CHECKPOINT, "
            "then every read once before timing, on both servers.",
            "`replica`: `EventStore(primary_url, replicas=[standby_url])`, which reads from "
            "the standby; `primary`: `EventStore(primary_url)`. Neither pushes, so no read "
            "waits for its own writes. Each read is timed in alternation, one of each in turn "
            "(the first of each pair alternating) for the whole measurement, so that both see "
            "the same load of the shared machine; a figure is the events of one read over the "
            "median time of its reads.",
            f"`{OWN_WRITE}`: one store pushes an event and reads its stream back, "
            "50 times; through the replica the read first waits until the standby has "
            "replayed the push (read-your-writes), on the primary it reads at once.",
        ],
    )
    started = time.monotonic()
    with _start_cluster() as cluster:
        log(f"replicas: cluster started in {time.monotonic() - started:.1f} s")
        section.versions["PostgreSQL (replicas section)"] = str(
            cluster.primary.scalar("SHOW server_version")
        )
        stream = uuid.uuid4()
        with EventStore(cluster.url, schema=SCHEMA) as store:
            store.setup()
            batch = [("person_registered", event_data(i)) for i in range(BATCH)]
            for _ in range(0, settings.stream_events, BATCH):
                store.push_many(stream, batch)
            for _ in range((settings.global_events - settings.stream_events) // BATCH):
                store.push_many(uuid.uuid4(), batch)
        cluster.primary.execute("VACUUM ANALYZE")
        cluster.primary.execute("CHECKPOINT")
        cluster.wait_for_replay()
        log("replicas: filled and replayed")
        readers = {
            REPLICA: EventStore(cluster.url, schema=SCHEMA, replicas=[cluster.standby.url]),
            PRIMARY: EventStore(cluster.url, schema=SCHEMA),
        }
        try:
            expected = {GLOBAL_READ: settings.global_events, STREAM_READ: settings.stream_events}
            reads: dict[str, dict[str, Callable[[], int]]] = {
                GLOBAL_READ: {
                    name: functools.partial(_count_log, r) for name, r in readers.items()
                },
                STREAM_READ: {
                    name: functools.partial(_count_stream, r, stream) for name, r in readers.items()
                },
            }
            rates: dict[str, dict[str, float]] = {}
            for label, pair in reads.items():
                for name, read in pair.items():
                    if (found := read()) != expected[label]:  # and a warm-up
                        raise RuntimeError(f"{name}: {label} read {found} events")
            seconds = settings.duration * (ROUNDS_QUICK if quick else ROUNDS)
            repeats: dict[str, list[dict[str, float]]] = {label: [] for label in reads}
            for repeat in range(1 if quick else REPEATS):
                for label, pair in reads.items():
                    repeats[label].append(_paired_rates(seconds, pair))
                    log(f"replicas {label}, repeat {repeat + 1}: {repeats[label][-1]}")
            for label, runs in repeats.items():  # the median repeat, by its ratio
                runs.sort(key=lambda one: one[REPLICA] / one[PRIMARY])
                rates[label] = runs[len(runs) // 2]
                ratios = ", ".join(f"{one[REPLICA] / one[PRIMARY]:.2f}x" for one in runs)
                section.notes.append(
                    f"`{label}`, replica / primary in each of the {len(runs)} repeats "
                    f"(the table shows the median one): {ratios}."
                )
            state = readers[REPLICA].backend.engine.replicas_state()  # type: ignore[attr-defined]
            if any(state["left_out"]):
                raise RuntimeError("the replica did not answer: the figures are the primary's")
            for label in (GLOBAL_READ, STREAM_READ):
                section.rows.append(
                    Row(label, "events/s", {name: rates[label][name] for name in readers})
                )
            latencies: dict[str, float | None] = {
                name: _own_write_ms(cluster, name == REPLICA) for name in readers
            }
            section.rows.append(Row(OWN_WRITE, "ms", latencies))
        finally:
            for reader in readers.values():
                reader.close()
    measured = section.value(GLOBAL_READ, REPLICA) / section.value(GLOBAL_READ, PRIMARY)
    section.targets.append(
        Target("global-log read rate, replica / primary (same run)", measured, 0.9)
    )
    return section


def _own_write_ms(cluster: Cluster, through_replica: bool) -> float:
    """The median time of a push followed by a read of its stream, in ms."""
    replicas = [cluster.standby.url] if through_replica else None
    timings = []
    with EventStore(cluster.url, schema=SCHEMA, replicas=replicas) as store:
        for i in range(50):
            stream = uuid.uuid4()
            start = time.perf_counter()
            store.push("person_registered", stream, event_data(i))
            if len(store.get(stream)) != 1:
                raise RuntimeError("a store did not read its own push")
            timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def keep_block(old: str, new: str) -> str:
    """``new`` with the replicas block of ``old`` (if any) in its place, or at its end."""
    start, end = old.find(START), old.find(END)
    if start == -1 or end == -1:
        return new
    return replace_block(new, old[start : end + len(END)])


def replace_block(text: str, block: str) -> str:
    """``text`` with its replicas block replaced by ``block`` (appended if it has none)."""
    start, end = text.find(START), text.find(END)
    if start == -1 or end == -1:
        return text.rstrip() + "\n\n" + block.strip() + "\n"
    return text[:start] + block.strip() + text[end + len(END) :]
