"""Personal data beyond the contract kit: typed events, upcasting and snapshot policies on
every engine, the database files after a forget, the CLI (forget, export, import, copy)
and the browser. The engine's own part is in :mod:`conduit.testing.contract_forget`."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import psycopg
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from conduit import (
    FORGOTTEN,
    AsyncEventStore,
    EventStore,
    InvalidEvent,
    PersonalData,
    TypeRegistry,
    personal,
)
from conduit.backends.memory import MemoryBackend
from conduit.cli.application import app as cli
from conduit.events import Event, stream_key
from conduit.web import create_app

SECRET = "Kris Kowalski, 12 Elm Street"
EMAIL = "kris.kowalski@example.com"

Opener = Callable[..., EventStore]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens stores with the options given, all over the same storage of one engine."""
    opened: list[EventStore] = []
    shared = MemoryBackend()
    schema = f"personal_{uuid.uuid4().hex[:8]}"

    def make(**options: Any) -> EventStore:
        if request.param == "memory":
            store = EventStore(shared, **options)
        elif request.param == "sqlite":
            store = EventStore(f"sqlite:///{tmp_path / 'events.db'}", **options)
        else:
            url = request.getfixturevalue("postgres_url")
            store = EventStore(url, schema=schema, **options)
            store.setup()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_stores_making_the_same_new_subjects_keys_at_once_agree_on_one_each(
    open_store: Opener,
) -> None:
    """Four stores (their own key caches, their own connections) push personal data of
    the same new subjects from four threads at once: every value reads back from every
    store, so each subject got one key, whoever made it."""
    import threading

    stores = [open_store() for _ in range(4)]
    start = threading.Barrier(len(stores))
    failures: list[BaseException] = []

    def write(index: int, store: EventStore) -> None:
        start.wait(10)
        try:
            for n in range(30):
                subject = f"person-{n}"
                store.push(
                    "noted", f"{subject}-by-{index}", {"v": personal(f"{n}/{index}", subject)}
                )
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    for store in stores:
        for n in range(30):
            for index in range(len(stores)):
                [event] = store.get(f"person-{n}-by-{index}")
                assert event.data == {"v": f"{n}/{index}"}


# -- typed events, upcasting, snapshots --------------------------------------------


@dataclass(frozen=True)
class CustomerRegistered:
    customer_id: str
    name: Annotated[str, PersonalData(subject="customer_id")]
    email: Annotated[str, PersonalData()]
    plan: str


def test_typed_event_with_personal_fields_reads_back_and_forgets_them(open_store: Opener) -> None:
    store = open_store(types=[CustomerRegistered])
    event = CustomerRegistered("c-1", "Kris", EMAIL, "basic")
    pushed = store.push(event, "signup-1")
    assert pushed.payload == event  # type: ignore[attr-defined]
    assert pushed.metadata["conduit.subjects"] == ["c-1", "signup-1"]
    assert store.get("signup-1")[0].payload == event  # type: ignore[attr-defined]
    sealed = open_store(reveal_personal_data=False).get("signup-1")[0]
    assert EMAIL not in json.dumps(sealed.data)
    assert sealed.data["plan"] == "basic"
    store.forget("c-1")
    [read] = store.get("signup-1")
    assert read.payload == CustomerRegistered("c-1", FORGOTTEN, EMAIL, "basic")  # type: ignore[attr-defined]
    assert read.payload.name is FORGOTTEN  # type: ignore[attr-defined]
    store.forget("signup-1")
    assert store.get("signup-1")[0].payload.email is FORGOTTEN  # type: ignore[attr-defined]


def test_a_typed_personal_field_whose_subject_field_is_empty_is_refused(
    open_store: Opener,
) -> None:
    store = open_store(types=[CustomerRegistered])
    with pytest.raises(InvalidEvent):
        store.push(CustomerRegistered("", "Kris", EMAIL, "basic"), "signup-2")
    assert store.get("signup-2") == []


