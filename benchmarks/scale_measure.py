"""The scale benchmark's operations: what is timed, on which stream, how many times.

A :class:`Subject` is one store under measurement (the large store, or the
empty reference store measured in the same rounds) with a browser app over it.
Each latency operation builds, from a random stream, a call to time; each
call is timed alone, many times, on streams chosen at random.
"""

from __future__ import annotations

import http.client
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from benchmarks.scale_build import PROBE_ONLY, RARE, STREAM_EVENTS, Layout, since, stream_id
from conduit import EventStore
from conduit.cli.application import app as cli
from conduit.web import create_app
from conduit.web.server import BackgroundServer

__all__ = ["LATENCIES", "MIN_CALLS", "PROJECTION", "Latency", "Subject", "percentile", "size_bytes"]

MIN_CALLS = 5
"""The fewest calls an operation's latency is taken from, however slow they are."""

PROJECTION = "report-view"
"""The checkpoint every measured store holds (a projection that keeps up)."""


@dataclass
class Subject:
    """One store under measurement."""

    label: str
    engine: str
    url: str
    """The store's URL (with ``?schema=`` on PostgreSQL), as the CLI takes it."""
    target: str
    """The SQLite file, or the PostgreSQL database's URL (plans, sizes)."""
    schema: str
    layout: Layout
    store: EventStore = field(init=False)
    server: BackgroundServer = field(init=False)
    connection: http.client.HTTPConnection = field(init=False)

    def open(self) -> None:
        """Open the store and the browser over it; the projection's checkpoint moves to the head.

        (The large store keeps its checkpoint from one stage to the next: left
        where it was, the projection would lag by the whole growth.)
        """
        self.store = EventStore(self.url)
        self.server = BackgroundServer(create_app(self.store))
        self.server.start()
        self.connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=600)
        backend = self.store.backend
        head = self.store.head_position()
        if not backend.save_checkpoint(PROJECTION, head, expected=None):
            found = backend.load_checkpoint(PROJECTION)
            if not backend.save_checkpoint(PROJECTION, head, expected=found):
                raise RuntimeError("the projection's checkpoint moved meanwhile")

    def close(self) -> None:
        """Close the browser and the store."""
        self.connection.close()
        self.server.stop()
        self.store.close()

    def get(self, path: str) -> int:
        """GET a page of the browser over the kept-alive connection: its status."""
        try:
            return self._get(path)
        except (http.client.RemoteDisconnected, ConnectionError):
            self.connection.close()  # the server closed an idle connection: it reopens
            return self._get(path)

    def _get(self, path: str) -> int:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        response.read()
        return response.status

    def events(self) -> int:
        """How many events the store holds (the sum of its streams' versions)."""
        return sum(info.version for info in self.store.streams())


Call = Callable[[], object]


@dataclass(frozen=True)
class Latency:
    """An operation timed call by call."""

    key: str
    label: str
    make: Callable[[Subject, random.Random], Call]
    samples: str = "samples"
    """Which count of :class:`~benchmarks.scale.ScaleSettings` sets how many calls are timed."""
    point: bool = False
    """A point read: its p99 must stay under 10 ms."""
    lagging: bool = False
    """Timed with the projection's checkpoint moved back to 0 (a new projection)."""
    captured: bool = True
    """Its statements can be captured in this process (not a subprocess); it is timed
    after an untimed call (a subprocess starts cold every time anyway)."""

    def around(self, subject: Subject) -> AbstractContextManager[None]:
        """The state the operation is timed in."""
        return _lagging(subject) if self.lagging else nullcontext()


@contextmanager
def _lagging(subject: Subject) -> Iterator[None]:
    backend = subject.store.backend
    position = backend.load_checkpoint(PROJECTION)
    if not backend.save_checkpoint(PROJECTION, 0, expected=position):
        raise RuntimeError("the projection's checkpoint moved meanwhile")
    try:
        yield
    finally:
        backend.save_checkpoint(PROJECTION, subject.store.head_position(), expected=0)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-1) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _stream(subject: Subject, rng: random.Random) -> tuple[int, str]:
    ordinal = rng.randrange(subject.layout.streams)
    return ordinal, stream_id(ordinal)


def _get(subject: Subject, rng: random.Random) -> Call:
    _, stream = _stream(subject, rng)

    def call() -> None:
        if len(subject.store.get(stream)) < STREAM_EVENTS:
            raise RuntimeError(f"{stream} has fewer than {STREAM_EVENTS} events")

    return call


def _read_since(subject: Subject, rng: random.Random) -> Call:
    ordinal, stream = _stream(subject, rng)
    moment = since(subject.layout, ordinal)
    return lambda: list(subject.store.read(stream, since=moment))


def _rare(subject: Subject, rng: random.Random) -> Call:
    return lambda: list(subject.store.read_all(names=[RARE]))


def _probe_only(subject: Subject, rng: random.Random) -> Call:
    return lambda: list(subject.store.read_all(names=[PROBE_ONLY]))


def _rare_after_middle(subject: Subject, rng: random.Random) -> Call:
    middle = subject.layout.middle
    return lambda: list(subject.store.read_all(after=middle, names=[RARE], limit=1))


def _prefix(subject: Subject, rng: random.Random) -> Call:
    prefix = stream_id(rng.randrange(3)).split("-", 1)[0] + "-"
    return lambda: list(subject.store.streams(prefix=prefix, limit=100))


def _version(subject: Subject, rng: random.Random) -> Call:
    _, stream = _stream(subject, rng)
    return lambda: subject.store.stream_version(stream)


