"""Unit tests of conduit.events: event names, stream ids, event ids, new_id."""

from __future__ import annotations

import dataclasses
import gc
import os
import random
import select
import time
import types
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

import conduit.events
from conduit import EventDecodeError, EventStore, InvalidEvent
from conduit.events import (
    MAX_NAME_LENGTH,
    MAX_STREAM_ID_LENGTH,
    Event,
    GCPaused,
    StreamKey,
    event_name,
    event_uuid,
    new_id,
    stream_key,
)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("person_registered", "person_registered"),
        ("PersonRegistered", "person_registered"),
        ("personRegistered", "person_registered"),
        ("HTTPRequestSent", "http_request_sent"),
        ("getHTTPResponseCode", "get_http_response_code"),
        ("OrderID", "order_id"),
        ("Person2Registered", "person2_registered"),
        ("V2Event", "v2_event"),
        ("Mixed_Case", "mixed_case"),
        ("already_snake_2", "already_snake_2"),
        ("A", "a"),
        ("x", "x"),
    ],
)
def test_event_names_are_stored_snake_case(given: str, stored: str) -> None:
    assert event_name(given) == stored


def test_a_stored_name_is_its_own_stored_form() -> None:
    for name in ("PersonRegistered", "HTTPRequestSent", "V2Event", "Mixed_Case"):
        assert event_name(event_name(name)) == event_name(name)


def test_event_name_of_the_longest_length_is_accepted() -> None:
    assert event_name("a" * MAX_NAME_LENGTH) == "a" * MAX_NAME_LENGTH


@pytest.mark.parametrize(
    "name",
    ["", " ", "1st", "_private", "dash-ed", "has space", "é_accent", "trailing\n", "a.b"],
)
def test_malformed_event_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        event_name(name)
    assert caught.value.field == "name"
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("name", [None, 42, b"bytes", ["list"]])
def test_non_string_event_names_are_refused(name: object) -> None:
    with pytest.raises(InvalidEvent) as caught:
        event_name(name)
    assert caught.value.field == "name"


def test_event_names_longer_than_the_limit_are_refused() -> None:
    with pytest.raises(InvalidEvent) as caught:
        event_name("a" * (MAX_NAME_LENGTH + 1))
    assert caught.value.field == "name"


def test_string_stream_ids_are_stored_as_text() -> None:
    key = stream_key("order-42")
    assert key == StreamKey("order-42", False)
    assert key.stream_id() == "order-42"


def test_uuid_stream_ids_are_stored_as_their_text_and_come_back_as_uuids() -> None:
    stream_id = uuid.uuid4()
    key = stream_key(stream_id)
    assert key == StreamKey(str(stream_id), True)
    assert key.stream_id() == stream_id
    assert isinstance(key.stream_id(), uuid.UUID)


def test_uuid_text_stream_ids_stay_strings() -> None:
    text = str(uuid.uuid4())
    assert stream_key(text).stream_id() == text
    assert type(stream_key(text).stream_id()) is str


def test_stream_id_of_the_longest_length_is_accepted() -> None:
    assert stream_key("s" * MAX_STREAM_ID_LENGTH).text == "s" * MAX_STREAM_ID_LENGTH


@pytest.mark.parametrize(
    "stream_id",
    ["", "nul\x00inside", "s" * (MAX_STREAM_ID_LENGTH + 1), None, 42, b"bytes"],
    ids=["empty", "nul", "too-long", "none", "int", "bytes"],
)
def test_bad_stream_ids_are_refused(stream_id: object) -> None:
    with pytest.raises(InvalidEvent) as caught:
        stream_key(stream_id)
    assert caught.value.field == "stream_id"


def test_event_uuid_makes_a_new_id_for_none() -> None:
    made = event_uuid(None)
    assert made.version == 7
    assert made != event_uuid(None)


def test_event_uuid_accepts_a_uuid_or_its_text() -> None:
    given = uuid.uuid4()
    assert event_uuid(given) is given
    assert event_uuid(str(given)) == given
    assert event_uuid(str(given).upper()) == given


@pytest.mark.parametrize("event_id", ["not-a-uuid", "", 42, b"x" * 16])
def test_bad_event_ids_are_refused(event_id: object) -> None:
    with pytest.raises(InvalidEvent) as caught:
        event_uuid(event_id)
    assert caught.value.field == "event_id"


def test_new_id_is_a_version_7_rfc_4122_uuid() -> None:
    made = new_id()
    assert made.version == 7
    assert made.variant == uuid.RFC_4122


def test_new_id_carries_the_time_it_was_made_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= made.int >> 80 <= after


def test_new_ids_are_unique() -> None:
    made = [new_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)


