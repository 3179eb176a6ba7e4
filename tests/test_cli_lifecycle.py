"""``conduit delete-stream``, ``truncate``, ``limit`` and ``scavenge`` on a SQLite file."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from conduit import EventStore
from conduit.cli import app
from conduit.lifecycle import AUDIT_STREAM


def conduit(url: str, *args: str, given: str | None = None) -> Result:
    return CliRunner().invoke(
        app, ["--store", url, *args], input=given, env={"COLUMNS": "200", "CONDUIT_URL": None}
    )


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with EventStore(url) as store:
        for n in range(5):
            store.push("noted", "long", {"n": n})
        store.push("noted", "doomed", {})
        store.push("noted", "soft", {})
    return url


def test_delete_stream_soft_and_hard_with_the_audit(tmp_path: Path) -> None:
    url = _store(tmp_path)
    soft = conduit(url, "delete-stream", "soft", "--by", "ops")
    assert soft.exit_code == 0, soft.output
    assert "deleted (soft)" in soft.output
    refused = conduit(url, "delete-stream", "doomed", "--hard", given="n\n")
    assert refused.exit_code != 0
    hard = conduit(url, "delete-stream", "doomed", "--hard", "--yes")
    assert hard.exit_code == 0, hard.output
    assert "tombstone" in hard.output
    again = conduit(url, "push", "noted", "doomed", "{}")
    assert again.exit_code != 0
    assert "deleted" in again.output
    with EventStore(url) as store:
        assert store.get("soft") == []
        assert [e.data["stream_id"] for e in store.get(AUDIT_STREAM)] == ["soft", "doomed"]
        assert store.get(AUDIT_STREAM)[0].metadata == {"user": "ops"}


def test_delete_stream_with_a_stale_expected_version_fails(tmp_path: Path) -> None:
    url = _store(tmp_path)
    result = conduit(url, "delete-stream", "long", "--expected-version", "2")
    assert result.exit_code != 0
    assert "Wrong expected version: 2" in result.output
    with EventStore(url) as store:
        assert len(store.get("long")) == 5


def test_truncate_limit_and_scavenge(tmp_path: Path) -> None:
    url = _store(tmp_path)
    result = conduit(url, "truncate", "long", "--before", "3")
    assert result.exit_code == 0, result.output
    result = conduit(url, "limit", "long", "--max-count", "1")
    assert result.exit_code == 0, result.output
    conduit(url, "delete-stream", "soft")
    result = conduit(url, "scavenge", "--batch-size", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "3 removed" in result.output  # long's 3 and 4, soft's 1
    with EventStore(url) as store:
        assert [e.version for e in store.get("long")] == [5]
        assert [e.version for e in store.read_all() if e.stream_id == "long"] == [5]
        assert store.get(AUDIT_STREAM)[-1].name == "events_scavenged"


def test_scavenge_stopped_early_says_the_next_run_resumes(tmp_path: Path) -> None:
    url = _store(tmp_path)
    conduit(url, "limit", "long", "--max-count", "1")
    result = conduit(url, "scavenge", "--batch-size", "2", "--max-batches", "1")
    assert result.exit_code == 0, result.output
    assert "resumes" in result.output
    result = conduit(url, "scavenge", "--retention", "0.000001", "--no-progress")
    assert result.exit_code == 0, result.output
    with EventStore(url) as store:
        assert store.get("long") == []


def test_each_command_is_documented_with_an_example_in_docs_cli() -> None:
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    for command in ("delete-stream", "truncate", "limit", "scavenge"):
        assert re.search(rf"^conduit( --store \S+)? {command}\b", text, re.M), command