def _head(subject: Subject, rng: random.Random) -> Call:
    return subject.store.head_position


def _page(
    path: Callable[[Subject, random.Random], str],
) -> Callable[[Subject, random.Random], Call]:
    def make(subject: Subject, rng: random.Random) -> Call:
        url = path(subject, rng)

        def call() -> None:
            status = subject.get(url)
            if status != 200:
                raise RuntimeError(f"GET {url}: {status}")

        return call

    return make


def _command(*args: str) -> Callable[[Subject, random.Random], Call]:
    def make(subject: Subject, rng: random.Random) -> Call:
        def call() -> None:
            result = CliRunner().invoke(cli, ["--store", subject.url, *args])
            if result.exit_code != 0:
                raise RuntimeError(f"conduit {' '.join(args)}: {result.output}")

        return call

    return make


def conduit_command() -> list[str]:
    """How to start the ``conduit`` command of this environment in a subprocess."""
    script = Path(sys.executable).with_name("conduit")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from conduit.cli import main; main()"]


def _subprocess(*args: str) -> Callable[[Subject, random.Random], Call]:
    def make(subject: Subject, rng: random.Random) -> Call:
        command = [*conduit_command(), "--store", subject.url, *args]
        return lambda: subprocess.run(command, check=True, capture_output=True, timeout=600)

    return make


LATENCIES = (
    Latency("get", "`get` of a 100-event stream", _get, point=True),
    Latency("read_since", "`read(since=...)` of one stream (its last 50 events)", _read_since),
    Latency("rare", "`read_all(names=[rare])`, every match", _rare),
    Latency(
        "probe_only",
        "`read_all(names=[a name of the probe streams only])`, every match",
        _probe_only,
    ),
    Latency("rare_first", "`read_all(after=middle, names=[rare], limit=1)`", _rare_after_middle),
    Latency("prefix", "`streams(prefix=...)`, first page of 100", _prefix),
    Latency("version", "`stream_version`", _version, point=True),
    Latency("head", "`head_position`", _head),
    Latency("overview", "browser: overview `/`", _page(lambda s, r: "/"), "pages", True),
    Latency(
        "streams", "browser: streams `/streams`", _page(lambda s, r: "/streams"), "pages", True
    ),
    Latency(
        "stream",
        "browser: a stream `/streams/{id}`",
        _page(lambda s, r: f"/streams/{_stream(s, r)[1]}"),
        "pages",
        True,
    ),
    Latency("log", "browser: the log `/log`", _page(lambda s, r: "/log"), "pages", True),
    Latency("stats", "`conduit stats` (in-process)", _command("stats"), "commands"),
    Latency(
        "stats_fast", "`conduit stats --fast` (in-process)", _command("stats", "--fast"), "commands"
    ),
    Latency(
        "stats_process",
        "`conduit stats` (subprocess, start-up included)",
        _subprocess("stats"),
        "processes",
        captured=False,
    ),
    Latency(
        "overview_lagging",
        "browser: overview `/`, a projection at checkpoint 0",
        _page(lambda s, r: "/"),
        "pages",
        lagging=True,
    ),
    Latency(
        "stats_fast_lagging",
        "`conduit stats --fast`, a projection at checkpoint 0",
        _command("stats", "--fast"),
        "commands",
        lagging=True,
    ),
)
"""Every operation timed call by call, in the order they are measured and shown."""


def time_calls(
    subject: Subject, latency: Latency, count: int, budget: float, rng: random.Random
) -> list[float]:
    """Seconds of ``count`` calls of an operation (after one untimed call).

    Calls stop early, after at least :data:`MIN_CALLS`, once they have taken
    ``budget`` seconds: an operation that scans a large log would otherwise
    keep the run going for hours.
    """
    with latency.around(subject):
        if latency.captured:
            latency.make(subject, rng)()
        found: list[float] = []
        spent = 0.0
        for _ in range(count):
            call = latency.make(subject, rng)
            start = time.perf_counter()
            call()
            found.append(time.perf_counter() - start)
            spent += found[-1]
            if spent >= budget and len(found) >= MIN_CALLS:
                break
    return found


def log_rate(subject: Subject, seconds: float) -> float:
    """Events/s of ``read_all(after=middle)``, read again from the middle until time is up."""
    middle = subject.layout.middle
    count = 0
    start = time.perf_counter()
    while True:
        for _ in subject.store.read_all(after=middle):
            count += 1
            if count % 500 == 0 and time.perf_counter() - start >= seconds:
                return count / (time.perf_counter() - start)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def size_bytes(subject: Subject) -> int:
    """The store's size on disk: the SQLite file and its WAL, or the schema's tables."""
    if subject.engine == "sqlite":
        files = [Path(subject.target + suffix) for suffix in ("", "-wal")]
        return sum(f.stat().st_size for f in files if f.exists())
    with psycopg.connect(subject.target) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r'",
            (subject.schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def startup(runs: int) -> dict[str, float]:
    """Best-of-``runs`` seconds of starting Python, importing Conduit, and ``conduit --help``."""
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import conduit'": [sys.executable, "-c", "import conduit"],
        "conduit --help": [*conduit_command(), "--help"],
    }
    env = {**os.environ, "COLUMNS": "80"}
    best: dict[str, float] = {}
    for _ in range(runs):
        for label, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, timeout=120, env=env)
            elapsed = time.perf_counter() - start
            best[label] = min(best.get(label, elapsed), elapsed)
    return best
