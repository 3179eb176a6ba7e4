"""``migrate-events``: stored events rewritten to today's schema versions, on every engine.

The API (:func:`conduit.migration.migrate_events`, ``EventStore.migrate_events``)
on memory, SQLite and PostgreSQL; the ``conduit migrate-events`` command on
SQLite and PostgreSQL, through typer's runner, with the upcasters in a module
written for the test.
"""

from __future__ import annotations

import importlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner, Result

from conduit import Event, EventDecodeError, EventStore, TypedEvent, TypeRegistry
from conduit.cli import app
from conduit.cli.migrate import load_types
from conduit.errors import ConfigurationError, InvalidArgument
from conduit.migration import (
    CHECKPOINT,
    FINGERPRINT,
    MigrationChange,
    MigrationReport,
    fingerprint,
    migrate_events,
)

ROOT = Path(__file__).resolve().parent.parent

MakeStore = Callable[[], EventStore]


@dataclass(frozen=True)
class MemberJoined:
    """Version 3: stored as ``user_signed_up`` long ago, then v1 ``name``, v2 split it."""

    event_version: ClassVar[int] = 3
    first_name: str
    last_name: str
    country: str


@dataclass(frozen=True)
class NoteAdded:
    text: str


class Switch:
    """Makes the v2 -> v3 upcaster fail on data holding ``{"fail": true}`` while on."""

    on = False


def registry(switch: type[Switch] = Switch) -> TypeRegistry:
    types = TypeRegistry([MemberJoined, NoteAdded])

    @types.upcaster("user_signed_up", 1, rename="member_joined", to_version=1)
    def renamed(data: dict[str, Any]) -> dict[str, Any]:
        return {"name": data["username"]}

    @types.upcaster("member_joined", 1)
    def split_name(data: dict[str, Any]) -> dict[str, Any]:
        first, _, last = data.pop("name").partition(" ")
        return {**data, "first_name": first, "last_name": last}

    @types.upcaster("member_joined", 2)
    def add_country(data: dict[str, Any]) -> dict[str, Any]:
        if switch.on and data.get("fail"):
            raise RuntimeError("this upcaster has a bug")
        return {**data, "country": "unknown"}

    return types


def fill(store: EventStore) -> list[Event]:
    """Old events of every kind, in several streams, written by code without upcasters."""
    member = uuid.UUID("0190d7c6-0000-7000-8000-000000000001")
    pushed = [
        store.push("user_signed_up", "m-1", {"username": "Ada Lovelace"}),
        store.push("member_joined", "m-2", {"name": "Grace Hopper"}, metadata={"user": "hr"}),
        store.push(
            "member_joined",
            member,
            {"first_name": "Kris", "last_name": "Nova"},
            metadata={"schema_version": 2, "user": "admin"},
        ),
        store.push("note_added", "m-1", {"text": "left untouched"}),
        store.push(
            "member_joined",
            "m-3",
            {"first_name": "Alan", "last_name": "Turing", "country": "UK"},
            metadata={"schema_version": 3},
        ),
        *store.push_many(
            "m-4",
            [
                ("user_signed_up", {"username": "Edsger Dijkstra"}),
                ("note_added", {"text": "hello"}),
                ("member_joined", {"name": "Barbara Liskov"}),
            ],
        ),
        store.push("thing_happened", "other", {"n": 1}),
    ]
    settled(store, len(pushed))
    return pushed


def settled(store: EventStore, count: int, timeout: float = 60.0) -> list[Event]:
    """The global log once it shows ``count`` events.

    On PostgreSQL an event shows in the log once every older transaction of
    the server has ended; other test runs sharing the server may hold that
    back for a moment.
    """
    deadline = time.monotonic() + timeout
    while True:
        log = list(EventStore(store.backend).read_all())
        if len(log) >= count or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def stored(store: EventStore) -> list[Event]:
    """The global log as it is stored: no upcasters."""
    return list(EventStore(store.backend).read_all())


def place(event: Event) -> tuple[Any, ...]:
    """What a rewrite never changes."""
    return (event.id, event.stream_id, event.version, event.position, event.recorded_at)


EXPECTED_CHANGES = (
    MigrationChange("member_joined", 1, "member_joined", 3, 2),
    MigrationChange("member_joined", 2, "member_joined", 3, 1),
    MigrationChange("user_signed_up", 1, "member_joined", 3, 2),
)


# -- the API, on every engine --------------------------------------------------