def test_upcasters_see_personal_values_revealed_and_then_the_placeholder(
    open_store: Opener,
) -> None:
    types = TypeRegistry()
    seen: list[Any] = []

    @types.upcaster("person_registered", 1)
    def split(data: dict[str, Any]) -> dict[str, Any]:
        seen.append(data["full_name"])
        first, _, last = data["full_name"].partition(" ")
        return {"first": first, "last": last}

    open_store().push("person_registered", "p", {"full_name": personal("Kris Kowalski")})
    store = open_store(types=types)
    assert store.get("p")[0].data == {"first": "Kris", "last": "Kowalski"}
    store.forget("p")
    assert store.get("p")[0].data == {"first": "[forgotten]", "last": ""}
    assert seen == ["Kris Kowalski", FORGOTTEN]


class Person:
    def __init__(self) -> None:
        self.name: str = ""
        self.visits: int = 0

    def on_person_registered(self, event: Event) -> None:
        self.name = event.data["name"]

    def on_person_visited(self, event: Event) -> None:
        self.visits += 1


def test_a_policy_snapshot_is_sealed_and_forgotten_with_its_subject(open_store: Opener) -> None:
    store = open_store(snapshot_every=2)
    store.push("person_registered", "p", {"name": personal(SECRET)})
    store.push("person_visited", "p", {})
    assert store.load("p", Person).name == SECRET  # snapshots version 2
    kept = store.backend.load_snapshot(stream_key("p"), f"{__name__}.Person")
    assert kept is not None
    assert kept.version == 2
    assert SECRET not in kept.data
    store.push("person_visited", "p", {})
    loaded = store.load("p", Person)
    assert (loaded.name, loaded.visits) == (SECRET, 2)
    store.forget("p")
    loaded = store.load("p", Person)
    assert (loaded.name, loaded.visits) == (FORGOTTEN, 2)


def test_the_async_face_seals_reveals_and_forgets(tmp_path: Path) -> None:
    import asyncio

    async def scenario() -> list[Any]:
        async with AsyncEventStore(f"sqlite:///{tmp_path / 'a.db'}") as store:
            await store.push("person_registered", "p", {"name": personal(SECRET)})
            before = [e.data async for e in store.read("p")]
            assert await store.forget("p", by="test") is True
            after = [e.data async for e in store.read_all()]
            keys = [k async for k in store.subject_keys()]
            return [before, after, keys]

    before, after, keys = asyncio.run(scenario())
    assert before == [{"name": SECRET}]
    assert after[0] == {"name": FORGOTTEN}
    assert after[1] == {"subject": "p", "key_destroyed": True}
    assert [(k.subject, k.key) for k in keys] == [("p", None)]


# -- the database files after a forget ------------------------------------------------


def _pushed_and_key(store: EventStore) -> bytes:
    for i in range(20):
        store.push("person_registered", f"p-{i}", {"name": personal(f"{SECRET} #{i}")})
    [key] = [k.key for k in store.subject_keys() if k.subject == "p-7"]
    assert key is not None
    return key


def test_no_plaintext_nor_key_is_left_in_the_sqlite_files_after_forget(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = EventStore(f"sqlite:///{path}")
    key = _pushed_and_key(store)
    files = [path, path.with_name("events.db-wal")]

    def contents() -> bytes:
        return b"".join(f.read_bytes() for f in files if f.exists())

    assert key in contents()  # the check below can see a key
    assert SECRET.encode() not in contents()  # never stored in the clear
    store.forget("p-7")
    assert key not in contents()
    assert SECRET.encode() not in contents()
    assert store.get("p-8")[0].data == {"name": f"{SECRET} #8"}
    store.close()
    assert key not in contents()


def test_no_plaintext_nor_key_is_left_in_a_pg_dump_or_the_keys_table_file_after_forget(
    postgres_url: str,
) -> None:
    schema = f"dump_{uuid.uuid4().hex[:8]}"
    with EventStore(postgres_url, schema=schema) as store:
        store.setup()
        key = _pushed_and_key(store)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT current_setting('data_directory') || '/' || pg_relation_filepath(%s)",
                (f"{schema}.subject_keys",),
            ).fetchone()
            assert row is not None
            heap = Path(row[0])

            def files() -> tuple[str, bytes]:
                conn.execute("CHECKPOINT")  # the table's pages, written to its file
                dump = subprocess.run(
                    ["pg_dump", "--no-owner", "-n", schema, postgres_url],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=60,
                ).stdout
                return dump, heap.read_bytes()

            dump, table = files()
            assert key.hex() in dump
            assert key in table
            assert SECRET not in dump
            store.forget("p-7")
            dump, table = files()
            assert key.hex() not in dump
            assert key not in table
            assert SECRET not in dump
            assert f"{SECRET} #8" == store.get("p-8")[0].data["name"]
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


