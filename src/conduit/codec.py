"""Event data and metadata <-> JSON text, with strict validation.

The promise: whatever a store accepts comes back equal (``==``) from every
engine. So data is a JSON object of JSON values, and anything that could not
come back equal is refused with an :class:`~conduit.errors.InvalidEvent` that
names the field: NaN and infinities, integers beyond 64 bits, NUL characters
(PostgreSQL cannot hold them in text), non-string keys, tuples, sets, bytes and
other Python types, nesting deeper than :data:`MAX_DEPTH`, and data or metadata
whose JSON exceeds :data:`MAX_EVENT_BYTES`.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from conduit.errors import InvalidEvent
from conduit.personal import PENDING_KEY, Forgotten, Personal

__all__ = [
    "MAX_DEPTH",
    "MAX_EVENT_BYTES",
    "PENDING_MARK",
    "PENDING_VALUE",
    "decode",
    "encode",
    "encode_data",
    "validate",
]

MAX_DEPTH = 100
"""How deeply objects and arrays may nest in one event's data."""

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""The largest JSON text of one event's data (or metadata), in bytes (16 MiB)."""

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
_EMPTY = "{}"

PENDING_MARK = f'"{PENDING_KEY}"'
"""In a JSON text, the sign that it holds values marked personal, still to be encrypted."""

PENDING_VALUE = f'{{"{PENDING_KEY}":null}}'
"""In an event's data text, what stands for each value marked personal until the store
encrypts it (:mod:`conduit.core.sealing`); the values themselves travel beside the
text, in order (:attr:`conduit.events.NewEvent.personal`). No user data can make this
text: the key is refused in data, and a push refuses it in metadata."""

_PENDING_OBJECT: dict[str, None] = {PENDING_KEY: None}


def encode(value: object, *, field: str = "data") -> str:
    """Validate a JSON object and return its JSON text.

    Raises:
        InvalidEvent: naming the field at fault; a value marked personal
            (:func:`conduit.personal`), which only an event's data may hold.
    """
    text, found = encode_data(value, field=field)
    if found:
        raise InvalidEvent(
            f"{field}: only an event's data may hold personal values (conduit.personal)",
            field=field,
        )
    return text


def encode_data(value: object, *, field: str = "data") -> tuple[str, tuple[Personal, ...]]:
    """Validate an event's data and return its JSON text, with the values marked
    personal (:func:`conduit.personal`) that :data:`PENDING_VALUE` stands for in it,
    in the order of the text.

    Raises:
        InvalidEvent: naming the field at fault.
    """
    if type(value) is not dict:
        raise InvalidEvent(
            f"{field}: must be a dict (a JSON object), not {type(value).__name__}", field=field
        )
    if not value:
        return _EMPTY, ()
    validate(value, field)
    found: tuple[Personal, ...] = ()
    try:
        text = orjson.dumps(value, default=_no_personal)  # the common case: no hook to make
    except orjson.JSONEncodeError as exc:
        if not isinstance(exc.__cause__, _HoldsPersonal):  # lone surrogates: not UTF-8
            raise InvalidEvent(f"{field}: cannot be encoded as JSON ({exc})", field=field) from None
        text, found = _with_personal(value)
    if len(text) > MAX_EVENT_BYTES:
        raise InvalidEvent(
            f"{field}: {len(text):,} bytes of JSON, more than the {MAX_EVENT_BYTES:,} "
            "an event may hold",
            field=field,
        )
    return text.decode(), found


def _with_personal(value: object) -> tuple[bytes, tuple[Personal, ...]]:
    """The JSON of valid data holding values marked personal, and those values."""
    found: list[Personal] = []

    def pending(item: object) -> Any:
        # orjson's hook for the one non-JSON value validate() lets through
        if type(item) is Personal:
            found.append(item)
            return _PENDING_OBJECT
        raise TypeError  # pragma: no cover - validate() refused it already

    return orjson.dumps(value, default=pending), tuple(found)


class _HoldsPersonal(Exception):
    """Raised by :func:`_no_personal` (orjson makes it the cause of its own error)."""


def _no_personal(item: object) -> Any:
    raise _HoldsPersonal  # validate() let only values marked personal through


def decode(text: str | bytes) -> dict[str, Any]:
    """Turn stored JSON text back into a dict."""
    result: dict[str, Any] = orjson.loads(text)
    return result


def validate(value: dict[str, Any], field: str) -> None:
    """Check that a dict holds only values that round-trip exactly.

    Raises:
        InvalidEvent: naming the first field at fault.
    """
    _check_object(value, field, 1)