def test_old_events_are_rewritten_on_disk_as_reading_gives_them(store: EventStore) -> None:
    pushed = fill(store)
    typed = EventStore(store.backend, types=registry())
    before = list(typed.read_all())

    report = typed.migrate_events(batch_size=3)

    assert report.rewritten == 5
    assert report.scanned == len(pushed)
    assert report.changes == EXPECTED_CHANGES
    assert report.batches == 3
    assert report.complete
    assert not report.dry_run
    assert report.last_position == pushed[-1].position
    after = stored(store)
    assert [place(e) for e in after] == [place(e) for e in pushed]
    assert [(e.name, e.data, e.metadata) for e in after] == [
        ("member_joined", {"first_name": "Ada", "last_name": "Lovelace", "country": "unknown"},
         {"schema_version": 3}),
        ("member_joined", {"first_name": "Grace", "last_name": "Hopper", "country": "unknown"},
         {"user": "hr", "schema_version": 3}),
        ("member_joined", {"first_name": "Kris", "last_name": "Nova", "country": "unknown"},
         {"schema_version": 3, "user": "admin"}),
        ("note_added", {"text": "left untouched"}, {}),
        ("member_joined", {"first_name": "Alan", "last_name": "Turing", "country": "UK"},
         {"schema_version": 3}),
        ("member_joined", {"first_name": "Edsger", "last_name": "Dijkstra", "country": "unknown"},
         {"schema_version": 3}),
        ("note_added", {"text": "hello"}, {}),
        ("member_joined", {"first_name": "Barbara", "last_name": "Liskov", "country": "unknown"},
         {"schema_version": 3}),
        ("thing_happened", {"n": 1}, {}),
    ]  # fmt: skip
    # Reading through the upcasters gives what it gave before, now without upcasting.
    assert list(typed.read_all()) == before
    assert type(after[3]) is Event
    assert EventStore(store.backend).get("m-4")[0].name == "member_joined"


def test_the_module_function_and_the_store_method_agree(make_store: MakeStore) -> None:
    store = make_store()
    fill(store)
    report = migrate_events(EventStore(store.backend, types=registry()), dry_run=True)
    assert report.changes == EXPECTED_CHANGES
    assert report == EventStore(store.backend, types=registry()).migrate_events(dry_run=True)


def test_a_dry_run_writes_nothing_and_reports_what_would_change(store: EventStore) -> None:
    pushed = fill(store)
    typed = EventStore(store.backend, types=registry())
    before = stored(store)

    report = typed.migrate_events(dry_run=True, batch_size=2)

    assert report.dry_run
    assert report.complete
    assert report.rewritten == 5
    assert report.scanned == len(pushed)
    assert report.changes == EXPECTED_CHANGES
    assert stored(store) == before
    assert store.backend.load_checkpoint(CHECKPOINT) is None
    # What a dry run announced is what the run then does.
    done = typed.migrate_events(batch_size=2)
    assert (done.rewritten, done.scanned, done.changes) == (5, len(pushed), EXPECTED_CHANGES)


def test_batches_smaller_than_the_log_report_progress_after_each(store: EventStore) -> None:
    pushed = fill(store)
    seen: list[MigrationReport] = []

    report = EventStore(store.backend, types=registry()).migrate_events(
        batch_size=2, progress=seen.append
    )

    assert [r.scanned for r in seen] == [2, 4, 6, 8, 9]
    assert [r.last_position for r in seen] == [pushed[i].position for i in (1, 3, 5, 7, 8)]
    assert [r.rewritten for r in seen] == [2, 3, 4, 5, 5]
    assert not any(r.complete for r in seen)
    assert report.batches == 5
    assert report.rewritten == 5
    # Done: the next run starts where this one ended.
    assert store.backend.load_checkpoint(CHECKPOINT) == pushed[-1].position
    assert store.subscription_status() == []  # Conduit's own checkpoints are not subscriptions


def test_no_subscription_may_take_a_name_conduit_keeps(store: EventStore) -> None:
    with pytest.raises(InvalidArgument, match="Conduit's own"):
        store.subscribe(object(), name=CHECKPOINT)


