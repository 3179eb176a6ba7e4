"""The ``conduit`` command, run through typer's CliRunner."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import typer.main
from typer.testing import CliRunner, Result

from conduit import EventStore
from conduit.cli import app
from conduit.cli.application import error_line
from conduit.errors import ConfigurationError
from conduit.masking import mask_password

WIDE = {"COLUMNS": "200", "CONDUIT_URL": None}


def conduit(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """Run ``conduit ARGS`` in this process, on a wide terminal, without CONDUIT_URL."""
    return CliRunner().invoke(app, list(args), env={**WIDE, **(env or {})})


def command_names() -> list[str]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return sorted(group.commands)


@pytest.fixture
def demo_file(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture
def demo_run(demo_file: Path) -> Result:
    result = conduit("demo", "--path", str(demo_file))
    assert result.exit_code == 0, result.output
    return result


# -- help ------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    result = conduit("--help")
    assert result.exit_code == 0
    for name in ("init", "demo"):
        assert name in command_names()
        assert name in result.output


def test_no_arguments_shows_the_help() -> None:
    result = conduit()
    assert "Usage" in result.output
    assert "init" in result.output


@pytest.mark.parametrize("name", command_names())
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = conduit(name, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert f"conduit {name}" in result.output


# -- demo ------------------------------------------------------------------


def test_demo_prints_the_story_the_stream_and_the_people_table(demo_run: Result) -> None:
    out = demo_run.output
    for line in (
        "Ada Byron is registered",
        "Ada Byron is now Ada Lovelace",
        "Ada Lovelace retires",
    ):
        assert line in out
    assert "The event stream of Ada Lovelace" in out
    for name in ("person_registered", "person_renamed", "person_retired"):
        assert name in out
    assert '"last_name": "Lovelace"' in out
    assert "The people table (read model)" in out
    assert "Hopper" in out
    assert "Turing" in out


def test_demo_says_where_its_files_are(demo_run: Result, demo_file: Path) -> None:
    assert str(demo_file) in demo_run.output
    assert str(demo_file.with_name("events-read-model.db")) in demo_run.output


def test_demo_read_model_holds_the_projected_people(demo_run: Result, demo_file: Path) -> None:
    with sqlite3.connect(demo_file.with_name("events-read-model.db")) as db:
        rows = db.execute(
            "SELECT first_name, last_name, status, version FROM people ORDER BY last_name"
        ).fetchall()
    assert rows == [
        ("Grace", "Hopper", "active", 2),
        ("Ada", "Lovelace", "retired", 3),
        ("Alan", "Turing", "active", 1),
    ]


def test_demo_read_model_rows_match_the_event_streams(demo_run: Result, demo_file: Path) -> None:
    with sqlite3.connect(demo_file.with_name("events-read-model.db")) as db:
        rows = dict(db.execute("SELECT id, version FROM people").fetchall())
    with EventStore(f"sqlite:///{demo_file}") as store:
        streams = {str(info.stream_id): info.version for info in store.streams()}
    assert rows == streams


def test_demo_event_file_holds_the_whole_story(demo_run: Result, demo_file: Path) -> None:
    with EventStore(f"sqlite:///{demo_file}") as store:
        names = [event.name for event in store.read_all()]
    assert names == [
        "person_registered",
        "person_registered",
        "person_registered",
        "person_renamed",
        "person_renamed",
        "person_retired",
    ]


def test_demo_refuses_an_existing_file_and_leaves_it_alone(demo_file: Path) -> None:
    demo_file.write_bytes(b"precious")
    result = conduit("demo", "--path", str(demo_file))
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert demo_file.read_bytes() == b"precious"


def test_demo_without_path_writes_to_a_new_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first = conduit("demo")
    second = conduit("demo")
    assert first.exit_code == second.exit_code == 0
    made = sorted(tmp_path.glob("conduit-demo-*/conduit-demo.db"))
    assert len(made) == 2
    assert str(made[0]) in first.output + second.output


# -- init ------------------------------------------------------------------


def test_init_creates_a_sqlite_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = conduit("init", url)
    assert result.exit_code == 0, result.output
    assert url in result.output
    with EventStore(url) as store:
        assert store.push("person_registered", "p-1", {}).version == 1


def test_init_is_safe_to_repeat_and_says_the_store_has_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(url) as store:
        store.push("person_registered", "p-1", {})
    result = conduit("init", url)
    assert result.exit_code == 0
    assert "already holds events" in result.output
    with EventStore(url) as store:
        assert store.stream_version("p-1") == 1


def test_init_takes_the_url_from_the_store_option(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    result = conduit("--store", f"sqlite:///{path}", "init")
    assert result.exit_code == 0, result.output
    assert path.exists()


def test_init_takes_the_url_from_conduit_url(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    result = conduit("init", env={"CONDUIT_URL": f"sqlite:///{path}"})
    assert result.exit_code == 0, result.output
    assert path.exists()


def test_init_without_a_url_is_a_usage_error() -> None:
    result = conduit("init")
    assert result.exit_code == 2
    assert "CONDUIT_URL" in result.stderr


def test_init_on_memory_warns_that_nothing_is_kept() -> None:
    result = conduit("init", "memory://")
    assert result.exit_code == 0
    assert "keeps nothing" in result.output


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("postgresql://app:p@ss/w@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("postgresql://app@db/app?password=s3cret", "postgresql://app@db/app?password=***"),
        ("postgresql://app@db/app?schema=x", "postgresql://app@db/app?schema=x"),
        ("sqlite:///events.db", "sqlite:///events.db"),
    ],
    ids=["password", "raw-password", "query-password", "no-password", "sqlite"],
)
def test_urls_are_printed_without_their_password(url: str, shown: str) -> None:
    assert mask_password(url) == shown


def with_password(url: str) -> tuple[str, str]:
    """The URL with a password (any one does on a trust server), and that password."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    secret = "hunter2-s3cret"
    user = parts.username or "postgres"
    netloc = f"{user}:{secret}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc)), secret