# -- the CLI -------------------------------------------------------------------------


def conduit(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "200", "CONDUIT_URL": None})
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def people(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'people.db'}"
    with EventStore(url) as store:
        store.push("person_registered", "p-1", {"name": personal(SECRET), "plan": "basic"})
        store.push("person_registered", "p-2", {"name": personal("Ann Other")})
    return url


def test_conduit_forget_destroys_the_key_and_records_who(people: str) -> None:
    out = conduit("--store", people, "forget", "p-1", "--by", "dpo").output
    assert "Forgot p-1" in out
    with EventStore(people) as store:
        assert store.get("p-1")[0].data == {"name": FORGOTTEN, "plan": "basic"}
        assert store.get("p-2")[0].data == {"name": "Ann Other"}
        [audit] = store.get("conduit.audit")
        assert (audit.data["subject"], audit.metadata) == ("p-1", {"by": "dpo"})
    assert "had no key" in conduit("--store", people, "forget", "p-1").output


def test_export_keeps_personal_values_encrypted_and_keys_out_unless_asked(
    people: str, tmp_path: Path
) -> None:
    plain, keyed = tmp_path / "plain.jsonl", tmp_path / "keyed.jsonl"
    conduit("--store", people, "export", str(plain))
    conduit("--store", people, "export", "--with-keys", str(keyed))
    text = plain.read_text()
    assert SECRET not in text
    assert "subject_key" not in text
    with EventStore(people) as store:
        keys = {k.subject: k.key for k in store.subject_keys()}
    assert all(key is not None for key in keys.values())
    keyed_lines = [json.loads(line) for line in keyed.read_text().splitlines()]
    assert [line["subject_key"] for line in keyed_lines[:2]] == ["p-1", "p-2"]
    assert SECRET not in keyed.read_text()

    without = f"sqlite:///{tmp_path / 'without.db'}"
    conduit("--store", without, "import", str(plain))
    with EventStore(without) as store:
        assert store.get("p-1")[0].data == {"name": FORGOTTEN, "plan": "basic"}
    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    conduit("--store", restored, "import", str(keyed))
    with EventStore(restored) as store:
        assert store.get("p-1")[0].data == {"name": SECRET, "plan": "basic"}


def test_an_export_after_forget_carries_the_tombstone_and_no_plaintext(
    people: str, tmp_path: Path
) -> None:
    conduit("--store", people, "forget", "p-1")
    dump = tmp_path / "after.jsonl"
    conduit("--store", people, "export", "--with-keys", str(dump))
    text = dump.read_text()
    assert SECRET not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["subject_key"] == "p-1"
    assert lines[0]["key"] is None
    target = f"sqlite:///{tmp_path / 'target.db'}"
    conduit("--store", target, "import", str(dump))
    with EventStore(target) as store:
        assert store.get("p-1")[0].data["name"] is FORGOTTEN
        assert store.get("p-2")[0].data["name"] == "Ann Other"
        assert store.get("conduit.audit")[0].name == "subject_forgotten"


def test_copy_carries_keys_and_then_tombstones_to_postgres(people: str, postgres_url: str) -> None:
    schema = f"copy_{uuid.uuid4().hex[:8]}"
    target = f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"
    try:
        with EventStore(postgres_url, schema=schema) as made:
            made.setup()
        conduit("copy", people, target)
        with EventStore(postgres_url, schema=schema) as store:
            assert store.get("p-1")[0].data == {"name": SECRET, "plan": "basic"}
            sealed = EventStore(store.backend, reveal_personal_data=False)
            assert SECRET not in json.dumps(sealed.get("p-1")[0].data)
        conduit("--store", people, "forget", "p-1")
        conduit("copy", people, target)  # the tombstone reaches the copy, then the audit
        with EventStore(postgres_url, schema=schema) as store:
            assert store.get("p-1")[0].data["name"] is FORGOTTEN
            assert store.get("p-2")[0].data["name"] == "Ann Other"
            assert [e.name for e in store.get("conduit.audit")] == ["subject_forgotten"]
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- the browser ---------------------------------------------------------------------