def test_new_ids_made_later_sort_after_earlier_ones() -> None:
    made = [new_id() for _ in range(10_000)]
    assert made == sorted(made)
    assert [str(i) for i in made] == sorted(str(i) for i in made)


RAND_B = (1 << 62) - 1
"""The random part of a new id: its last 62 bits."""


def test_the_random_bits_of_new_ids_come_from_the_operating_system(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[int] = []

    def urandom(size: int) -> bytes:
        drawn.append(size)
        return bytes([0xA5]) * size

    monkeypatch.setattr(conduit.events, "_pool", [])
    monkeypatch.setattr(os, "urandom", urandom)
    made = [new_id() for _ in range(3)]
    assert drawn == [4096]  # one system call for many ids
    assert {i.int & RAND_B for i in made} == {0xA5A5_A5A5_A5A5_A5A5 & RAND_B}


def test_new_ids_do_not_follow_from_the_random_module() -> None:
    # Mersenne Twister's output is predictable from earlier output; the
    # random module's state must not decide an id.
    random.seed(1)
    first = new_id()
    random.seed(1)
    second = new_id()
    assert first.int & RAND_B != second.int & RAND_B


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_ids_of_its_own() -> None:
    new_id()  # the parent holds random bits drawn before the fork
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write 500 ids, and leave without running pytest's exit code
        try:
            os.write(writer, b"".join(new_id().bytes for _ in range(500)))
        finally:
            os._exit(0)
    os.close(writer)
    parent = [new_id() for _ in range(500)]
    received = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([reader], [], [], 1.0)
        if ready:
            chunk = os.read(reader, 65536)
            if not chunk:
                break
            received += chunk
    os.close(reader)
    os.waitpid(pid, 0)
    child = [uuid.UUID(bytes=received[i : i + 16]) for i in range(0, len(received), 16)]
    assert len(child) == 500
    assert child == sorted(child)
    assert not {i.int & RAND_B for i in parent} & {i.int & RAND_B for i in child}


def _frozen_clock(monkeypatch: pytest.MonkeyPatch, times: list[int]) -> None:
    ticks = iter(times)
    last = times[-1]
    fake = types.SimpleNamespace(time_ns=lambda: next(ticks, last))
    monkeypatch.setattr(conduit.events, "time", fake)
    # new_id remembers the last millisecond and counter it used: restore them after.
    monkeypatch.setattr(conduit.events, "_last_ms", conduit.events._last_ms)
    monkeypatch.setattr(conduit.events, "_last_seq", conduit.events._last_seq)


def test_new_ids_stay_ordered_when_the_clock_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    _frozen_clock(monkeypatch, [time.time_ns()])
    made = [new_id() for _ in range(1_000)]
    assert made == sorted(made)


def test_new_ids_stay_ordered_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time_ns()
    _frozen_clock(monkeypatch, [now, now - 10**9])
    made = [new_id() for _ in range(1_000)]
    assert made == sorted(made)


def test_events_are_immutable() -> None:
    event = Event(new_id(), "s", "thing_happened", {}, {}, 1, 1, datetime.now(UTC))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.version = 2  # type: ignore[misc]


def test_gc_paused_turns_the_collector_off_and_back_on() -> None:

    assert gc.isenabled()
    with GCPaused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_gc_paused_leaves_a_collector_the_application_turned_off_off() -> None:

    gc.disable()
    try:
        with GCPaused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_reading_restores_the_collector(tmp_path: Path) -> None:
    with EventStore(f"sqlite:///{tmp_path / 'gc.db'}") as store:
        store.push_many("s", [("thing_happened", {"n": n}) for n in range(10)])
        assert len(store.get("s")) == 10
    assert gc.isenabled()


_collector_seen: list[bool] = []
_refused_counts: set[int] = set()


@dataclasses.dataclass(frozen=True)
class CollectorWatched:
    """A typed event whose decoding notes whether the collector runs (and may fail)."""

    n: int

    def __post_init__(self) -> None:
        _collector_seen.append(gc.isenabled())
        if self.n in _refused_counts:
            raise ValueError("refused")


def test_get_keeps_the_collector_paused_until_its_whole_list_is_made(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gc.db'}"
    with EventStore(url, types=[CollectorWatched], page_size=2) as store:
        store.push_many("s", [CollectorWatched(n) for n in range(5)])
        _collector_seen.clear()
        assert [getattr(e, "payload", None) for e in store.get("s")] == [
            CollectorWatched(n) for n in range(5)
        ]
        # three pages, each decoded into typed events after the engine's own pause
        assert _collector_seen[:5] == [False] * 5
        assert gc.isenabled()
        _refused_counts.add(3)
        try:
            with pytest.raises(EventDecodeError, match="refused"):
                store.get("s")
        finally:
            _refused_counts.clear()
        assert gc.isenabled()
