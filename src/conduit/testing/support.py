"""Helpers of the contract kit: exact comparison of JSON values, store snapshots.

``==`` is too lenient to check that data comes back exactly: ``1 == 1.0``,
``0.0 == -0.0`` and ``{"a": 1, "b": 2} == {"b": 2, "a": 1}``. These helpers
compare types, float signs and key order too, without recursion, so that
values nested thousands of levels deep compare as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from conduit import EventStore, StreamId

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "Snapshot",
    "assert_same",
    "first_difference",
    "json_objects",
    "json_values",
    "nested",
    "snapshot",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def first_difference(actual: object, expected: object) -> str | None:
    """Where two JSON values differ (type, float sign, key order), or None."""
    stack: list[tuple[str, object, object]] = [("", actual, expected)]
    while stack:
        path, a, b = stack.pop()
        where = path or "the value"
        if type(a) is not type(b):
            return f"{where}: {type(a).__name__} instead of {type(b).__name__}"
        if isinstance(a, dict) and isinstance(b, dict):
            if list(a) != list(b):
                return f"{where}: keys {list(a)!r} instead of {list(b)!r}"
            stack.extend((f"{path}[{key!r}]", a[key], b[key]) for key in b)
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return f"{where}: {len(a)} items instead of {len(b)}"
            stack.extend((f"{path}[{i}]", x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)))
        elif isinstance(a, float) and isinstance(b, float):
            if a != b or math.copysign(1.0, a) != math.copysign(1.0, b):
                return f"{where}: {a!r} instead of {b!r}"
        elif a != b:
            return f"{where}: {a!r} instead of {b!r}"
    return None


def assert_same(actual: object, expected: object) -> None:
    """Fail unless ``actual`` is exactly ``expected``: types, signs, key order."""
    difference = first_difference(actual, expected)
    assert difference is None, difference


def nested(depth: int) -> dict[str, Any]:
    """An object nested ``depth`` levels deep: ``{"n": {"n": … {}}}``."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


@dataclass(frozen=True)
class Snapshot:
    """What a failed call must leave unchanged: a stream and the global log."""

    stream_version: int
    stream: list[Any]
    head_position: int
    log: list[Any]


def snapshot(store: EventStore, stream_id: StreamId) -> Snapshot:
    """The state of a stream and of the global log, to compare after a call."""
    return Snapshot(
        stream_version=store.stream_version(stream_id),
        stream=store.get(stream_id),
        head_position=store.head_position(),
        log=list(store.read_all()),
    )


_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)

_scalars: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers(min_value=INT64_MIN, max_value=INT64_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)

json_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=16,
)
"""Any JSON value a store must keep exactly (no NUL, no lone surrogate)."""

json_objects: st.SearchStrategy[dict[str, Any]] = st.dictionaries(_text, json_values, max_size=6)
"""Any JSON object a store must keep exactly: event data or metadata."""
