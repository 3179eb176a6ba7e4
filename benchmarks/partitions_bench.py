"""Partitions (issue 14): catch-up of a SQL read model split over 1, 2 and 4 worker processes.

The store (PostgreSQL) holds 100,000 events (20,000 with ``--quick``) over
100 streams. For N = 1, 2 and 4, N worker processes (``run_worker`` with
``partitions=N``, as ``conduit run --partitions N``) catch up one read model,
each in a PostgreSQL database of its own, from empty: the time runs from the
moment every worker is ready (imported, store open) to the moment the read
model holds every event. The read model is ``projections_bench.Totals``: one
upserted row per stream, 500 events per transaction with the checkpoint.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks.common import CONDUIT, Row, Section, Target, fresh_database, rate
from benchmarks.projections_bench import Totals, _fill_conduit, _sa_url, totals
from conduit import EventStore
from conduit.subscriptions.worker import run_worker

__all__ = ["run"]

DATABASE = "conduit_bench_partitions"
COUNTS = (1, 2, 4)
Log = Callable[[str], None]
TIMEOUT = 600.0
"""Seconds a catch-up may take before the run fails."""


def _worker_main(store_url: str, readmodel: str, partitions: int, ready: Any, go: MpEvent) -> None:
    """A worker process: open the store, say so, wait for the word, drive until SIGTERM."""
    store = EventStore(store_url)
    projection = Totals(readmodel)
    ready.put(1)
    go.wait(TIMEOUT)
    run_worker(store, [projection], partitions=partitions, lease_ttl=5.0, poll_interval=0.02)


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process) since boot,
    from /proc/stat: user, nice, system, irq, softirq and steal; idle and iowait are not."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user and system) a process has used, from /proc/PID/stat."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_seconds() -> float:
    """CPU seconds used so far by every PostgreSQL process of this machine (the server
    runs here, on 127.0.0.1): its backends, WAL writer, checkpointer."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            total += _cpu_seconds(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return total


def _applied(projection: Totals) -> int:
    with projection.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.sum(totals.c.count))).scalar_one() or 0)


def _catch_up(
    store_url: str, readmodel: str, partitions: int, events: int
) -> tuple[float, float, float, float]:
    """Seconds for ``partitions`` workers to catch up an empty read model, how many
    cores the machine kept busy meanwhile (workers, server, this process's polling),
    and the CPU seconds the workers themselves and the PostgreSQL server used."""
    projection = Totals(readmodel)
    projection.setup()
    context = multiprocessing.get_context("spawn")
    ready: Any = context.Queue()
    go = context.Event()
    children = [
        context.Process(target=_worker_main, args=(store_url, readmodel, partitions, ready, go))
        for _ in range(partitions)
    ]
    for child in children:
        child.start()
    try:
        for _ in children:
            ready.get(timeout=120)
        start = time.perf_counter()
        busy = _busy_seconds()
        own = sum(_cpu_seconds(child.pid) for child in children)
        server = _server_seconds()
        go.set()
        deadline = start + TIMEOUT
        while _applied(projection) < events:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{partitions} workers did not catch up within {TIMEOUT} s")
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        used = sum(_cpu_seconds(child.pid) for child in children) - own
        served = _server_seconds() - server
        return seconds, (_busy_seconds() - busy) / seconds, used, served
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.join(30)
        projection.engine.dispose()


def run(quick: bool, workdir: Path, server_url: str, log: Log) -> Section:
    """The section: events per second with 1, 2 and 4 partitions (one worker each)."""
    events = 20_000 if quick else 100_000
    section = Section("Partitions: catch-up over several workers (issue 14)", [CONDUIT])
    rates: dict[int, float] = {}
    cores: dict[int, float] = {}
    worker_cpu: dict[int, float] = {}
    server_cpu: dict[int, float] = {}
    with fresh_database(server_url, DATABASE) as store_url:
        with EventStore(store_url) as store:
            store.setup()
            log(f"partitions: filling the store with {events:,} events")
            _fill_conduit(store, events)
        for count in COUNTS:
            with fresh_database(server_url, f"{DATABASE}_rm{count}") as readmodel:
                log(f"partitions: catch-up with {count} partition(s), {count} worker(s)")
                seconds, cores[count], used, served = _catch_up(
                    store_url, _sa_url(readmodel), count, events
                )
                worker_cpu[count] = used / events * 1e6
                server_cpu[count] = served / events * 1e6
                rates[count] = rate(events, seconds)
                log(
                    f"partitions: {count}: {rates[count]:,.0f} events/s, "
                    f"{cores[count]:.2f} cores busy, "
                    f"{worker_cpu[count]:.0f} µs of worker CPU and "
                    f"{server_cpu[count]:.0f} µs of server CPU per event"
                )
    for count in COUNTS:
        section.rows.append(
            Row(
                f"catch-up, {count} partition(s), {count} worker(s)",
                "events/s",
                {CONDUIT: rates[count]},
            )
        )
        section.rows.append(
            Row(f"  per worker, {count} partition(s)", "events/s", {CONDUIT: rates[count] / count})
        )
        section.rows.append(
            Row(f"  cores busy, {count} partition(s)", "cores", {CONDUIT: cores[count]})
        )
        section.rows.append(
            Row(
                f"  workers' CPU per event, {count} partition(s)",
                "µs",
                {CONDUIT: worker_cpu[count]},
            )
        )
        section.rows.append(
            Row(
                f"  PostgreSQL's CPU per event, {count} partition(s)",
                "µs",
                {CONDUIT: server_cpu[count]},
            )
        )
    available = float(os.cpu_count() or 1)
    section.rows.append(
        Row(
            "  ceiling of 4 / 1 here: cores / cores busy with 1",
            "x",
            {CONDUIT: available / cores[1]},
        )
    )
    section.targets.append(Target("catch-up: 4 partitions / 1 partition", rates[4] / rates[1], 1.7))
    section.notes.append(
        f"{events:,} events over 100 streams in a PostgreSQL store; the read model "
        "(benchmarks.projections_bench.Totals: an upsert per event, 500 events per "
        "transaction with the checkpoint) in a database of its own for each N. Each worker "
        "is a process of its own (`run_worker(..., partitions=N)`, as `conduit run "
        "--partitions N`); the time runs from the moment all are ready to the moment the "
        "read model holds every event, so it includes the workers' finding each other "
        "(member slots, looked at about once a second). The machine's 2 cores are shared "
        "by the workers and the server: 2x is the ceiling here, and less when one worker "
        "with its server already keeps more than one core busy: 'cores busy' is the "
        "machine's CPU time (/proc/stat, every process) over the catch-up's wall time, and "
        "the ceiling row is the cores there are over the cores the 1-partition run used "
        "(what N workers could reach if the work split perfectly and nothing else ran)."
    )
    return section
