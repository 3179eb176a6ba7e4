"""The store commands of ``conduit``, through typer's runner, on SQLite and PostgreSQL.

push, get, read, tail, streams, stats, export, import, copy, projections
(rebuild) and parked (retry, drop). Stores are made with ``conduit init``; a
PostgreSQL store is a schema of its own in the test run's database.
"""

from __future__ import annotations

import importlib
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from conduit import Event, EventStore, new_id
from conduit.cli import app
from conduit.cli import events as events_module
from conduit.cli.appending import resume_position
from conduit.errors import BackendError

ROOT = Path(__file__).resolve().parent.parent
WIDE = {"COLUMNS": "200", "CONDUIT_URL": None}
ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
COPIES = [
    pytest.param("sqlite", "sqlite", id="sqlite-to-sqlite"),
    pytest.param("sqlite", "postgres", id="sqlite-to-postgres", marks=pytest.mark.postgres),
    pytest.param("postgres", "sqlite", id="postgres-to-sqlite", marks=pytest.mark.postgres),
]
NEW_COMMANDS = [
    "forget",
    "push",
    "get",
    "read",
    "tail",
    "streams",
    "stats",
    "export",
    "import",
    "copy",
    "projections",
    "projections rebuild",
    "parked",
    "parked retry",
    "parked drop",
    "relay",
]

_numbers = itertools.count(1)

MakeUrl = Callable[[str], str]


def conduit(*args: str, url: str | None = None, input: str | None = None) -> Result:
    """Run ``conduit [--store URL] ARGS`` in this process, on a wide terminal."""
    prefix = ["--store", url] if url else []
    return CliRunner().invoke(app, [*prefix, *args], env=WIDE, input=input)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def json_lines(output: str | Result) -> list[dict[str, Any]]:
    """The JSON objects of a command's output (or of a text), one per line."""
    text = output.stdout if isinstance(output, Result) else output
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def make_url(request: pytest.FixtureRequest, tmp_path: Path) -> MakeUrl:
    """Makes a new, empty store on an engine with ``conduit init``, and returns its URL."""

    def make(engine: str) -> str:
        number = next(_numbers)
        if engine == "sqlite":
            url = f"sqlite:///{tmp_path / f'store{number}.db'}"
        else:
            base: str = request.getfixturevalue("postgres_url")
            separator = "&" if "?" in base else "?"
            url = f"{base}{separator}schema=cli{number}_{uuid.uuid4().hex[:6]}"
        ok(conduit("init", url))
        return url

    return make


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    engine_name: str = request.param
    return engine_name


@pytest.fixture
def url(make_url: MakeUrl, engine: str) -> str:
    """A new, empty store on the engine the test is parametrized with."""
    return make_url(engine)


@pytest.fixture
def open_store(url: str) -> Iterator[Callable[[], EventStore]]:
    """Opens the test's store from Python, closing every store at the end."""
    opened: list[EventStore] = []

    def make() -> EventStore:
        store = EventStore(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def fill(url: str) -> list[Event]:
    """Several streams, interleaved, with batches, a UUID stream, metadata and awkward data."""
    person = new_id()
    with EventStore(url) as store:
        pushed = [
            store.push("person_registered", person, {"first_name": "Kris"}, expected_version=0),
            store.push("order_placed", "order-1", {"items": [1, 2.5, "three"], "big": 2**62}),
            *store.push_many(
                "order-2",
                [
                    ("order_placed", {"note": "héllo ✓ <script>"}, {"user": "admin"}),
                    ("order_paid", {"amount": 1e16}),
                    ("order_shipped", {"nested": {"deep": [None, True, {"x": -1}]}}),
                ],
            ),
            store.push("person_renamed", person, {"last_name": "Jones"}, metadata={"by": "cli"}),
        ]
        for n in range(8):
            pushed.append(store.push("item_counted", f"counter-{n % 3}", {"n": n}))
        pushed.extend(store.push_many("order-1", [("order_paid", {"n": n}) for n in range(4)]))
        pushed.append(store.push("person_retired", person, {}))
        settled_log(store)
    return pushed


def settled_log(store: EventStore, timeout: float = 60.0) -> list[Event]:
    """The global log, once every event recorded in the streams shows in it.

    On PostgreSQL an event shows in the log once every older transaction of
    the server has ended (docs/design.md §3.3); other test runs sharing the server
    may hold that horizon back for a moment.
    """
    expected = sum(info.version for info in store.streams())
    deadline = time.monotonic() + timeout
    while True:
        log = list(store.read_all())
        if len(log) >= expected or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


Snapshot = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]


