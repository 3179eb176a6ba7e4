"""Personal data (issue 17): appends and reads of events whose personal fields are sealed
(AES-GCM, a key per subject), against the same events unencrypted, in the same run.

The event is the benchmarks' usual body (``benchmarks.common.event_data``) with its three
personal fields — first name, last name, email — marked ``conduit.personal``; the
subject is the stream, and each stream (a person) gets ten events, so that one push
in ten makes a new subject's key. Contenders alternate within each round; the best
round counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import Row, Section, Target, event_data, fresh_database, rate, read_rate
from conduit import EventStore, personal
from conduit.core.sealing import _open_text, _seal_text, new_key

__all__ = ["DATABASE", "run"]

DATABASE = "conduit_bench_personal"
SEALED = "personal (encrypted)"
PLAIN = "plain"
PER_PERSON = 10
PERSONAL_FIELDS = ("first_name", "last_name", "email")
Log = Callable[[str], None]


def _data(index: int, sealed: bool) -> dict[str, Any]:
    data = event_data(index)
    if sealed:
        for name in PERSONAL_FIELDS:
            data[name] = personal(data[name])
    return data


def _appends(store: EventStore, prefix: str, sealed: bool, duration: float) -> float:
    """Single-event pushes per second for ``duration`` s."""
    count = 0
    start = time.perf_counter()
    while True:
        store.push("person_registered", f"{prefix}-{count // PER_PERSON}", _data(count, sealed))
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= duration:
            return rate(count, elapsed)


def _batches(store: EventStore, prefix: str, sealed: bool, duration: float) -> float:
    """Events per second pushed 100 at a time (one stream, one subject, per batch)."""
    count = 0
    start = time.perf_counter()
    while True:
        batch = [("person_registered", _data(count + i, sealed)) for i in range(100)]
        store.push_many(f"{prefix}-{count // 100}", batch)
        count += 100
        elapsed = time.perf_counter() - start
        if elapsed >= duration:
            return rate(count, elapsed)


def _crypto_floor(count: int) -> tuple[float, float]:
    """Microseconds per event of the cryptography alone, on the personal values of one
    event: sealing them (a nonce, AES-GCM, base64 of the JSON list) and opening them
    again (base64, AES-GCM, JSON), the least a sealed append or read can add."""
    key = new_key()
    values = [[event_data(i)[name] for name in PERSONAL_FIELDS] for i in range(count)]
    start = time.perf_counter()
    sealed = [_seal_text(key, "person-1", found) for found in values]
    seal = time.perf_counter() - start
    start = time.perf_counter()
    for text in sealed:
        _open_text(key, "person-1", text)
    opened = time.perf_counter() - start
    return seal / count * 1e6, opened / count * 1e6


def _engine(url: str, engine: str, quick: bool, log: Log) -> dict[str, dict[str, float]]:
    duration = 0.5 if quick else 2.0
    rounds = 1 if quick else 2
    stream_events = 2_000 if quick else 10_000
    found: dict[str, dict[str, float]] = {SEALED: {}, PLAIN: {}}
    with EventStore(url) as store:
        store.setup()
        for round_number in range(rounds):
            order = [SEALED, PLAIN] if round_number % 2 == 0 else [PLAIN, SEALED]
            for contender in order:
                sealed = contender == SEALED
                prefix = f"{'s' if sealed else 'p'}{round_number}"
                for label, measure in (("appends", _appends), ("batches", _batches)):
                    figure = measure(store, f"{prefix}{label[0]}", sealed, duration)
                    found[contender][label] = max(found[contender].get(label, 0.0), figure)
        log(f"{engine}: personal-data appends measured")
        for contender, stream in ((SEALED, "long-sealed"), (PLAIN, "long-plain")):
            sealed = contender == SEALED
            for start in range(0, stream_events, 500):
                store.push_many(
                    stream,
                    [("person_registered", _data(start + i, sealed)) for i in range(500)],
                )
        for _ in range(rounds + 1):
            for contender, stream in ((SEALED, "long-sealed"), (PLAIN, "long-plain")):
                figure = read_rate(duration, lambda s=stream: sum(1 for _ in store.read(s)))  # type: ignore[misc]
                found[contender]["stream"] = max(found[contender].get("stream", 0.0), figure)
        log(f"{engine}: personal-data reads measured")
    return found


def _rows(section: Section, engine: str, found: dict[str, dict[str, float]]) -> None:
    labels = {
        "appends": ("appends, one event per push", "events/s"),
        "batches": ("appends, batches of 100", "events/s"),
        "stream": ("stream read", "events/s"),
    }
    for key, (label, unit) in labels.items():
        section.rows.append(
            Row(
                f"{label} ({engine})",
                unit,
                {SEALED: found[SEALED][key], PLAIN: found[PLAIN][key]},
            )
        )
        section.targets.append(
            Target(
                f"{engine}, {label}: encrypted / plain",
                found[SEALED][key] / found[PLAIN][key],
                0.7,
            )
        )


def run(quick: bool, workdir: Path, postgres_url: str, log: Log) -> Section:
    """Both engines' figures, as one section."""
    section = Section("Personal data (issue 17)", [SEALED, PLAIN])
    floors = [_crypto_floor(2_000 if quick else 20_000) for _ in range(3)]
    seal, opened = min(f[0] for f in floors), min(f[1] for f in floors)  # each its best
    section.extra_title = "The cryptography alone"
    section.extra.append(Row("sealing one event's personal values", "µs", {SEALED: seal}))
    section.extra.append(Row("opening them", "µs", {SEALED: opened}))
    found_sqlite = _engine(f"sqlite:///{workdir / 'personal.db'}", "SQLite", quick, log)
    _rows(section, "SQLite", found_sqlite)
    with fresh_database(postgres_url, DATABASE) as url:
        found_postgres = _engine(url, "PostgreSQL", quick, log)
    _rows(section, "PostgreSQL", found_postgres)
    for engine, found in (("SQLite", found_sqlite), ("PostgreSQL", found_postgres)):
        for key, label, crypto in (
            ("batches", "appends, batches of 100", seal),
            ("stream", "stream read", opened),
        ):
            plain = 1e6 / found[PLAIN][key]
            section.extra.append(Row(f"{engine}, {label}, plain, per event", "µs", {PLAIN: plain}))
            section.extra.append(
                Row(
                    f"{engine}, {label}: the best encrypted / plain with only the "
                    "cryptography added",
                    "x",
                    {SEALED: plain / (plain + crypto)},
                )
            )
    section.notes += [
        "Each event is the benchmarks' usual body (about 120 bytes of JSON) with its "
        "first name, last name and email marked `conduit.personal`, of one subject (the "
        "stream): one AES-256-GCM message per event, sealed on append and opened on "
        "read. Each person's stream gets ten single-event pushes, so one push in ten "
        "first makes the subject's key (`keep_subject_keys`: on PostgreSQL one statement, "
        "which does not wait for the disk); a batch of 100 is one new person, so each "
        "batch makes a key.",
        "Reads look up the keys of each page's subjects once (one query per page of "
        "500 events); pushes of a known subject use the store's cache of keys.",
        "*The cryptography alone*: sealing one event's three personal values (a 96-bit "
        "nonce from `os.urandom`, AES-256-GCM, base64 of their JSON list) and opening them "
        "(base64, AES-GCM, JSON), timed on their own (best of 3 runs); the last rows add "
        "that time to the plain figure's time per event: the "
        "ratio an encrypted append or read would reach if sealing cost nothing but the "
        "cryptography, no JSON walk, no key lookup, no larger rows.",
    ]
    return section