@pytest.mark.postgres
def test_init_creates_a_postgres_store(postgres_url: str) -> None:
    url = postgres_url + ("&" if "?" in postgres_url else "?") + "schema=cli_init"
    result = conduit("init", url)
    assert result.exit_code == 0, result.output
    assert "no events yet" in result.output
    with EventStore(url) as store:
        assert store.push("person_registered", "p-1", {}).version == 1


@pytest.mark.postgres
def test_init_prints_a_postgres_url_without_its_password(postgres_url: str) -> None:
    url, password = with_password(
        postgres_url + ("&" if "?" in postgres_url else "?") + "schema=cli_init_masked"
    )
    result = conduit("init", url)
    assert result.exit_code == 0, result.output
    assert password not in result.output
    assert ":***@" in result.output


# -- errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["nope://somewhere", "sqlite://relative.db", "memory://with/a/path"]
)
def test_bad_url_prints_one_line_on_stderr_and_exits_1(url: str) -> None:
    result = conduit("init", url)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: cannot open store")
    assert "Traceback" not in result.output


def test_backend_error_prints_one_line_on_stderr(tmp_path: Path) -> None:
    result = conduit("init", f"sqlite:///{tmp_path / 'missing' / 'store.db'}")
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert "cannot open SQLite file" in result.stderr


