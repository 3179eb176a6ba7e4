"""Contract: bad input is refused before anything is written; valid data comes back exactly.

Every engine gets the same outcome for the same input: the value comes back
exactly (types, float signs, key order), or the call raises
:class:`~conduit.errors.InvalidEvent` whose ``field`` names the culprit, writes
nothing, and leaves a store that keeps working.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from conduit import EventStore, InvalidArgument, InvalidEvent, new_id
from conduit.testing.support import (
    INT64_MAX,
    INT64_MIN,
    assert_same,
    json_objects,
    nested,
    snapshot,
)

__all__ = [
    "test_any_json_object_round_trips_exactly",
    "test_bad_argument_to_a_read_raises_invalid_argument",
    "test_bad_event_id_is_refused",
    "test_bad_name_is_refused_and_writes_nothing",
    "test_bad_stream_id_is_refused_and_writes_nothing",
    "test_empty_containers_and_literals_come_back_exact",
    "test_extreme_integers_come_back_exact",
    "test_floats_come_back_as_the_same_floats",
    "test_ints_stay_ints_and_floats_stay_floats",
    "test_key_order_is_kept",
    "test_moderate_nesting_comes_back_exact",
    "test_non_dict_data_is_refused_and_writes_nothing",
    "test_non_dict_metadata_is_refused_and_writes_nothing",
    "test_oversized_or_deep_value_is_kept_exactly_or_refused",
    "test_unicode_comes_back_exact",
    "test_unrepresentable_value_is_refused_naming_the_field",
    "test_unrepresentable_value_writes_nothing_and_the_store_keeps_working",
]

STREAM = "probe"

# Each case puts the problem under the key "culprit", which the error's field must name.
UNREPRESENTABLE: dict[str, Callable[[], object]] = {
    "nan": lambda: float("nan"),
    "plus-infinity": lambda: float("inf"),
    "minus-infinity": lambda: float("-inf"),
    "nan-in-list": lambda: [1.0, float("nan")],
    "int-2**63": lambda: 2**63,
    "int-minus-2**63-1": lambda: -(2**63) - 1,
    "int-2**64": lambda: 2**64,
    "int-10**40-nested": lambda: {"deep": [10**40]},
    "int-key": lambda: {1: "one"},
    "none-key": lambda: {None: "none"},
    "tuple-key": lambda: {(1, 2): "pair"},
    "nul-in-key": lambda: {"a\x00b": 1},
    "nul-in-value": lambda: "a\x00b",
    "nul-in-list-item": lambda: ["fine", "\x00"],
    "lone-surrogate-value": lambda: "a\ud800b",
    "lone-surrogate-key": lambda: {"\udfff": 1},
    "bytes": lambda: b"bytes",
    "bytearray": lambda: bytearray(b"bytes"),
    "set": lambda: {1, 2},
    "frozenset": lambda: frozenset({1}),
    "tuple": lambda: (1, 2),
    "object": lambda: object(),
    "datetime": lambda: datetime(2020, 1, 1, tzinfo=UTC),
    "decimal": lambda: Decimal("1.5"),
    "uuid": lambda: uuid.UUID(int=1),
    "complex": lambda: 1j,
}

# Values an engine may keep (exactly) or refuse, at its limits.
AT_THE_LIMITS: dict[str, Callable[[], object]] = {
    "nested-10000-levels": lambda: nested(10_000),
    "nested-list-10000-levels": lambda: _nested_list(10_000),
    "string-20-MB": lambda: "x" * (20 * 1024 * 1024),
    "list-20-MB": lambda: [12345678] * (20 * 1024 * 1024 // 9),
}

FIELDS = ["data", "metadata"]

NAMED_CASES = list(UNREPRESENTABLE)


def _nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _push(store: EventStore, field: str, value: object) -> Any:
    if field == "data":
        return store.push("probed", STREAM, value)  # type: ignore[arg-type]
    return store.push("probed", STREAM, {}, metadata=value)  # type: ignore[arg-type]


def _assert_store_keeps_working(store: EventStore, version: int) -> None:
    event = store.push("still_working", STREAM, {"ok": True}, expected_version=version)
    assert event.version == version + 1
    assert store.get(STREAM)[-1] == event


def _round_trip(store: EventStore, value: dict[str, Any]) -> None:
    stream = f"exact-{new_id()}"
    pushed = store.push("probed", stream, value, metadata=value)
    (got,) = store.get(stream)
    (logged,) = [event for event in store.read_all() if event.id == pushed.id]
    for event in (pushed, got, logged):
        assert_same(event.data, value)
        assert_same(event.metadata, value)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("case", NAMED_CASES)
def test_unrepresentable_value_is_refused_naming_the_field(
    store: EventStore, case: str, field: str
) -> None:
    value = {"fine": 1, "culprit": UNREPRESENTABLE[case]()}
    with pytest.raises(InvalidEvent) as caught:
        _push(store, field, value)
    named = caught.value.field
    assert named is not None
    assert named.startswith(field)
    assert "culprit" in named
    assert named in str(caught.value)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("case", UNREPRESENTABLE)
def test_unrepresentable_value_writes_nothing_and_the_store_keeps_working(
    store: EventStore, case: str, field: str
) -> None:
    store.push("thing_happened", STREAM, {})
    before = snapshot(store, STREAM)
    with pytest.raises(InvalidEvent):
        _push(store, field, {"culprit": UNREPRESENTABLE[case]()})
    assert snapshot(store, STREAM) == before
    _assert_store_keeps_working(store, before.stream_version)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("case", AT_THE_LIMITS)
def test_oversized_or_deep_value_is_kept_exactly_or_refused(
    store: EventStore, case: str, field: str
) -> None:
    store.push("thing_happened", STREAM, {})
    before = snapshot(store, STREAM)
    value = {"culprit": AT_THE_LIMITS[case]()}
    refused: InvalidEvent | None = None
    try:
        event = _push(store, field, value)
    except InvalidEvent as error:
        refused = error
    if refused is None:
        assert_same(getattr(event, field), value)
        assert_same(getattr(store.get(STREAM)[-1], field), value)
    else:
        assert refused.field is not None
        assert refused.field.startswith(field)
        assert snapshot(store, STREAM) == before
    _assert_store_keeps_working(store, store.stream_version(STREAM))


@pytest.mark.parametrize("data", [[], ["a", 1], "text", None, 42, (("a", 1),)])
def test_non_dict_data_is_refused_and_writes_nothing(store: EventStore, data: object) -> None:
    before = snapshot(store, STREAM)
    with pytest.raises(InvalidEvent) as caught:
        store.push("probed", STREAM, data)  # type: ignore[arg-type]
    assert caught.value.field == "data"
    assert snapshot(store, STREAM) == before
    _assert_store_keeps_working(store, 0)


@pytest.mark.parametrize("metadata", [[], "text", 42, (("a", 1),)])
def test_non_dict_metadata_is_refused_and_writes_nothing(
    store: EventStore, metadata: object
) -> None:
    before = snapshot(store, STREAM)
    with pytest.raises(InvalidEvent) as caught:
        store.push("probed", STREAM, {}, metadata=metadata)  # type: ignore[arg-type]
    assert caught.value.field == "metadata"
    assert snapshot(store, STREAM) == before
    _assert_store_keeps_working(store, 0)


@pytest.mark.parametrize(
    "name",
    ["", None, 42, b"bytes", "has space", "1st_thing", "dash-ed", "trailing\n"],
    ids=["empty", "none", "int", "bytes", "space", "digit-first", "dash", "newline"],
)
def test_bad_name_is_refused_and_writes_nothing(store: EventStore, name: object) -> None:
    before = snapshot(store, STREAM)
    with pytest.raises(InvalidEvent) as caught:
        store.push(name, STREAM, {})
    assert caught.value.field == "name"
    assert snapshot(store, STREAM) == before
    _assert_store_keeps_working(store, 0)


@pytest.mark.parametrize(
    "stream_id",
    ["", None, 42, b"bytes", "nul\x00inside"],
    ids=["empty", "none", "int", "bytes", "nul"],
)
def test_bad_stream_id_is_refused_and_writes_nothing(store: EventStore, stream_id: object) -> None:
    before = snapshot(store, STREAM)
    with pytest.raises(InvalidEvent) as caught:
        store.push("probed", stream_id, {})  # type: ignore[arg-type]
    assert caught.value.field == "stream_id"
    assert snapshot(store, STREAM) == before
    _assert_store_keeps_working(store, 0)


@pytest.mark.parametrize("event_id", ["not-a-uuid", 42, b"x" * 16], ids=["text", "int", "bytes"])
def test_bad_event_id_is_refused(store: EventStore, event_id: object) -> None:
    before = snapshot(store, STREAM)
    with pytest.raises(InvalidEvent) as caught:
        store.push("probed", STREAM, {}, event_id=event_id)
    assert caught.value.field == "event_id"
    assert snapshot(store, STREAM) == before


@pytest.mark.parametrize(
    ("method", "arguments"),
    [
        ("read", {"limit": -1}),
        ("read", {"from_version": 0}),
        ("read", {"since": "2020-01-01"}),
        ("read_all", {"after": -1}),
        ("read_all", {"limit": -1}),
        ("read_all", {"names": ["not a name"]}),
        ("streams", {"limit": -1}),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else str(value),
)
def test_bad_argument_to_a_read_raises_invalid_argument(
    store: EventStore, method: str, arguments: dict[str, Any]
) -> None:
    store.push("thing_happened", STREAM, {})
    args = (STREAM,) if method == "read" else ()
    with pytest.raises(InvalidArgument):
        list(getattr(store, method)(*args, **arguments))


def test_extreme_integers_come_back_exact(store: EventStore) -> None:
    _round_trip(store, {"max": INT64_MAX, "min": INT64_MIN, "zero": 0, "list": [INT64_MAX, -1]})


def test_floats_come_back_as_the_same_floats(store: EventStore) -> None:
    floats = [1e16, 1.2345678901234567e17, -0.0, 0.0, 5e-324, 1.7976931348623157e308]
    floats += [0.1, 1.0, -2.5e-10, 2.0**53 + 2, 123456789.12345678, -1.7976931348623157e308]
    _round_trip(store, {"floats": floats, "one": 1e16, "negative_zero": -0.0})


def test_ints_stay_ints_and_floats_stay_floats(store: EventStore) -> None:
    _round_trip(store, {"int": 1, "float": 1.0, "big_int": 10**16, "big_float": 1e16, "f0": 0.0})


def test_key_order_is_kept(store: EventStore) -> None:
    value = {"b": 1, "a": 2, "": 0, "c": {"z": 1, "y": 2, "x": [{"q": 1, "p": 2}]}, "A": 3}
    _round_trip(store, value)


def test_unicode_comes_back_exact(store: EventStore) -> None:
    texts = ["🎉👩‍👩‍👧", "مرحبا بالعالم", "line\u2028para\u2029end", "e\u0301", "\ufeffbom"]
    texts += ["𝄞 astral", "ctrl \x01\x1f\x7f", "quotes \"' back\\slash /", "\t\n\r", "日本語"]
    _round_trip(store, {"texts": texts, "🔑": "emoji key", "مفتاح": "rtl key", "k\u2028": 1})


def test_empty_containers_and_literals_come_back_exact(store: EventStore) -> None:
    _round_trip(store, {"obj": {}, "list": [], "null": None, "true": True, "false": False})


def test_moderate_nesting_comes_back_exact(store: EventStore) -> None:
    _round_trip(store, {"objects": nested(32), "lists": _nested_list(32)})


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=json_objects, metadata=json_objects)
def test_any_json_object_round_trips_exactly(
    store: EventStore, data: dict[str, Any], metadata: dict[str, Any]
) -> None:
    stream = f"property-{new_id()}"
    pushed = store.push("probed", stream, data, metadata=metadata)
    (got,) = store.get(stream)
    for event in (pushed, got):
        assert_same(event.data, data)
        assert_same(event.metadata, metadata)
