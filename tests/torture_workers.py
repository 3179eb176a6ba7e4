"""Workers and checks for the torture tests, importable by child processes.

The torture tests start their children with the ``spawn`` method: a child
imports this module by name (pytest puts ``tests/`` on ``sys.path``, and
``spawn`` hands the parent's ``sys.path`` to its children) and opens its own
store, so that no connection, pool thread or lock crosses a fork. Every loop
here has a deadline, given as wall-clock time (``time.time()``) because it is
shared between processes.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier as MpBarrier
from multiprocessing.synchronize import Event as MpEvent
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self

from conduit import ConduitError, DuplicateEvent, Event, EventStore, WrongExpectedVersion, new_id

__all__ = [
    "Box",
    "Flag",
    "Head",
    "LogProblems",
    "RacerReport",
    "RestartReport",
    "Seen",
    "TailReport",
    "TailRun",
    "Workers",
    "describe",
    "log_problems",
    "push_through_restart",
    "race_on_one_stream",
    "reader_problems",
    "run_writers_with_readers",
    "seen",
    "spawn_context",
    "tail_log",
    "write_random_batches",
]

EVENT_NAME = "thing_happened"


class Seen(NamedTuple):
    """What a test remembers of a recorded event: small, and cheap to pickle."""

    id: str
    stream_id: str
    version: int
    position: int


def seen(event: Event) -> Seen:
    """The :class:`Seen` summary of a recorded event."""
    return Seen(str(event.id), str(event.stream_id), event.version, event.position)


def spawn_context() -> SpawnContext:
    """The start method of every torture test: children import, never inherit."""
    return multiprocessing.get_context("spawn")


# -- running children --------------------------------------------------------


def _child(results: multiprocessing.Queue[Any], name: str, func: Any, kwargs: Any) -> None:
    try:
        outcome: tuple[str, bool, Any] = (name, True, func(**kwargs))
    except BaseException:
        outcome = (name, False, traceback.format_exc())
    results.put(outcome)


class Workers:
    """Child processes that each run one function and send back its result.

    Use as a context manager: leaving it kills whatever is still running, so a
    failed test never leaves processes behind.
    """

    def __init__(self, ctx: SpawnContext) -> None:
        self._ctx = ctx
        self._results: multiprocessing.Queue[Any] = ctx.Queue()
        self._processes: dict[str, SpawnProcess] = {}
        self._done: dict[str, tuple[bool, Any]] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, name: str, func: Callable[..., Any], **kwargs: Any) -> None:
        """Run ``func(**kwargs)`` in a new process known as ``name``."""
        process = self._ctx.Process(
            target=_child, args=(self._results, name, func, kwargs), name=name, daemon=True
        )
        process.start()
        self._processes[name] = process

    def results(self, names: Iterable[str], *, deadline: float) -> dict[str, Any]:
        """Wait, until ``deadline`` at most, for the results of these children.

        Raises:
            AssertionError: a child raised (its traceback is in the message),
                died without a result, or was still running at the deadline.
        """
        wanted = list(names)
        while any(name not in self._done for name in wanted):
            try:
                name, ok, value = self._results.get(timeout=0.2)
                self._done[name] = (ok, value)
                continue
            except queue.Empty:
                pass
            for name in wanted:
                process = self._processes[name]
                if name not in self._done and process.exitcode is not None:
                    # Its result may still be in the pipe: give it a moment.
                    self._drain(0.5)
                    if name not in self._done:
                        self._done[name] = (False, f"died with exit code {process.exitcode}")
            if time.time() > deadline:
                late = [name for name in wanted if name not in self._done]
                raise AssertionError(f"still running at the deadline: {', '.join(late)}")
        failed = {name: self._done[name][1] for name in wanted if not self._done[name][0]}
        if failed:
            raise AssertionError(
                "\n".join(f"--- {name} failed:\n{why}" for name, why in failed.items())
            )
        for name in wanted:
            self._processes[name].join(timeout=10)
        return {name: self._done[name][1] for name in wanted}

    def _drain(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                name, ok, value = self._results.get(timeout=0.05)
            except queue.Empty:
                continue
            self._done[name] = (ok, value)

    def stop(self) -> None:
        """Kill every child still running and wait for it to go."""
        for process in self._processes.values():
            if process.is_alive():
                process.kill()
        for process in self._processes.values():
            process.join(timeout=5)
        self._results.close()
        self._results.cancel_join_thread()


# -- writers -------------------------------------------------------------------


def write_random_batches(
    url: str,
    options: dict[str, Any],
    *,
    writer: int,
    streams: Sequence[str],
    count: int,
    max_batch: int,
    seed: int,
    deadline: float,
    start: MpEvent | None = None,
) -> list[Seen]:
    """Push ``count`` events in batches of 1 to ``max_batch`` to random streams.

    Each event's data names its writer and its sequence number in the writer,
    so that a repeated or lost event can be traced. Returns what the pushes
    returned, in push order.
    """
    rng = random.Random(seed)
    written: list[Seen] = []
    store = EventStore(url, **options)
    try:
        if start is not None and not start.wait(max(0.0, deadline - time.time())):
            raise TimeoutError("the start signal never came")
        while len(written) < count:
            if time.time() > deadline:
                raise TimeoutError(f"writer {writer}: {len(written)} of {count} events pushed")
            size = min(rng.randint(1, max_batch), count - len(written))
            batch = [
                {"name": EVENT_NAME, "data": {"writer": writer, "seq": len(written) + i}}
                for i in range(size)
            ]
            written.extend(seen(event) for event in store.push_many(rng.choice(streams), batch))
    finally:
        store.close()
    return written


@dataclass
class RacerReport:
    """What one racer saw: the versions it won, and the versions it lost at."""

    won: list[tuple[int, str]] = field(default_factory=list)
    """(version, event id) of each push that won its round."""
    lost: list[tuple[int, int]] = field(default_factory=list)
    """(expected version, actual version) of each push refused."""
    other_errors: list[str] = field(default_factory=list)


def race_on_one_stream(
    url: str,
    options: dict[str, Any],
    *,
    racer: int,
    stream: str,
    rounds: int,
    barrier: MpBarrier | threading.Barrier,
    deadline: float,
    store: EventStore | None = None,
) -> RacerReport:
    """Push, round after round, with ``expected_version`` = the round's number.

    Every racer waits at the barrier before each round, so that all of them
    push against the same version at once. Pass ``store`` to share one (the
    threads of one process); otherwise the racer opens its own.
    """
    report = RacerReport()
    own = store is None
    active = EventStore(url, **options) if store is None else store
    try:
        for expected in range(rounds):
            barrier.wait(timeout=max(0.1, deadline - time.time()))
            event_id = new_id()
            try:
                event = active.push(
                    EVENT_NAME,
                    stream,
                    {"racer": racer, "round": expected},
                    expected_version=expected,
                    event_id=event_id,
                )
            except WrongExpectedVersion as exc:
                report.lost.append((exc.expected, exc.actual))
            except ConduitError as exc:
                report.other_errors.append(f"round {expected}: {exc!r}")
            else:
                report.won.append((event.version, str(event.id)))
    finally:
        if own:
            active.close()
    return report


@dataclass
class Push:
    """One batch a writer pushed through a server restart, and how it went."""

    stream_id: str
    ids: list[str]
    seqs: list[int]
    recorded: list[Seen] = field(default_factory=list)
    attempts: int = 0
    finished_at: float = 0.0


@dataclass
class RestartReport:
    """Everything one writer did while the server restarted under it."""

    writer: int
    pushes: list[Push] = field(default_factory=list)
    conduit_errors: list[str] = field(default_factory=list)
    """Errors a push raised, all of them ConduitErrors: the push was retried."""
    other_errors: list[str] = field(default_factory=list)
    """Errors that were not ConduitErrors: driver errors leaking through."""
    refused_retries: list[str] = field(default_factory=list)
    """A retry, with the same event ids, refused as a conflict instead of answered."""
    abandoned: list[Push] = field(default_factory=list)
    """Batches still failing when the retry deadline passed."""


def push_through_restart(
    url: str,
    options: dict[str, Any],
    *,
    writer: int,
    own_stream: str,
    shared_streams: Sequence[str],
    stop: MpEvent,
    seed: int,
    deadline: float,
) -> RestartReport:
    """Push small batches with explicit event ids until ``stop``, retrying failures.

    Pushes to the writer's own stream carry ``expected_version`` (the version
    it last saw); pushes to the shared streams do not. A push that raises is
    retried with the same event ids and the same expected version until it
    returns or the deadline passes: a push whose reply was lost must come back
    as the events already recorded, not as a conflict.
    """
    rng = random.Random(seed)
    report = RestartReport(writer)
    own_version = 0
    seq = 0
    store = EventStore(url, **options)
    try:
        while not stop.is_set() and time.time() < deadline:
            stream = own_stream if rng.random() < 0.5 else rng.choice(shared_streams)
            size = rng.randint(1, 3)
            push = Push(stream, [str(new_id()) for _ in range(size)], list(range(seq, seq + size)))
            seq += size
            expected = own_version if stream == own_stream else None
            batch = [
                {"name": EVENT_NAME, "data": {"writer": writer, "seq": s}, "id": event_id}
                for event_id, s in zip(push.ids, push.seqs, strict=True)
            ]
            while True:
                push.attempts += 1
                try:
                    events = store.push_many(stream, batch, expected_version=expected)
                except (WrongExpectedVersion, DuplicateEvent) as exc:
                    report.refused_retries.append(f"attempt {push.attempts}: {exc!r}")
                    if isinstance(exc, WrongExpectedVersion) and stream == own_stream:
                        own_version = exc.actual
                    break
                except ConduitError as exc:
                    report.conduit_errors.append(f"{type(exc).__name__}: {exc}")
                except Exception as exc:
                    report.other_errors.append(f"{type(exc).__module__}.{exc!r}")
                else:
                    push.recorded = [seen(event) for event in events]
                    push.finished_at = time.time()
                    report.pushes.append(push)
                    if stream == own_stream:
                        own_version = events[-1].version
                    break
                if time.time() > deadline:
                    report.abandoned.append(push)
                    return report
                time.sleep(0.1)
    finally:
        store.close()
    return report


# -- readers -----------------------------------------------------------------


class Flag(Protocol):
    """A threading or multiprocessing event."""

    def is_set(self) -> bool: ...


class Box(Protocol):
    """A shared integer (``multiprocessing.Value``) or any object with ``value``."""

    value: int


@dataclass
class Head:
    """A :class:`Box` for readers that are threads."""

    value: int = 0


@dataclass
class TailReport:
    """What a tailing reader saw, in the order it saw it."""

    log: list[Seen] = field(default_factory=list)
    pages_while_writing: int = 0
    """Polls that returned events before the writers were done: proof that it tailed."""
    cut_short: bool = False
    """The deadline passed before the reader caught up with the final head."""


def tail_log(
    url: str,
    options: dict[str, Any],
    *,
    done: Flag,
    final_head: Box,
    deadline: float,
    ready: MpEvent | threading.Event | None = None,
    poll_interval: float = 0.005,
) -> TailReport:
    """Follow the global log from its start, as a subscription would.

    Sets ``ready`` once its store is open, then polls ``read_all(after=last
    position seen)`` until the writers are ``done`` and the reader has
    reached ``final_head`` (set before ``done``) and a last poll finds
    nothing more.
    """
    store = EventStore(url, **options)
    report = TailReport()
    last = 0
    try:
        store.head_position()  # the connection is made and the schema checked
        if ready is not None:
            ready.set()
        while time.time() < deadline:
            finished = done.is_set()  # before the poll: every push had committed
            page = [seen(event) for event in store.read_all(after=last)]
            if page:
                report.log.extend(page)
                report.pages_while_writing += not finished
                last = page[-1].position
            elif finished and last >= final_head.value:
                return report
            else:
                time.sleep(poll_interval)
    finally:
        store.close()
    report.cut_short = True
    return report


# -- checks ------------------------------------------------------------------


@dataclass
class LogProblems:
    """How a list of events departs from the log it should equal. All zero: equal."""

    skipped: int = 0
    """Events of the log never seen."""
    repeated: int = 0
    """Events seen more than once (counting each extra time)."""
    unknown: int = 0
    """Events seen that the log does not hold: seen past its end, or invented."""
    out_of_order: int = 0
    """Events whose position is not above the one seen before."""
    stream_out_of_order: int = 0
    """Events whose version is not their stream's previous version plus one."""
    mismatched: int = 0
    """Events seen with another stream, version or position than the log's."""
    examples: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        """No problem at all."""
        return not (
            self.skipped
            or self.repeated
            or self.unknown
            or self.out_of_order
            or self.stream_out_of_order
            or self.mismatched
        )

    def note(self, example: str) -> None:
        """Keep a few examples for the failure message."""
        if len(self.examples) < 10:
            self.examples.append(example)