def _check_object(obj: dict[Any, Any], path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidEvent(f"{path}: nested deeper than {MAX_DEPTH} levels", field=path)
    for key, item in obj.items():
        if type(key) is not str or key not in _good_keys:
            _check_key(key, path)
        t = type(item)
        if t is str:
            if "\x00" in item or not (item.isascii() or _utf8(item)):
                _check_value(item, f"{path}[{key!r}]", depth)
        elif t is int or t is bool or item is None:
            if t is int and not _INT_MIN <= item <= _INT_MAX:
                where = f"{path}[{key!r}]"
                raise InvalidEvent(f"{where}: integers must fit in 64 bits (signed)", field=where)
        elif t is float:
            if not math.isfinite(item):
                _check_value(item, f"{path}[{key!r}]", depth)
        elif t is Personal:  # the common personal value, a clean string: no path to build
            inner = item.value
            if type(inner) is not str or "\x00" in inner or not (inner.isascii() or _utf8(inner)):
                _check_value(item, f"{path}[{key!r}]", depth)
        else:
            _check_value(item, f"{path}[{key!r}]", depth)


_good_keys: set[str] = set()
"""Keys already found valid: events of one kind repeat the same few keys."""
_GOOD_KEYS_MAX = 10_000


def _check_key(key: object, path: str) -> None:
    if type(key) is not str:
        raise InvalidEvent(
            f"{path}: keys must be strings, not {type(key).__name__} ({key!r})", field=path
        )
    if "\x00" in key:
        raise InvalidEvent(f"{path}: key {key!r} holds a NUL character", field=path)
    if key == PENDING_KEY:
        raise InvalidEvent(
            f"{path}: the key {PENDING_KEY!r} is Conduit's own; mark personal values with "
            "conduit.personal(value)",
            field=path,
        )
    if not key.isascii() and not _utf8(key):
        raise InvalidEvent(f"{path}: key {key!r} holds a lone surrogate", field=path)
    if len(_good_keys) < _GOOD_KEYS_MAX and len(key) <= 100:
        _good_keys.add(key)


def _check_array(arr: list[Any], path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidEvent(f"{path}: nested deeper than {MAX_DEPTH} levels", field=path)
    for index, item in enumerate(arr):
        # Valid scalars need no path: it is only made for a value to look into, or at fault.
        t = type(item)
        if t is str:
            if "\x00" not in item and (item.isascii() or _utf8(item)):
                continue
        elif t is int:
            if _INT_MIN <= item <= _INT_MAX:
                continue
        elif t is float:
            if math.isfinite(item):
                continue
        elif t is bool or item is None:
            continue
        _check_value(item, f"{path}[{index}]", depth)


def _check_value(item: object, path: str, depth: int) -> None:
    t = type(item)
    if t is str:
        if "\x00" in item:  # type: ignore[operator]
            raise InvalidEvent(f"{path}: NUL characters are not allowed", field=path)
        if not item.isascii() and not _utf8(item):  # type: ignore[attr-defined, arg-type]
            raise InvalidEvent(f"{path}: holds a lone surrogate, not valid UTF-8", field=path)
    elif t is int:
        if not _INT_MIN <= item <= _INT_MAX:  # type: ignore[operator]
            raise InvalidEvent(f"{path}: integers must fit in 64 bits (signed)", field=path)
    elif t is float:
        if not math.isfinite(item):  # type: ignore[arg-type]
            raise InvalidEvent(f"{path}: {item} is not a JSON number", field=path)
    elif t is dict:
        _check_object(item, path, depth + 1)  # type: ignore[arg-type]
    elif t is list:
        _check_array(item, path, depth + 1)  # type: ignore[arg-type]
    elif t is Forgotten:  # the placeholder of a forgotten value, written back as its text
        pass
    elif t is Personal:
        inner = item.value  # type: ignore[attr-defined]
        _check_value(inner, f"{path}.value", depth + 1)
        if type(inner) is Personal or (type(inner) in (dict, list) and _holds_personal(inner)):
            raise InvalidEvent(
                f"{path}: a personal value cannot hold another (mark the outer value only)",
                field=path,
            )
    elif t is not bool and item is not None:
        raise InvalidEvent(
            f"{path}: {t.__name__} is not a JSON value (use dict, list, str, int, float, "
            "bool or None)",
            field=path,
        )


def _holds_personal(value: object) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:  # valid, so only a value marked personal fails
        return True
    return False


def _utf8(text: str) -> bool:
    """True unless the text holds lone surrogates, which UTF-8 cannot encode."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