def test_a_failing_upcaster_stops_the_run_and_a_second_run_resumes(store: EventStore) -> None:
    class Buggy(Switch):
        on = True

    pushed = fill(store)
    # Events 10 and 11: the first is fine, the second makes the upcaster fail.
    pushed += store.push_many(
        "m-5",
        [
            ("member_joined", {"name": "Donald Knuth"}),
            ("member_joined", {"name": "X Y", "fail": 1}),
        ],
    )
    pushed.append(store.push("member_joined", "m-6", {"name": "Ken Thompson"}))
    settled(store, len(pushed))
    typed = EventStore(store.backend, types=registry(Buggy))

    with pytest.raises(EventDecodeError) as failure:
        typed.migrate_events(batch_size=4)

    assert failure.value.event_id == pushed[10].id
    assert "upcaster" in str(failure.value)
    after = stored(store)
    # Batches 1 and 2 (events 1 to 8) are rewritten; batch 3 (events 9 to 12) is not.
    assert [e.name for e in after[:8]] == ["member_joined"] * 3 + [
        "note_added",
        "member_joined",
        "member_joined",
        "note_added",
        "member_joined",
    ]
    assert all(e.metadata.get("schema_version") == 3 for e in after[:8] if e.name != "note_added")
    assert after[8:] == pushed[8:]
    assert store.backend.load_checkpoint(CHECKPOINT) == pushed[7].position

    Buggy.on = False  # the bug fixed
    report = typed.migrate_events(batch_size=4)

    assert report.started_after == pushed[7].position
    assert (report.scanned, report.rewritten) == (4, 3)
    assert report.changes == (MigrationChange("member_joined", 1, "member_joined", 3, 3),)
    names = {e.name for e in stored(store)}
    assert names == {"member_joined", "note_added", "thing_happened"}
    assert all(
        e.metadata["schema_version"] == 3 for e in stored(store) if e.name == "member_joined"
    )
    assert store.backend.load_checkpoint(CHECKPOINT) == pushed[-1].position


def test_an_interrupted_run_resumes_from_its_checkpoint_unless_restarted(
    store: EventStore,
) -> None:
    pushed = fill(store)
    typed = EventStore(store.backend, types=registry())

    class Interrupted(Exception):
        pass

    def stop_after_two_batches(report: MigrationReport) -> None:
        if report.batches == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        typed.migrate_events(batch_size=3, progress=stop_after_two_batches)
    assert store.backend.load_checkpoint(CHECKPOINT) == pushed[5].position

    dry = typed.migrate_events(batch_size=3, dry_run=True)  # resumes too
    assert (dry.started_after, dry.scanned, dry.rewritten) == (pushed[5].position, 3, 1)
    everything = typed.migrate_events(batch_size=3, dry_run=True, restart=True)
    assert (everything.started_after, everything.scanned, everything.rewritten) == (0, 9, 1)
    resumed = typed.migrate_events(batch_size=3)
    assert (resumed.started_after, resumed.scanned, resumed.rewritten) == (pushed[5].position, 3, 1)
    assert sum(1 for e in stored(store) if e.metadata.get("schema_version") == 3) == 6


def test_a_second_run_starts_where_the_first_ended_and_restart_rescans(
    store: EventStore,
) -> None:
    pushed = fill(store)
    typed = EventStore(store.backend, types=registry())
    typed.migrate_events(batch_size=4)
    once = stored(store)

    again = typed.migrate_events(batch_size=4)

    assert (again.started_after, again.scanned, again.rewritten) == (pushed[-1].position, 0, 0)
    assert stored(store) == once
    newer = store.push("member_joined", "m-8", {"name": "Ken Thompson"})  # old code, still
    settled(store, len(pushed) + 1)
    third = typed.migrate_events(batch_size=4)
    assert (third.started_after, third.scanned, third.rewritten) == (pushed[-1].position, 1, 1)
    assert stored(store)[-1].metadata["schema_version"] == 3
    everything = typed.migrate_events(batch_size=4, restart=True)
    assert (everything.started_after, everything.scanned, everything.rewritten) == (
        0,
        len(pushed) + 1,
        0,
    )
    assert store.backend.load_checkpoint(CHECKPOINT) == newer.position


def more_upcasters() -> TypeRegistry:
    """The registry of :func:`registry`, and one upcaster more (``note_added`` v1 to v2)."""
    types = registry()

    @types.upcaster("note_added", 1)
    def signed(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "by": "unknown"}

    return types


