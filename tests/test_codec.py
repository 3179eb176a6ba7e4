"""Unit tests of conduit.codec: strict validation, and JSON that comes back exactly."""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conduit import InvalidEvent
from conduit.codec import MAX_DEPTH, MAX_EVENT_BYTES, decode, encode
from conduit.testing.support import INT64_MAX, INT64_MIN, assert_same, json_objects, nested


class Colour(enum.IntEnum):
    RED = 1


def _nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _refusal(value: object, field: str = "data") -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        encode(value, field=field)
    return caught.value


def test_an_empty_object_encodes_as_empty_braces() -> None:
    assert encode({}) == "{}"
    assert decode("{}") == {}


def test_encode_gives_json_text_any_parser_reads() -> None:
    value = {"name": "Kris", "n": [1, 2.5, None, True], "nested": {"k": "v"}}
    assert json.loads(encode(value)) == value


def test_decode_accepts_bytes_and_text() -> None:
    assert decode(b'{"a": 1}') == decode('{"a": 1}') == {"a": 1}


@given(json_objects)
def test_any_json_object_round_trips_exactly(value: dict[str, Any]) -> None:
    assert_same(decode(encode(value)), value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_round_trip_to_the_same_float(number: float) -> None:
    assert_same(decode(encode({"x": number}))["x"], number)


@pytest.mark.parametrize(
    "number", [1e16, 1.2345678901234567e17, -0.0, 5e-324, 1.7976931348623157e308, 0.1]
)
def test_tricky_floats_round_trip_exactly(number: float) -> None:
    assert_same(decode(encode({"x": number})), {"x": number})


def test_ints_and_floats_keep_their_types() -> None:
    assert_same(decode(encode({"i": 1, "f": 1.0, "b": True})), {"i": 1, "f": 1.0, "b": True})


def test_64_bit_integer_limits_round_trip() -> None:
    value = {"max": INT64_MAX, "min": INT64_MIN, "in_list": [INT64_MAX, INT64_MIN]}
    assert_same(decode(encode(value)), value)


def test_key_order_is_kept() -> None:
    value = {"z": 1, "a": {"y": 2, "b": 3}}
    assert_same(decode(encode(value)), value)


def test_unicode_is_kept() -> None:
    value = {"🎉": "مرحبا", "sep": "\u2028\u2029", "astral": "𝄞", "ctrl": "\x01\x7f"}
    assert_same(decode(encode(value)), value)


@pytest.mark.parametrize("value", [[], "text", None, 42, OrderedDict(a=1), (("a", 1),)])
def test_only_a_dict_is_an_object(value: object) -> None:
    error = _refusal(value, field="metadata")
    assert error.field == "metadata"
    assert str(error).startswith("metadata:")


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"a": float("nan")}, "data['a']"),
        ({"a": {"b": float("inf")}}, "data['a']['b']"),
        ({"a": [1, float("-inf")]}, "data['a'][1]"),
        ({"a": 2**63}, "data['a']"),
        ({"a": [-(2**63) - 1]}, "data['a'][0]"),
        ({"a": {"b": [1, {"c": 2**64}]}}, "data['a']['b'][1]['c']"),
        ({"a": "nul\x00"}, "data['a']"),
        ({"a": ["nul\x00"]}, "data['a'][0]"),
        ({"a": {"k\x00": 1}}, "data['a']"),
        ({"a": {1: "one"}}, "data['a']"),
        ({2: "two"}, "data"),
        ({"a": (1, 2)}, "data['a']"),
        ({"a": {1, 2}}, "data['a']"),
        ({"a": b"bytes"}, "data['a']"),
        ({"a": [object()]}, "data['a'][0]"),
        ({"a": Colour.RED}, "data['a']"),
        ({"a": OrderedDict(b=1)}, "data['a']"),
    ],
    ids=[
        "nan",
        "infinity",
        "minus-infinity-in-list",
        "int-2**63",
        "int-below-min",
        "int-2**64-deep",
        "nul-in-value",
        "nul-in-list",
        "nul-in-key",
        "int-key",
        "int-key-at-top",
        "tuple",
        "set",
        "bytes",
        "object",
        "int-enum",
        "dict-subclass",
    ],
)
def test_values_that_cannot_come_back_equal_are_refused_naming_the_field(
    value: dict[Any, Any], field: str
) -> None:
    error = _refusal(value)
    assert error.field == field
    assert str(error).startswith(f"{field}:")


def test_the_field_name_given_prefixes_the_path() -> None:
    assert _refusal({"a": float("nan")}, field="events[3].metadata").field == (
        "events[3].metadata['a']"
    )


def test_lone_surrogates_are_refused() -> None:
    assert _refusal({"a": "\ud800"}).field is not None
    assert _refusal({"\udfff": 1}).field is not None


def test_lone_surrogates_are_refused_naming_the_field() -> None:
    assert _refusal({"a": {"b": "\ud800"}}).field == "data['a']['b']"


def test_nesting_up_to_the_limit_is_accepted() -> None:
    for value in (nested(MAX_DEPTH), {"a": _nested_list(MAX_DEPTH - 1)}):
        assert_same(decode(encode(value)), value)


def test_nesting_past_the_limit_is_refused() -> None:
    for value in (nested(MAX_DEPTH + 1), {"a": _nested_list(MAX_DEPTH)}, nested(10_000)):
        error = _refusal(value)
        assert error.field is not None
        assert error.field.startswith("data")


def test_json_of_the_largest_size_is_accepted() -> None:
    overhead = len('{"a":""}')
    text = encode({"a": "x" * (MAX_EVENT_BYTES - overhead)})
    assert len(text) == MAX_EVENT_BYTES


def test_json_past_the_largest_size_is_refused() -> None:
    overhead = len('{"a":""}')
    error = _refusal({"a": "x" * (MAX_EVENT_BYTES - overhead + 1)})
    assert error.field == "data"
