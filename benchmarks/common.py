"""What every section shares: settings, results, timing and the events written."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

__all__ = [
    "CONDUIT",
    "EVENTSOURCING",
    "EVENT_NAME",
    "ROUNDS_NOTE",
    "Rounds",
    "Row",
    "Section",
    "Settings",
    "Target",
    "event_data",
    "median",
    "rate",
    "ratio_target",
    "read_rate",
    "run_for",
]

CONDUIT = "Conduit"
EVENTSOURCING = "eventsourcing"

EVENT_NAME = "person_registered"
"""The name of every event written (a ``topic`` for eventsourcing)."""


def event_data(index: int) -> dict[str, Any]:
    """A small, realistic event body (about 120 bytes of JSON)."""
    return {
        "first_name": "Kris",
        "last_name": "Example",
        "email": f"kris{index}@example.com",
        "age": 42,
        "tags": ["new", "web"],
        "index": index,
    }


@dataclass(frozen=True)
class Settings:
    """How long and how big: the default run, or ``--quick``."""

    duration: float = 2.0
    """Seconds each timed write measurement runs."""
    rounds: int = 3
    """Each measurement is repeated this many times, contenders interleaved; the median counts."""
    stream_events: int = 10_000
    global_events: int = 50_000
    memory_short: int = 100_000
    memory_long: int = 1_000_000
    writers: tuple[int, ...] = (1, 2, 8)
    cost_calls: int = 200
    """Calls per timing in the PostgreSQL breakdown of an append."""

    @classmethod
    def quick(cls) -> Settings:
        """A smoke run of about half a minute: figures are indicative only."""
        return cls(
            duration=0.5,
            rounds=1,
            stream_events=10_000,
            global_events=20_000,
            memory_short=5_000,
            memory_long=25_000,
            cost_calls=100,
        )


@dataclass(frozen=True)
class Target:
    """One target of the issue: a measured ratio against the required one."""

    label: str
    measured: float
    required: float
    at_most: bool = False
    """The ratio must stay at or below ``required`` (memory), not reach it."""
    unit: str = "x"
    """What ``measured`` and ``required`` count: a ratio (``x``) or, say, ``ms``."""

    @property
    def passed(self) -> bool:
        """Whether the measured ratio meets the target."""
        if self.at_most:
            return self.measured <= self.required
        return self.measured >= self.required


@dataclass(frozen=True)
class Row:
    """One measurement: a value per contender (``None`` where it does not apply)."""

    label: str
    unit: str
    values: dict[str, float | None]


@dataclass
class Section:
    """One engine's results: its tables, targets and the notes that make them honest."""

    title: str
    contenders: list[str]
    """Column order; the first is Conduit, the ratios are against the others."""
    rows: list[Row] = field(default_factory=list)
    extra_title: str = ""
    extra: list[Row] = field(default_factory=list)
    """A second table of figures that stand alone (baseline variants, memory)."""
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    def value(self, label: str, contender: str) -> float:
        """The figure a row holds for one contender."""
        for row in (*self.rows, *self.extra):
            if row.label == label:
                found = row.values.get(contender)
                if found is None:
                    raise KeyError(f"{label!r} has no figure for {contender!r}")
                return found
        raise KeyError(label)


Rounds = dict[tuple[str, str], list[float]]
"""(row label, contender) -> the figure of each round, in round order."""

ROUNDS_NOTE = (
    "Every figure is the median over {rounds} rounds, the contenders' order rotating from "
    "round to round; a target's ratio is the median of the rounds' ratios (each round's "
    "Conduit figure over the other's), with their lowest\u2013highest in brackets."
)


def median(values: list[float]) -> float:
    """The median of a measurement's rounds."""
    return statistics.median(values)


def ratio_target(label: str, ours: list[float], theirs: list[float], required: float) -> Target:
    """A target on the median of the rounds' ratios, its label showing their range."""
    ratios = [a / b for a, b in zip(ours, theirs, strict=True) if b]
    low, high = min(ratios), max(ratios)
    spread = f"{low:.2f}\u2013{high:.2f}x"
    return Target(f"{label} (rounds: {spread})", statistics.median(ratios), required)


def rate(count: int, seconds: float) -> float:
    """Operations per second, guarding against a zero-length interval."""
    return count / seconds if seconds > 0 else 0.0


def run_for(duration: float, step: Callable[[int], int]) -> float:
    """Call ``step(i)`` (which returns how many events it handled) for ``duration`` s.

    Returns events per second.
    """
    count = 0
    i = 0
    start = time.perf_counter()
    deadline = start + duration
    while True:
        count += step(i)
        i += 1
        now = time.perf_counter()
        if now >= deadline:
            return rate(count, now - start)


def read_rate(duration: float, read: Callable[[], int]) -> float:
    """Events per second of a read repeated for ``duration`` s (at least twice), after a warm-up."""
    read()
    count = 0
    runs = 0
    start = time.perf_counter()
    while True:
        count += read()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= duration and runs >= 2:
            return rate(count, elapsed)


@contextmanager
def fresh_database(server_url: str, name: str) -> Iterator[str]:
    """A new PostgreSQL database ``name`` on the server, dropped afterwards; yields its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(server_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