def reader_problems(observed: Sequence[Seen], log: Sequence[Seen]) -> LogProblems:
    """Compare what a reader saw, in order, with the final global log."""
    problems = LogProblems()
    expected = {event.id: event for event in log}
    counts = Counter(event.id for event in observed)
    for event_id, count in counts.items():
        if count > 1:
            problems.repeated += count - 1
            problems.note(f"seen {count} times: {expected.get(event_id, event_id)}")
    for event in log:
        if event.id not in counts:
            problems.skipped += 1
            problems.note(f"skipped: {event}")
    previous = 0
    versions: dict[str, int] = defaultdict(int)
    for event in observed:
        truth = expected.get(event.id)
        if truth is None:
            problems.unknown += 1
            problems.note(f"not in the log: {event}")
        elif truth != event:
            problems.mismatched += 1
            problems.note(f"seen as {event}, the log has {truth}")
        if event.position <= previous:
            problems.out_of_order += 1
            problems.note(f"position {event.position} after {previous}: {event}")
        previous = max(previous, event.position)
        if event.version != versions[event.stream_id] + 1:
            problems.stream_out_of_order += 1
            problems.note(f"version {event.version} after {versions[event.stream_id]}: {event}")
        versions[event.stream_id] = max(versions[event.stream_id], event.version)
    return problems