def snapshot(url: str) -> Snapshot:
    """What must be equal in two equal stores: the log in order, and the streams."""
    with EventStore(url) as store:
        log = [
            (
                e.id,
                e.stream_id,
                type(e.stream_id),
                e.version,
                e.name,
                e.data,
                e.metadata,
                e.recorded_at,
            )
            for e in settled_log(store)
        ]
        streams = [(s.stream_id, type(s.stream_id), s.version) for s in store.streams()]
    return log, streams


# -- help, documentation, completion --------------------------------------------


@pytest.mark.parametrize("command", NEW_COMMANDS)
def test_each_command_help_shows_an_example(command: str) -> None:
    result = ok(conduit(*command.split(), "--help"))
    assert "Examples:" in result.output
    assert f"conduit {command}" in result.output


def test_main_help_lists_every_command_and_shell_completion() -> None:
    result = ok(conduit("--help"))
    for command in NEW_COMMANDS:
        if " " not in command:
            assert command in result.output
    assert "--install-completion" in result.output


@pytest.mark.parametrize("command", NEW_COMMANDS)
def test_each_command_is_documented_with_an_example_in_docs_cli(command: str) -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    assert re.search(rf"^(\$ )?(\S+=\S+ )?conduit( --store \S+)? {command}\b", text, re.M), command


@pytest.mark.parametrize(
    "args",
    [
        ["push", "thing_happened", "s"],
        ["get", "s"],
        ["read", "s"],
        ["tail", "--timeout", "0"],
        ["streams"],
        ["stats"],
        ["export"],
        ["import", "-"],
        ["projections"],
        ["parked"],
        ["parked", "retry", "--all"],
        ["parked", "drop", "1"],
    ],
    ids=lambda args: " ".join(args),
)
def test_without_a_store_url_commands_are_a_usage_error(args: list[str]) -> None:
    result = conduit(*args)
    assert result.exit_code == 2
    assert "CONDUIT_URL" in result.stderr


def test_stream_ids_complete_from_the_store(url: str) -> None:
    ok(conduit("push", "thing_happened", "person-1", url=url))
    ok(conduit("push", "thing_happened", "order-1", url=url))
    result = CliRunner().invoke(
        app,
        [],
        env={
            **WIDE,
            "_CONDUIT_COMPLETE": "complete_bash",
            "COMP_WORDS": f"conduit --store {url} get pers",
            "COMP_CWORD": "4",
        },
    )
    assert result.stdout.split() == ["person-1"]


# -- push ----------------------------------------------------------------------


def test_push_records_the_event_and_says_where(
    url: str, open_store: Callable[[], EventStore]
) -> None:
    result = ok(conduit("push", "person_registered", "p-1", '{"first_name": "Kris"}', url=url))
    assert "person_registered recorded in stream p-1 at version 1" in result.stdout
    [event] = open_store().get("p-1")
    assert (event.name, event.data, event.metadata) == (
        "person_registered",
        {"first_name": "Kris"},
        {},
    )


def test_push_reads_data_from_stdin_with_a_dash(
    url: str, open_store: Callable[[], EventStore]
) -> None:
    ok(conduit("push", "person_renamed", "p-1", "-", url=url, input='{"last_name": "Jones"}\n'))
    assert open_store().get("p-1")[0].data == {"last_name": "Jones"}


def test_push_without_data_records_an_empty_object(
    url: str, open_store: Callable[[], EventStore]
) -> None:
    ok(conduit("push", "person_retired", "p-1", url=url))
    assert open_store().get("p-1")[0].data == {}


def test_push_with_metadata_id_and_json_prints_the_recorded_event(url: str) -> None:
    event_id = str(new_id())
    result = ok(
        conduit(
            "push",
            "person_registered",
            "p-1",
            "{}",
            "--metadata",
            '{"user": "admin"}',
            "--id",
            event_id,
            "--json",
            url=url,
        )
    )
    [record] = json_lines(result.stdout)
    assert record["id"] == event_id
    assert record["metadata"] == {"user": "admin"}
    assert record["version"] == 1


def test_push_again_with_the_same_id_records_nothing(
    url: str, open_store: Callable[[], EventStore]
) -> None:
    event_id = str(new_id())
    for _ in range(2):
        ok(conduit("push", "person_registered", "p-1", "{}", "--id", event_id, url=url))
    assert [str(e.id) for e in open_store().get("p-1")] == [event_id]