def test_the_browser_shows_the_placeholder_and_never_the_plaintext(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    with EventStore(url) as store:
        event = store.push("person_registered", "p-1", {"name": personal(SECRET)})
        store.forget("p-1")
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            pages = [
                "/",
                "/streams",
                "/streams/p-1",
                f"/events/{event.id}",
                "/log",
                "/streams/conduit.audit",
                "/api/streams/p-1/events",
                f"/api/events/{event.id}",
                "/api/log",
            ]
            for page in pages:
                response = client.get(page)
                assert response.status_code == 200, page
                assert SECRET not in response.text, page
            assert "[forgotten]" in client.get("/streams/p-1").text
            assert client.get(f"/api/events/{event.id}").json()["data"] == {"name": "[forgotten]"}


def test_the_browser_shows_personal_values_of_subjects_not_forgotten(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    with EventStore(url) as store:
        event = store.push("person_registered", "p-1", {"name": personal(SECRET)})
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            assert client.get(f"/api/events/{event.id}").json()["data"] == {"name": SECRET}


# -- subscriptions and followers -----------------------------------------------------


def test_named_subscriptions_and_followers_get_personal_values_revealed(
    open_store: Opener,
) -> None:
    store = open_store()
    seen: list[Any] = []

    class Names:
        def on_person_registered(self, event: Event) -> None:
            seen.append(event.data["name"])

        def on_subject_forgotten(self, event: Event) -> None:
            seen.append(("forgotten", event.data["subject"]))

    store.subscribe(Names(), name="names")
    store.push("person_registered", "p", {"name": personal(SECRET)})
    store.forget("p")
    assert seen == [SECRET, ("forgotten", "p")]
    follower = store.follow(poll_interval=0.01)
    followed = [next(follower).data, next(follower).data]
    follower.close()
    assert followed == [{"name": FORGOTTEN}, {"subject": "p", "key_destroyed": True}]


def test_a_subject_whose_first_key_another_writer_just_made_is_looked_up_again() -> None:
    """``keep_subject_keys`` leaves out a subject whose row another writer committed
    after the statement began; the store then reads that writer's key."""
    from conduit.core.effects import Op, SyncRuntime
    from conduit.core.shredding import KeyCache, keys_for_writing

    theirs = bytes(range(32))
    asked: list[str] = []

    class Racing:
        def keep_subject_keys(self, keys: list[Any]) -> Op[dict[str, bytes | None]]:
            asked.append("keep " + ",".join(k.subject for k in keys))
            return {"mine": keys[0].key}
            yield  # an operation

        def subject_keys(self, subjects: list[str]) -> Op[dict[str, bytes | None]]:
            asked.append("look up " + ",".join(subjects))
            return {"mine": b"m" * 32, "theirs": theirs}
            yield

    cache = KeyCache()
    found = SyncRuntime().run(keys_for_writing(Racing(), cache, {"mine", "theirs"}))
    assert asked == ["keep mine,theirs", "look up mine,theirs"]
    assert found["theirs"] == theirs
    assert cache.keys["theirs"] == theirs


def test_a_sealed_event_s_repr_shows_no_plaintext() -> None:
    from conduit.core.sealing import new_key, seal_event
    from conduit.core.writes import new_event

    pending = new_event("noted", {"v": personal("Kris Kowalski")}, None, None)
    assert "Kris" not in repr(pending)
    sealed, _ = seal_event(pending, "p", {"p": new_key()}, shown=True)
    assert sealed.shown is not None
    assert "Kris" in sealed.shown[0]  # what the push returns
    assert "Kris" not in repr(sealed)