def log_problems(log: Sequence[Seen], written: Iterable[Seen]) -> LogProblems:
    """Check the final global log on its own and against what the pushes returned.

    The log must hold each returned event once, exactly as returned, and
    nothing else; positions must grow; each stream's versions must be 1, 2, 3…
    in log order.
    """
    returned = list(written)
    problems = reader_problems(log, returned)
    for event_id, count in Counter(event.id for event in returned).items():
        if count > 1:
            problems.repeated += count - 1
            problems.note(f"returned {count} times by pushes: {event_id}")
    by_stream = Counter(event.stream_id for event in returned)
    last_versions: dict[str, int] = {}
    for event in log:
        last_versions[event.stream_id] = max(last_versions.get(event.stream_id, 0), event.version)
    for stream_id, count in by_stream.items():
        if last_versions.get(stream_id) != count:
            problems.note(
                f"stream {stream_id}: {count} events returned, last version in the log "
                f"{last_versions.get(stream_id)}"
            )
            problems.mismatched += 1
    return problems


# -- the parent's side -------------------------------------------------------


@dataclass
class TailRun:
    """The outcome of writers pushing while readers tail the global log."""

    written: list[Seen]
    """Every event the pushes returned, writer after writer."""
    by_writer: dict[str, list[Seen]]
    readers: dict[str, TailReport]