def test_a_run_with_changed_upcasters_starts_over_from_the_first_event(
    store: EventStore,
) -> None:
    pushed = fill(store)
    EventStore(store.backend, types=registry()).migrate_events(batch_size=4)
    changed = EventStore(store.backend, types=more_upcasters())
    assert fingerprint(more_upcasters().upcasters) != fingerprint(registry().upcasters)

    dry = changed.migrate_events(dry_run=True)
    assert (dry.started_after, dry.scanned, dry.rewritten) == (0, len(pushed), 2)
    assert store.backend.load_checkpoint(FINGERPRINT) == fingerprint(registry().upcasters)

    report = changed.migrate_events(batch_size=4)

    assert (report.started_after, report.scanned, report.rewritten) == (0, len(pushed), 2)
    assert report.changes == (MigrationChange("note_added", 1, "note_added", 2, 2),)
    assert [e.data for e in stored(store) if e.name == "note_added"] == [
        {"text": "left untouched", "by": "unknown"},
        {"text": "hello", "by": "unknown"},
    ]
    assert store.backend.load_checkpoint(FINGERPRINT) == fingerprint(more_upcasters().upcasters)
    again = changed.migrate_events()
    assert (again.started_after, again.scanned) == (pushed[-1].position, 0)
    # Back to the first registry: changed too, so it goes over everything again.
    back = EventStore(store.backend, types=registry()).migrate_events()
    assert (back.started_after, back.scanned, back.rewritten) == (0, len(pushed), 0)


def test_a_run_from_a_given_position_does_not_vouch_for_new_upcasters(
    store: EventStore,
) -> None:
    pushed = fill(store)
    EventStore(store.backend, types=registry()).migrate_events()
    changed = EventStore(store.backend, types=more_upcasters())

    partial = changed.migrate_events(after=pushed[4].position)
    assert (partial.started_after, partial.rewritten) == (pushed[4].position, 1)

    # The events before that position never met the new upcaster: the next run starts over.
    assert changed.migrate_events().started_after == 0
    assert all(e.data.get("by") == "unknown" for e in stored(store) if e.name == "note_added")


class Names:
    """An entity that keeps the names of its events, as each reader reads them."""

    replayed = 0

    def __init__(self) -> None:
        self.names: list[str] = []

    def _seen(self, event: Event) -> None:
        Names.replayed += 1
        self.names.append(event.name)

    apply_user_signed_up = apply_member_joined = apply_note_added = apply_thing_happened = _seen


def test_snapshots_taken_before_a_rewrite_of_their_stream_are_not_used_after_it(
    store: EventStore,
) -> None:
    fill(store)
    plain = EventStore(store.backend)  # no upcasters: reads what is stored
    before = plain.load("m-4", Names)
    assert before.names == ["user_signed_up", "note_added", "member_joined"]
    plain.save_snapshot("m-4", before, 3)
    plain.save_snapshot("other", plain.load("other", Names), 1)  # a stream not rewritten

    EventStore(store.backend, types=registry()).migrate_events()

    Names.replayed = 0
    after = plain.load("m-4", Names)
    assert after.names == ["member_joined", "note_added", "member_joined"]
    assert Names.replayed == 3  # the snapshot was ignored: every event replayed
    plain.save_snapshot("m-4", after, 3)  # taken after the rewrite: good to use
    Names.replayed = 0
    assert plain.load("m-4", Names).names == after.names
    assert plain.load("other", Names).names == ["thing_happened"]
    assert Names.replayed == 0  # both from their snapshots


def test_after_starts_past_a_position_whatever_the_checkpoint(store: EventStore) -> None:
    pushed = fill(store)
    typed = EventStore(store.backend, types=registry())
    report = typed.migrate_events(after=pushed[4].position)
    assert (report.started_after, report.scanned, report.rewritten) == (pushed[4].position, 4, 2)
    assert stored(store)[0].name == "user_signed_up"  # before the start: left as it was


def test_a_store_without_upcasters_has_nothing_to_do(store: EventStore) -> None:
    fill(store)
    before = stored(store)
    for types in (None, TypeRegistry([MemberJoined])):
        report = EventStore(store.backend, types=types).migrate_events()
        assert not report.has_upcasters
        assert (report.scanned, report.rewritten, report.changes) == (0, 0, ())
    assert stored(store) == before
    assert store.backend.load_checkpoint(CHECKPOINT) is None


def test_bad_arguments_are_refused(store: EventStore) -> None:
    typed = EventStore(store.backend, types=registry())
    for bad in (0, -1, 100_001, 2.5):
        with pytest.raises(InvalidArgument, match="batch_size"):
            typed.migrate_events(batch_size=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="after"):
        typed.migrate_events(after=-1)