def test_push_with_a_stale_expected_version_fails_in_one_line_and_writes_nothing(
    url: str, open_store: Callable[[], EventStore]
) -> None:
    ok(conduit("push", "person_registered", "p-1", url=url))
    result = conduit("push", "person_renamed", "p-1", "--expected-version", "0", url=url)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: Wrong expected version: 0 (stream: p-1, stream version: 1)"
    ]
    assert open_store().stream_version("p-1") == 1


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", '"text"'])
def test_push_refuses_data_that_is_not_a_json_object(url: str, data: str) -> None:
    result = conduit("push", "thing_happened", "s", data, url=url)
    assert result.exit_code == 2
    assert "DATA" in result.stderr


def test_push_refuses_data_the_store_refuses_and_names_the_field(url: str) -> None:
    result = conduit("push", "thing_happened", "s", '{"x": NaN}', url=url)
    assert result.exit_code == 1
    assert "data['x']" in result.stderr
    assert "Traceback" not in result.output


def test_push_to_a_canonical_uuid_makes_a_uuid_stream(
    url: str, open_store: Callable[[], EventStore]
) -> None:
    stream = new_id()
    ok(conduit("push", "person_registered", str(stream), url=url))
    assert open_store().get(stream)[0].stream_id == stream


# -- get and read ----------------------------------------------------------------


def test_get_prints_the_stream_as_a_table(url: str) -> None:
    fill(url)
    result = ok(conduit("get", "order-2", url=url))
    for text in ("order_placed", "order_paid", "order_shipped", '"note":"héllo ✓ <script>"'):
        assert text in result.stdout
    assert '{"user":"admin"}' in result.stdout