def run_writers_with_readers(
    url: str,
    options: dict[str, Any],
    *,
    writers: int,
    readers: int,
    streams: Sequence[str],
    events_per_writer: int,
    max_batch: int,
    deadline: float,
    seed: int = 0,
) -> TailRun:
    """Start the readers, then (once they are ready) the writers all at once; wait for all.

    The readers stop once the writers are done and they have reached the
    highest position the writers were given, so a reader that skipped the
    last events runs into the deadline and is reported as cut short.
    """
    ctx = spawn_context()
    start = ctx.Event()
    done = ctx.Event()
    final_head: Synchronized[int] = ctx.Value("q", 0)
    writer_names = [f"writer-{i}" for i in range(writers)]
    reader_names = [f"reader-{i}" for i in range(readers)]
    ready = [ctx.Event() for _ in reader_names]
    with Workers(ctx) as workers:
        for name, reader_ready in zip(reader_names, ready, strict=True):
            workers.start(
                name,
                tail_log,
                url=url,
                options=options,
                done=done,
                final_head=final_head,
                deadline=deadline,
                ready=reader_ready,
            )
        for i, name in enumerate(writer_names):
            workers.start(
                name,
                write_random_batches,
                url=url,
                options=options,
                writer=i,
                streams=streams,
                count=events_per_writer,
                max_batch=max_batch,
                seed=seed * 1000 + i,
                deadline=deadline,
                start=start,
            )
        for reader_ready in ready:
            if not reader_ready.wait(max(0.0, deadline - time.time())):
                workers.results(reader_names, deadline=time.time())  # raises, with the reason
                raise AssertionError("a reader never got ready")
        start.set()
        by_writer = workers.results(writer_names, deadline=deadline)
        final_head.value = max((e.position for w in by_writer.values() for e in w), default=0)
        done.set()
        by_reader = workers.results(reader_names, deadline=deadline + 5)
    return TailRun(
        written=[event for name in writer_names for event in by_writer[name]],
        by_writer=by_writer,
        readers=by_reader,
    )


def describe(problems: LogProblems) -> str:
    """A failure message: the counts, then a few examples."""
    counts = (
        f"skipped={problems.skipped} repeated={problems.repeated} unknown={problems.unknown} "
        f"out_of_order={problems.out_of_order} "
        f"stream_out_of_order={problems.stream_out_of_order} mismatched={problems.mismatched}"
    )
    return "\n".join([counts, *problems.examples])