def test_readers_and_projections_are_fine_afterwards(store: EventStore) -> None:
    pushed = fill(store)
    typed = EventStore(store.backend, types=registry())
    members: list[MemberJoined] = []

    class Members:
        def on_member_joined(self, event: TypedEvent[MemberJoined]) -> None:
            members.append(event.payload)

    typed.subscribe(Members(), name="members", names=["member_joined"])
    before = list(members)
    assert len(before) == 6
    stream = typed.get("m-4")

    typed.migrate_events(batch_size=2)

    assert typed.get("m-4") == stream
    assert typed.read_event(pushed[0].id) == next(iter(typed.read_all()))
    assert [e.payload for e in typed.read_all(names=["member_joined"])] == before  # type: ignore[attr-defined]
    # A projection that ran before keeps going; a new one sees the same events.
    typed.push(MemberJoined("Ken", "Thompson", "US"), "m-7")
    assert members == [*before, MemberJoined("Ken", "Thompson", "US")]
    fresh: list[MemberJoined] = []

    class Fresh:
        def on_member_joined(self, event: TypedEvent[MemberJoined]) -> None:
            fresh.append(event.payload)

    typed.subscribe(Fresh(), name="fresh")
    assert fresh == members
    # A reader without upcasters now reads today's shape directly.
    plain = EventStore(store.backend, types=[MemberJoined, NoteAdded])
    assert [e.payload for e in plain.read_all(names=["member_joined"])] == members  # type: ignore[attr-defined]


# -- the loader ------------------------------------------------------------------

APP = """
from dataclasses import dataclass
from typing import ClassVar

from conduit import TypeRegistry, Upcasters


@dataclass(frozen=True)
class MemberJoined:
    event_version: ClassVar[int] = 2
    first_name: str
    last_name: str


types = TypeRegistry([MemberJoined])


@types.upcaster("user_signed_up", 1, rename="member_joined", to_version=1)
def renamed(data):
    return {"name": data["username"]}


FAIL = True  # a bug, for now


@types.upcaster("member_joined", 1)
def split_name(data):
    if FAIL and data.get("fail"):
        raise ValueError("cannot split " + data["name"])
    first, _, last = data.pop("name").partition(" ")
    return {**data, "first_name": first, "last_name": last}


upcasters = types.upcasters
classes = [MemberJoined]


def make_types():
    return types


not_types = 42
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of the application's upcasters, importable by the CLI; returns its name."""
    module = f"migrate_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    return module