def test_get_json_prints_every_event_of_the_stream_as_recorded(url: str) -> None:
    pushed = [e for e in fill(url) if e.stream_id == "order-1"]
    records = json_lines(ok(conduit("get", "order-1", "--json", url=url)).stdout)
    assert [r["id"] for r in records] == [str(e.id) for e in pushed]
    assert [r["version"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["data"] == {"items": [1, 2.5, "three"], "big": 2**62}
    assert records[0]["stream_id_is_uuid"] is False
    assert datetime.fromisoformat(records[0]["recorded_at"]) == pushed[0].recorded_at


def test_get_of_an_unknown_stream_says_it_has_no_events(url: str) -> None:
    result = ok(conduit("get", "nobody", url=url))
    assert result.stdout == ""
    assert "No events in stream nobody" in result.stderr


def test_read_from_version_and_limit(url: str) -> None:
    fill(url)
    records = json_lines(
        ok(conduit("read", "order-1", "--from-version", "2", "--limit", "2", "--json", url=url))
    )
    assert [r["version"] for r in records] == [2, 3]


def test_read_backwards(url: str) -> None:
    fill(url)
    records = json_lines(ok(conduit("read", "order-1", "--backwards", "--json", url=url)).stdout)
    assert [r["version"] for r in records] == [5, 4, 3, 2, 1]


def test_read_since_an_aware_time(url: str, open_store: Callable[[], EventStore]) -> None:
    pushed = fill(url)
    stream = [e for e in pushed if e.stream_id == "order-1"]
    since = stream[2].recorded_at.isoformat()
    records = json_lines(ok(conduit("read", "order-1", "--since", since, "--json", url=url)))
    expected = [e.version for e in stream if e.recorded_at >= stream[2].recorded_at]
    assert [r["version"] for r in records] == expected
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert ok(conduit("read", "order-1", "--since", later, "--json", url=url)).stdout == ""


@pytest.mark.parametrize("since", ["2024-05-01T12:00:00", "2024-05-01", "yesterday"])
def test_read_refuses_a_naive_or_malformed_since(url: str, since: str) -> None:
    result = conduit("read", "order-1", "--since", since, url=url)
    assert result.exit_code == 2
    assert "--since" in result.stderr


# -- tail ------------------------------------------------------------------------


def test_tail_from_start_prints_the_log_in_order(url: str) -> None:
    pushed = fill(url)
    result = ok(conduit("tail", "--from-start", "--json", "--max-events", "5", url=url))
    assert [r["id"] for r in json_lines(result)] == [str(e.id) for e in pushed[:5]]


def test_tail_after_a_position_and_with_names(url: str) -> None:
    pushed = fill(url)
    after = pushed[3].position
    result = ok(
        conduit(
            "tail",
            "--after",
            str(after),
            "--names",
            "order_paid,person_retired",
            "--json",
            "--timeout",
            "0",
            url=url,
        )
    )
    expected = [
        str(e.id)
        for e in pushed
        if e.position > after and e.name in ("order_paid", "person_retired")
    ]
    assert [r["id"] for r in json_lines(result)] == expected


def test_tail_follows_events_pushed_while_it_runs(
    url: str, monkeypatch: pytest.MonkeyPatch, open_store: Callable[[], EventStore]
) -> None:
    fill(url)  # already there: not printed, tail starts at the head
    writer = open_store()

    def push_instead_of_sleeping(seconds: float) -> None:
        writer.push("person_registered", "late", {"first_name": "Grace"})

    monkeypatch.setattr(events_module, "_wait", push_instead_of_sleeping)
    result = ok(conduit("tail", "--max-events", "1", "--timeout", "30", url=url))
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert "late v1  person_registered" in lines[0]
    assert '{"first_name":"Grace"}' in lines[0]


def test_tail_stops_cleanly_on_ctrl_c(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(events_module, "_wait", interrupt)
    result = conduit("tail", url=url)
    assert result.exit_code == 0
    assert "Stopped" in result.stderr
    assert "Traceback" not in result.output


# -- streams and stats -----------------------------------------------------------


def test_streams_lists_every_stream_and_its_version(url: str) -> None:
    fill(url)
    records = json_lines(ok(conduit("streams", "--json", url=url)))
    by_id = {r["stream_id"]: r["version"] for r in records}
    assert by_id["order-1"] == 5
    assert by_id["order-2"] == 3
    assert len(by_id) == 6
    assert sum(r["stream_id_is_uuid"] for r in records) == 1


def test_streams_with_a_prefix_as_a_table(url: str) -> None:
    fill(url)
    result = ok(conduit("streams", "--prefix", "counter-", url=url))
    assert "counter-0" in result.stdout
    assert "order-1" not in result.stdout


def test_streams_page_by_page(url: str) -> None:
    fill(url)
    first = ok(conduit("streams", "--prefix", "counter-", "--limit", "2", "--json", url=url))
    assert [r["stream_id"] for r in json_lines(first)] == ["counter-0", "counter-1"]
    assert "--after counter-1" in first.stderr
    rest = ok(conduit("streams", "--prefix", "counter-", "--after", "counter-1", "--json", url=url))
    assert [r["stream_id"] for r in json_lines(rest)] == ["counter-2"]
    assert "--after" not in rest.stderr


def test_stats_counts_events_and_streams(url: str, open_store: Callable[[], EventStore]) -> None:
    pushed = fill(url)
    [report] = json_lines(ok(conduit("stats", "--json", url=url)))
    assert report["events"] == len(pushed)
    assert report["streams"] == 6
    assert report["head_position"] == open_store().head_position()
    table = ok(conduit("stats", url=url)).stdout
    assert re.search(rf"events\s+{len(pushed)}\b", table)
    assert re.search(r"streams\s+6\b", table)


def test_stats_fast_skips_the_counts(url: str) -> None:
    fill(url)
    [report] = json_lines(ok(conduit("stats", "--fast", "--json", url=url)))
    assert report["events"] is None
    assert report["streams"] is None
    assert report["head_position"] > 0


def test_stats_gives_the_size_of_a_sqlite_store(make_url: MakeUrl) -> None:
    url = make_url("sqlite")
    fill(url)
    [report] = json_lines(ok(conduit("stats", "--json", url=url)))
    assert report["size_bytes"] > 0


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.seen.append(event)


def test_projections_and_stats_show_a_subscriptions_lag(
    url: str, open_store: Callable[[], EventStore]
) -> None:
    store = open_store()
    store.subscribe(Recorder(), name="audit")
    first = store.push("thing_happened", "s", {})
    store.close()
    with EventStore(url) as other:
        for _ in range(3):
            other.push("thing_happened", "s", {})
        settled_log(other)

    [status] = json_lines(ok(conduit("projections", "--json", url=url)))
    assert status["name"] == "audit"
    assert status["checkpoint"] == first.position
    assert status["behind"] == 3
    assert status["checkpoint_in"] == "store"
    table = ok(conduit("projections", url=url)).stdout
    assert re.search(r"audit\s+\d+\s+\d+\s+3\s+0\s+store", table)
    [report] = json_lines(ok(conduit("stats", "--json", url=url)))
    assert report["projections"][0]["behind"] == 3


def test_projections_show_each_partition_of_a_partitioned_subscription(
    url: str, open_store: Callable[[], EventStore]
) -> None:
    from conduit.subscriptions.partitions import partition_of

    store = open_store()
    store.subscribe(Recorder(), name="audit", partitions=2)
    store.push("thing_happened", "s", {})
    store.close()
    with EventStore(url) as other:
        later = [other.push("thing_happened", f"s-{n}", {}) for n in range(6)]
        settled_log(other)
    behind = [sum(1 for e in later if partition_of(e.stream_id, 2) == i) for i in range(2)]

    found = json_lines(ok(conduit("projections", "--json", url=url)))
    assert [(s["name"], s["partition"], s["behind"]) for s in found] == [
        ("audit", "0/2", behind[0]),
        ("audit", "1/2", behind[1]),
    ]
    table = ok(conduit("projections", url=url)).stdout
    assert re.search(rf"audit\s+1/2\s+\d+\s+\d+\s+{behind[1]}\s+0\s+store", table)


def test_projections_without_any_says_so(url: str) -> None:
    result = ok(conduit("projections", url=url))
    assert "No projections" in result.stderr


# -- export and import -----------------------------------------------------------


def test_export_then_import_into_an_empty_store_gives_an_equal_store(
    make_url: MakeUrl, engine: str, tmp_path: Path
) -> None:
    source, target = make_url(engine), make_url(engine)
    fill(source)
    file = tmp_path / "events.jsonl"
    exported = ok(conduit("export", str(file), url=source))
    assert "Exported 19 events" in exported.stderr
    assert len(file.read_text().splitlines()) == 19

    imported = ok(conduit("import", str(file), url=target))

    assert "19 new events" in imported.stdout
    assert snapshot(target) == snapshot(source)


def test_importing_the_same_file_twice_adds_nothing(
    make_url: MakeUrl, engine: str, tmp_path: Path
) -> None:
    source, target = make_url(engine), make_url(engine)
    fill(source)
    file = tmp_path / "events.jsonl"
    ok(conduit("export", str(file), url=source))
    ok(conduit("import", str(file), url=target))
    before = snapshot(target)
    with EventStore(target) as store:
        head = store.head_position()

    again = ok(conduit("import", str(file), url=target))

    assert "0 new events, 19 already in the store" in again.stdout
    assert snapshot(target) == before
    with EventStore(target) as store:
        assert store.head_position() == head


def test_import_of_a_file_overlapping_a_partial_import_adds_the_rest(
    make_url: MakeUrl, engine: str, tmp_path: Path
) -> None:
    source, target = make_url(engine), make_url(engine)
    fill(source)
    file = tmp_path / "events.jsonl"
    ok(conduit("export", str(file), url=source))
    lines = file.read_text().splitlines(keepends=True)
    # Cut inside the batch order-2 v1..v3 (lines 3 to 5), so that a run is half recorded.
    head = tmp_path / "head.jsonl"
    head.write_text("".join(lines[:3]))
    ok(conduit("import", str(head), url=target))

    result = ok(conduit("import", str(file), url=target))

    assert "16 new events, 3 already in the store" in result.stdout
    assert snapshot(target) == snapshot(source)


def test_export_to_stdout_and_import_from_stdin(make_url: MakeUrl, engine: str) -> None:
    source, target = make_url(engine), make_url(engine)
    fill(source)
    exported = ok(conduit("export", url=source))
    ok(conduit("import", "-", url=target, input=exported.stdout))
    assert snapshot(target) == snapshot(source)


def test_export_after_a_position_exports_only_later_events(url: str) -> None:
    pushed = fill(url)
    records = json_lines(ok(conduit("export", "--after", str(pushed[-3].position), url=url)))
    assert [r["id"] for r in records] == [str(e.id) for e in pushed[-2:]]


def test_export_lines_hold_every_field_of_the_event(url: str) -> None:
    pushed = fill(url)
    records = json_lines(ok(conduit("export", url=url)))
    first = records[0]
    assert set(first) == {
        "id",
        "stream_id",
        "stream_id_is_uuid",
        "version",
        "position",
        "name",
        "recorded_at",
        "data",
        "metadata",
        "tags",
    }
    assert first["stream_id"] == str(pushed[0].stream_id)
    assert first["stream_id_is_uuid"] is True
    assert first["position"] == pushed[0].position


def test_import_stops_at_a_bad_line_after_importing_the_lines_before(
    make_url: MakeUrl, engine: str, tmp_path: Path
) -> None:
    source, target = make_url(engine), make_url(engine)
    fill(source)
    lines = json_lines(ok(conduit("export", url=source)))
    file = tmp_path / "broken.jsonl"
    good = [json.dumps(record) for record in lines[:2]]
    file.write_text("\n".join([*good, '{"id": "not finished"', json.dumps(lines[2])]) + "\n")

    result = conduit("import", str(file), url=target)

    assert result.exit_code == 1
    assert "line 3" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    with EventStore(target) as store:
        assert [str(e.id) for e in settled_log(store)] == [r["id"] for r in lines[:2]]


def test_import_refuses_a_stream_that_holds_other_events(
    make_url: MakeUrl, engine: str, tmp_path: Path
) -> None:
    source, target = make_url(engine), make_url(engine)
    fill(source)
    file = tmp_path / "events.jsonl"
    ok(conduit("export", str(file), url=source))
    with EventStore(target) as store:
        store.push("something_else", "order-1", {})

    result = conduit("import", str(file), url=target)

    assert result.exit_code == 1
    assert "line 2 (stream order-1)" in result.stderr
    assert "Wrong expected version" in result.stderr


def test_import_of_a_missing_file_fails_in_one_line(url: str, tmp_path: Path) -> None:
    result = conduit("import", str(tmp_path / "missing.jsonl"), url=url)
    assert result.exit_code == 1
    assert "cannot read" in result.stderr


# -- copy ------------------------------------------------------------------------


@pytest.mark.parametrize(("source_engine", "target_engine"), COPIES)
def test_copy_gives_an_equal_store(
    make_url: MakeUrl, source_engine: str, target_engine: str
) -> None:
    source, target = make_url(source_engine), make_url(target_engine)
    fill(source)

    result = ok(conduit("copy", source, target))

    assert "Copied 19 events" in result.stdout
    assert snapshot(target) == snapshot(source)


@pytest.mark.parametrize(("source_engine", "target_engine"), COPIES)
def test_copy_stopped_halfway_then_resumed_gives_an_equal_store(
    make_url: MakeUrl, source_engine: str, target_engine: str
) -> None:
    source, target = make_url(source_engine), make_url(target_engine)
    pushed = fill(source)

    first = ok(conduit("copy", source, target, "--limit", "9", "--batch-size", "2"))
    assert "Stopped at --limit 9" in first.stdout
    with EventStore(source) as src, EventStore(target) as dst:
        assert [e.id for e in settled_log(dst)] == [e.id for e in pushed[:9]]
        assert resume_position(src, dst) == pushed[8].position

    second = ok(conduit("copy", source, target, "--batch-size", "2"))

    assert f"Resumed after source position {pushed[8].position}" in second.stdout
    assert "Copied 10 events" in second.stdout
    assert snapshot(target) == snapshot(source)


@pytest.mark.parametrize(("source_engine", "target_engine"), COPIES)
def test_copy_interrupted_by_a_failure_then_resumed_gives_an_equal_store(
    make_url: MakeUrl, source_engine: str, target_engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = make_url(source_engine), make_url(target_engine)
    fill(source)
    push_many = EventStore.push_many
    calls = itertools.count(1)

    def failing_push_many(self: EventStore, *args: Any, **kwargs: Any) -> list[Event]:
        if next(calls) == 5:
            raise BackendError("the connection was lost (on purpose)")
        return push_many(self, *args, **kwargs)

    monkeypatch.setattr(EventStore, "push_many", failing_push_many)
    failed = conduit("copy", source, target, "--batch-size", "2")
    assert failed.exit_code == 1
    assert "the connection was lost" in failed.stderr
    assert len(failed.stderr.splitlines()) == 1
    partial, _ = snapshot(target)
    assert 0 < len(partial) < 19

    monkeypatch.setattr(EventStore, "push_many", push_many)
    ok(conduit("copy", source, target, "--batch-size", "2"))

    assert snapshot(target) == snapshot(source)


def test_copy_stopped_by_ctrl_c_says_how_to_go_on_then_resumes(
    make_url: MakeUrl, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = make_url(engine), make_url(engine)
    fill(source)
    push_many = EventStore.push_many
    calls = itertools.count(1)

    def interrupted_push_many(self: EventStore, *args: Any, **kwargs: Any) -> list[Event]:
        if next(calls) == 3:
            raise KeyboardInterrupt
        return push_many(self, *args, **kwargs)

    monkeypatch.setattr(EventStore, "push_many", interrupted_push_many)
    stopped = conduit("copy", source, target)
    assert stopped.exit_code == 130
    assert "Run the same copy again" in stopped.stderr

    monkeypatch.setattr(EventStore, "push_many", push_many)
    ok(conduit("copy", source, target))
    assert snapshot(target) == snapshot(source)


def test_copy_run_again_when_complete_adds_nothing(make_url: MakeUrl, engine: str) -> None:
    source, target = make_url(engine), make_url(engine)
    fill(source)
    ok(conduit("copy", source, target))
    before = snapshot(target)

    again = ok(conduit("copy", source, target))
    from_start = ok(conduit("copy", source, target, "--from-start"))

    assert "Copied 0 events" in again.stdout
    assert "Copied 0 events" in from_start.stdout
    assert "19 were already there" in from_start.stdout
    assert snapshot(target) == before


def test_copy_goes_on_with_events_pushed_to_the_source_since(
    make_url: MakeUrl, engine: str
) -> None:
    source, target = make_url(engine), make_url(engine)
    fill(source)
    ok(conduit("copy", source, target))
    with EventStore(source) as store:
        store.push_many("order-1", [("order_refunded", {}), ("order_closed", {})])
        store.push("person_registered", "p-9", {})
        settled_log(store)

    result = ok(conduit("copy", source, target))

    assert "Copied 3 events" in result.stdout
    assert snapshot(target) == snapshot(source)


# -- projections rebuild ---------------------------------------------------------

READ_MODEL_APP = """
import sqlalchemy as sa
from sqlalchemy.orm import Session

from conduit.projections import SQLProjection

metadata = sa.MetaData()
counts = sa.Table(
    "name_counts",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("events", sa.Integer, nullable=False),
)


class NameCounts(SQLProjection):
    name = "name_counts"
    metadata = metadata

    def on_event(self, event, session: Session) -> None:
        found = session.execute(
            sa.select(counts.c.events).where(counts.c.name == event.name)
        ).scalar_one_or_none()
        if found is None:
            session.execute(counts.insert().values(name=event.name, events=1))
        else:
            session.execute(
                counts.update().where(counts.c.name == event.name).values(events=found + 1)
            )


class Plain:
    name = "plain"

    def on_event(self, event) -> None:
        pass


read_model = NameCounts(READ_MODEL_URL)
projections = [read_model, Plain()]
"""


@pytest.fixture
def read_model_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A module of projections, importable by the CLI; returns (module:attribute, db URL)."""
    module = f"cli_read_model_{uuid.uuid4().hex[:8]}"
    database = f"sqlite:///{tmp_path / 'read-model.db'}"
    source = READ_MODEL_APP.replace("READ_MODEL_URL", repr(database))
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{module}:projections", database


def name_counts(database: str) -> dict[str, int]:
    engine = sa.create_engine(database)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT name, events FROM name_counts")).all()
    finally:
        engine.dispose()
    return {name: count for name, count in rows}


def test_projections_rebuild_rebuilds_a_sql_read_model_from_the_first_event(
    url: str, read_model_app: tuple[str, str], open_store: Callable[[], EventStore]
) -> None:
    spec, database = read_model_app
    fill(url)
    engine = sa.create_engine(database)
    with engine.begin() as conn:  # a read model gone wrong: rows that no event explains
        conn.execute(
            sa.text("CREATE TABLE name_counts (name VARCHAR(200) PRIMARY KEY, events INT)")
        )
        conn.execute(sa.text("INSERT INTO name_counts VALUES ('bogus', 99)"))
    engine.dispose()

    result = ok(conduit("projections", "rebuild", "name_counts", "--app", spec, url=url))

    assert "Rebuilt name_counts from 19 events" in result.stdout
    assert name_counts(database) == {
        "person_registered": 1,
        "person_renamed": 1,
        "person_retired": 1,
        "order_placed": 2,
        "order_paid": 5,
        "order_shipped": 1,
        "item_counted": 8,
    }
    [status] = json_lines(ok(conduit("projections", "--app", spec, "--json", url=url)))
    assert status["name"] == "name_counts"
    assert status["checkpoint"] == open_store().head_position()
    assert status["behind"] == 0
    assert status["checkpoint_in"] == "read model"


def test_projections_with_app_lists_a_running_sql_read_model_once_with_its_own_checkpoint(
    url: str, read_model_app: tuple[str, str], open_store: Callable[[], EventStore]
) -> None:
    spec, database = read_model_app
    module = importlib.import_module(spec.partition(":")[0])
    module.read_model.setup()
    fill(url)
    store = open_store()
    store.subscribe(module.read_model)  # inline: driven by this store's pushes
    last = store.push("item_counted", "counter-9", {})
    store.close()

    statuses = json_lines(ok(conduit("projections", "--app", spec, "--json", url=url)))

    assert [(s["name"], s["checkpoint_in"]) for s in statuses] == [("name_counts", "read model")]
    assert statuses[0]["checkpoint"] == last.position
    assert statuses[0]["behind"] == 0
    assert name_counts(database)["item_counted"] == 9


def test_projections_rebuild_refuses_a_projection_that_is_not_a_sql_read_model(
    url: str, read_model_app: tuple[str, str]
) -> None:
    spec, _ = read_model_app
    result = conduit("projections", "rebuild", "plain", "--app", spec, url=url)
    assert result.exit_code == 1
    assert "not a SQL read model" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_projections_rebuild_of_an_unknown_name_lists_the_known_ones(
    url: str, read_model_app: tuple[str, str]
) -> None:
    spec, _ = read_model_app
    result = conduit("projections", "rebuild", "nope", "--app", spec, url=url)
    assert result.exit_code == 1
    assert "no projection named 'nope' (it has: name_counts, plain)" in result.stderr


# -- parked ----------------------------------------------------------------------


class Failing:
    def on_thing_happened(self, event: Event) -> None:
        raise RuntimeError(f"cannot handle {event.data}")


@pytest.fixture
def parked_ids(url: str) -> list[int]:
    """Two events parked by the subscription ``failing``; their parked ids."""
    with EventStore(url) as store:
        store.subscribe(Failing(), name="failing", max_attempts=1, backoff=0)
        store.push("thing_happened", "s", {"n": 1})
        store.push("thing_happened", "s", {"n": 2})
        ids = [parked.id for parked in store.parked()]
    assert len(ids) == 2
    return ids


def test_parked_lists_the_parked_events_with_their_errors(url: str, parked_ids: list[int]) -> None:
    table = ok(conduit("parked", url=url)).stdout
    assert "failing" in table
    assert "cannot handle {'n': 1}" in table
    records = json_lines(ok(conduit("parked", "--json", url=url)))
    assert [r["id"] for r in records] == parked_ids
    assert records[0]["subscription"] == "failing"
    assert "Traceback" in records[0]["traceback"]
    assert records[0]["retry_requested"] is False


def test_parked_filters_by_subscription(url: str, parked_ids: list[int]) -> None:
    result = ok(conduit("parked", "--subscription", "another", url=url))
    assert "No parked events" in result.stderr


def test_parked_retry_marks_one_event_for_retry(url: str, parked_ids: list[int]) -> None:
    result = ok(conduit("parked", "retry", str(parked_ids[0]), url=url))
    assert "1 parked event marked for retry" in result.stdout
    records = json_lines(ok(conduit("parked", "--json", url=url)))
    assert [r["retry_requested"] for r in records] == [True, False]


def test_parked_retry_all_marks_every_event(url: str, parked_ids: list[int]) -> None:
    result = ok(conduit("parked", "retry", "--all", "--subscription", "failing", url=url))
    assert "2 parked events marked for retry" in result.stdout
    records = json_lines(ok(conduit("parked", "--json", url=url)))
    assert all(r["retry_requested"] for r in records)


def test_parked_retry_needs_an_id_or_all(url: str) -> None:
    assert conduit("parked", "retry", url=url).exit_code == 2
    assert conduit("parked", "retry", "1", "--all", url=url).exit_code == 2


def test_parked_retry_of_an_unknown_id_fails_in_one_line(url: str) -> None:
    result = conduit("parked", "retry", "12345", url=url)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: no parked event with id 12345 (conduit parked lists them)"
    ]


def test_parked_drop_forgets_the_event(url: str, parked_ids: list[int]) -> None:
    ok(conduit("parked", "drop", str(parked_ids[0]), url=url))
    records = json_lines(ok(conduit("parked", "--json", url=url)))
    assert [r["id"] for r in records] == parked_ids[1:]
    again = conduit("parked", "drop", str(parked_ids[0]), url=url)
    assert again.exit_code == 1
    assert "no parked event" in again.stderr


@pytest.mark.parametrize(
    "args",
    [["get", "s"], ["push", "thing_happened", "s"], ["streams"], ["stats"], ["export"]],
)
def test_a_mistyped_sqlite_path_is_an_error_and_makes_no_file(
    tmp_path: Path, args: list[str]
) -> None:
    missing = tmp_path / "evnts.db"
    result = conduit(*args, url=f"sqlite:///{missing}")
    assert result.exit_code == 1
    assert "no SQLite store" in result.output
    assert not missing.exists()


def test_import_creates_a_new_sqlite_store(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    with EventStore(source) as store:
        store.push("thing_happened", "s", {"n": 1})
    exported = ok(conduit("export", url=source)).stdout
    target = tmp_path / "new.db"
    ok(conduit("import", "-", url=f"sqlite:///{target}", input=exported))
    with EventStore(f"sqlite:///{target}") as store:
        assert [e.data for e in store.get("s")] == [{"n": 1}]
