"""Tags beyond the library: export, import and copy keep them; `conduit push --tag`,
the events table and `conduit tail` show them; the browser links them and the API
reads and writes them. Import and copy commit runs of many small streams together."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from conduit import EventStore, Query, QueryItem
from conduit.cli import app
from conduit.web import create_app

WIDE = {"COLUMNS": "200", "CONDUIT_URL": None}


def conduit(*args: str, url: str | None = None) -> Result:
    prefix = ["--store", url] if url else []
    result = CliRunner().invoke(app, [*prefix, *args], env=WIDE)
    assert result.exit_code == 0, result.output
    return result


def _store(tmp_path: Path, name: str) -> str:
    url = f"sqlite:///{tmp_path / name}"
    conduit("init", url)
    return url


def test_push_with_tags_and_the_events_table_and_tail_show_them(tmp_path: Path) -> None:
    url = _store(tmp_path, "a.db")
    conduit("push", "student_enrolled", "c-1", "{}", "--tag", "course:c1", "--tag", "s:7", url=url)
    with EventStore(url) as store:
        assert store.get("c-1")[0].tags == frozenset({"course:c1", "s:7"})
    assert "course:c1 s:7" in conduit("get", "c-1", url=url).stdout
    assert "[course:c1 s:7]" in conduit("tail", "--from-start", "--max-events", "1", url=url).stdout


def test_export_import_and_copy_keep_tags(tmp_path: Path) -> None:
    source = _store(tmp_path, "source.db")
    with EventStore(source) as store:
        for i in range(30):  # many small streams: imported together
            store.push("noted", f"s{i}", {"i": i}, tags=[f"n:{i}", "all"])
        store.push("noted", "s0", {"i": 30})
    file = tmp_path / "events.jsonl"
    conduit("export", str(file), url=source)
    assert json.loads(file.read_text().splitlines()[0])["tags"] == ["all", "n:0"]
    imported, copied = _store(tmp_path, "imported.db"), _store(tmp_path, "copied.db")
    conduit("import", str(file), url=imported)
    conduit("copy", source, copied)
    with EventStore(source) as a, EventStore(imported) as b, EventStore(copied) as c:
        expected = [(e.id, e.stream_id, e.version, e.tags) for e in a.read_all()]
        for other in (b, c):
            assert [(e.id, e.stream_id, e.version, e.tags) for e in other.read_all()] == expected
            assert len(other.read_query(Query(QueryItem(tags=["all"])))) == 30
    conduit("import", str(file), url=imported)  # again: nothing new
    with EventStore(imported) as b:
        assert b.head_position() == 31


def test_the_browser_links_tags_and_the_api_reads_and_writes_them(tmp_path: Path) -> None:
    url = _store(tmp_path, "web.db")
    with EventStore(url) as store:
        pushed = store.push("student_enrolled", "c-1", {}, tags=["course:c1"])
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            page = client.get(f"/events/{pushed.id}").text
            assert 'href="/tags/course%3Ac1"' in page
            listing = client.get("/tags/course%3Ac1")
            assert listing.status_code == 200
            assert "student_enrolled" in listing.text
            assert "No event carries it" in client.get("/tags/other").text
            assert client.get(f"/api/events/{pushed.id}").json()["tags"] == ["course:c1"]
            response = client.post(
                "/api/streams/c-2/events",
                json={"events": [{"name": "x", "data": {}, "tags": ["course:c1", "b"]}]},
            )
            assert response.status_code == 201, response.text
            assert response.json()["events"][0]["tags"] == ["b", "course:c1"]
            bad = client.post(
                "/api/streams/c-2/events",
                json={"events": [{"name": "x", "data": {}, "tags": [""]}]},
            )
            assert bad.status_code == 422
            assert "events[0].tags" in bad.text
        assert len(store.read_query(Query(QueryItem(tags=["course:c1"])))) == 2