def test_the_loader_takes_a_registry_upcasters_classes_or_a_function(app_module: str) -> None:
    registry_ = load_types(f"{app_module}:types")
    assert load_types(f"{app_module}:make_types") is registry_
    assert load_types(f"{app_module}:upcasters").upcasters is registry_.upcasters
    from_classes = load_types(f"{app_module}:classes")
    assert from_classes.class_for("member_joined") is registry_.class_for("member_joined")
    assert not from_classes.upcasters
    for spec, message in [
        (f"{app_module}:not_types", "is a int"),
        (f"{app_module}:missing", "has no attribute"),
        ("no_such_module_here:types", "cannot import"),
        (app_module, "not module:attribute"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            load_types(spec)


# -- the command -----------------------------------------------------------------

WIDE = {"COLUMNS": "200", "CONDUIT_URL": None}


def conduit(*args: str, url: str | None = None) -> Result:
    prefix = ["--store", url] if url else []
    return CliRunner().invoke(app, [*prefix, *args], env=WIDE)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new store made with ``conduit init``, on SQLite or PostgreSQL."""
    if request.param == "sqlite":
        made = f"sqlite:///{tmp_path / 'cli.db'}"
    else:
        base: str = request.getfixturevalue("postgres_url")
        separator = "&" if "?" in base else "?"
        made = f"{base}{separator}schema=migrate_{uuid.uuid4().hex[:8]}"
    ok(conduit("init", made))
    return made


@pytest.fixture
def old_store(url: str) -> Iterator[EventStore]:
    """The test's store, holding old events, as code without upcasters wrote them."""
    with EventStore(url) as store:
        pushed = [
            store.push("user_signed_up", "m-1", {"username": "Ada Lovelace"}),
            store.push("member_joined", "m-2", {"name": "Grace Hopper"}),
            store.push("member_joined", "m-3", {"name": "Alan Turing"}),
            store.push("note_added", "m-1", {"text": "hello"}),
        ]
        settled(store, len(pushed))
        yield store


def test_command_dry_run_reports_a_table_and_writes_nothing(
    url: str, app_module: str, old_store: EventStore
) -> None:
    before = stored(old_store)
    result = ok(conduit("migrate-events", f"{app_module}:types", "--dry-run", url=url))
    assert "Would rewrite (dry run)" in result.stdout
    assert re.search(r"member_joined\s+1\s+member_joined\s+2\s+2", result.stdout)
    assert re.search(r"user_signed_up\s+1\s+member_joined\s+2\s+1", result.stdout)
    assert "3 of 4 events scanned would be rewritten; nothing was written" in result.stdout
    assert stored(old_store) == before


def test_command_rewrites_then_finds_nothing_left(
    url: str, app_module: str, old_store: EventStore
) -> None:
    before = stored(old_store)
    result = ok(conduit("migrate-events", f"{app_module}:upcasters", "--batch-size", "2", url=url))
    assert "Rewritten" in result.stdout
    assert "Rewrote 3 of 4 events scanned" in result.stdout
    assert "in 2 batches" in result.stdout
    after = stored(old_store)
    assert [place(e) for e in after] == [place(e) for e in before]
    assert [(e.name, e.metadata) for e in after] == [
        ("member_joined", {"schema_version": 2}),
        ("member_joined", {"schema_version": 2}),
        ("member_joined", {"schema_version": 2}),
        ("note_added", {}),
    ]
    assert after[0].data == {"first_name": "Ada", "last_name": "Lovelace"}

    again = ok(conduit("migrate-events", f"{app_module}:types", url=url))  # the same upcasters
    assert f"Resumed after position {after[-1].position}" in again.stdout
    assert "Nothing to rewrite" in again.stdout
    assert "the 0 events scanned" in again.stdout
    everything = ok(conduit("migrate-events", f"{app_module}:types", "--restart", url=url))
    assert "Resumed" not in everything.stdout
    assert "Nothing to rewrite" in everything.stdout
    assert "the 4 events scanned" in everything.stdout


def test_command_stops_on_a_failing_upcaster_and_resumes(
    url: str, app_module: str, old_store: EventStore
) -> None:
    bad = old_store.push("member_joined", "m-4", {"name": "X Y", "fail": True})
    settled(old_store, 5)
    spec = f"{app_module}:types"
    result = conduit("migrate-events", spec, "--batch-size", "2", url=url)

    assert result.exit_code == 1
    assert str(bad.id) in result.stderr
    assert "cannot split X Y" in result.stderr
    assert "Stopped: 3 events rewritten" in result.stderr
    assert "Run the same command again to resume" in result.stderr
    after = stored(old_store)
    assert [e.metadata.get("schema_version") for e in after] == [2, 2, 2, None, None]

    module: Any = importlib.import_module(app_module)
    module.FAIL = False  # the bug fixed
    result = ok(conduit("migrate-events", spec, "--batch-size", "2", url=url))

    assert f"Resumed after position {after[3].position}" in result.stdout
    assert "Rewrote 1 of 1 events scanned" in result.stdout
    assert stored(old_store)[4].data == {"first_name": "X", "last_name": "Y", "fail": True}


def test_command_with_a_store_and_no_upcasters_says_nothing_to_do(
    url: str, app_module: str, old_store: EventStore
) -> None:
    result = ok(conduit("migrate-events", f"{app_module}:classes", url=url))
    assert "has no upcasters: nothing to do" in result.stdout


def test_command_errors_are_one_line() -> None:
    result = conduit("migrate-events", "no_such_module_here:types", url="sqlite:///unused.db")
    assert result.exit_code == 1
    assert "cannot import 'no_such_module_here'" in result.stderr
    assert conduit("migrate-events", "x:y").exit_code == 2  # no store: a usage error


def test_command_help_shows_examples_and_docs_show_the_command() -> None:
    result = ok(conduit("migrate-events", "--help"))
    assert "Examples:" in result.output
    assert "conduit migrate-events" in result.output
    assert "--dry-run" in result.output
    assert "--restart" in result.output
    text = (ROOT / "docs" / "cli.md").read_text()
    assert re.search(r"^(\S+=\S+ )?conduit( --store \S+)? migrate-events\b", text, re.M)
    assert "migrate-events" in ok(conduit("--help")).output