def one_error_line(result: Result) -> str:
    """The single line a failed command printed on stderr (exit status 1)."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_a_misspelt_option_in_a_sqlite_url_is_one_clean_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}?synchronus=full"
    line = one_error_line(conduit("--store", url, "streams"))
    assert "unknown SQLite option" in line
    assert "synchronus" in line


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgresql://app:sec/ret@pw1@127.0.0.1:1/app?pool_timeout=1&pool_sise=3", "sec/ret@pw1"),
        (
            "postgresql://app@127.0.0.1:1/app?pool_timeout=1&pool_sise=3&password=hunter22",
            "hunter22",
        ),
    ],
    ids=["userinfo", "query"],
)
def test_a_misspelt_option_in_a_postgres_url_is_one_line_without_the_password(
    url: str, password: str
) -> None:
    # No server is needed: the option is refused before any connection is made.
    line = one_error_line(conduit("--store", url, "streams"))
    assert "pool_sise" in line
    assert password not in line
    for piece in re.split(r"[@/]", password):
        assert piece not in line


def test_a_malformed_postgres_url_is_one_clean_line_without_its_password() -> None:
    line = one_error_line(conduit("--store", "postgresql://app:s3cret@[db/app", "streams"))
    assert "not a valid URL" in line
    assert "s3cret" not in line


@pytest.mark.parametrize("where", ["option", "environment", "argument"])
def test_a_password_the_driver_quotes_is_hidden_too(where: str) -> None:
    # libpq quotes the bad percent-encoding it found: the password itself.
    url = "postgresql://app:s%zzecret@127.0.0.1:1/app?pool_timeout=1"
    if where == "option":
        result = conduit("--store", url, "streams")
    elif where == "environment":
        result = conduit("streams", env={"CONDUIT_URL": url})
    else:
        result = conduit("init", url)
    line = one_error_line(result)
    assert "zzecret" not in line
    assert "postgresql://app:***@127.0.0.1:1/app" in line


def test_an_error_line_is_one_line_without_the_passwords_given() -> None:
    error = ConfigurationError(
        "cannot use\n  postgresql://app:s3cret@db/app:\n\tthe driver said 'pw=hunter22'"
    )
    line = error_line(error, ["postgresql://app:s3cret@db/app", "host=db password=hunter22"])
    assert line == "cannot use postgresql://app:***@db/app: the driver said 'pw=***'"


def test_debug_lets_the_error_through_with_its_traceback() -> None:
    result = conduit("--debug", "init", "nope://somewhere")
    assert result.exit_code == 1
    assert isinstance(result.exception, ConfigurationError)


# -- output ----------------------------------------------------------------


def test_text_is_printed_as_given_without_emoji_codes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    assert conduit("init", url).exit_code == 0
    pushed = conduit("--store", url, "push", "note_added", "p:smile:", '{"text": ":thumbs_up:"}')
    assert pushed.exit_code == 0, pushed.output
    assert "in stream p:smile: at version 1" in pushed.output
    listed = conduit("--store", url, "get", "p:smile:")
    assert listed.exit_code == 0, listed.output
    assert "Stream p:smile:" in listed.output
    assert ":thumbs_up:" in listed.output


# -- startup ---------------------------------------------------------------

HEAVY = ("sqlalchemy", "starlette", "uvicorn", "jinja2", "psycopg", "psycopg_pool")
"""What a store command on SQLite never needs: read models, the web app, PostgreSQL."""


def modules_loaded_by(*args: str, cwd: Path) -> list[str]:
    """Run ``conduit ARGS`` in a fresh interpreter; the HEAVY packages it imported."""
    code = (
        "import sys\n"
        f"sys.argv = ['conduit', *{list(args)!r}]\n"
        "from conduit.cli import main\n"
        "try:\n    main()\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        f"heavy = {HEAVY!r}\n"
        "import json\n"
        "loaded = sorted(m for m in sys.modules if m.partition('.')[0] in heavy)\n"
        "print('LOADED', json.dumps(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("LOADED ")
    loaded: list[str] = json.loads(last.removeprefix("LOADED "))
    return loaded


def test_store_commands_do_not_import_read_models_the_web_app_or_postgres(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    assert conduit("init", url).exit_code == 0
    for args in (
        ["--help"],
        ["push", "--help"],
        ["--store", url, "push", "person_registered", "p-1", '{"first_name": "Kris"}'],
        ["--store", url, "get", "p-1"],
        ["--store", url, "read", "p-1", "--backwards", "--limit", "1"],
        ["--store", url, "streams"],
        ["--store", url, "stats"],
        ["--store", url, "export", str(tmp_path / "events.jsonl")],
        ["--store", url, "tail", "--from-start", "--max-events", "1"],
    ):
        assert modules_loaded_by(*args, cwd=tmp_path) == [], args
