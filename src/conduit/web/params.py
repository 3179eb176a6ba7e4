"""Reading query parameters into typed values; bad input is an :class:`InvalidArgument`.

The API answers an :class:`InvalidArgument` with 422 and the field at fault,
the pages with a 422 page; both name the parameter the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import QueryParams

from conduit.errors import InvalidArgument, InvalidEvent
from conduit.events import event_name

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_INTEGER",
    "MAX_LIMIT",
    "StreamIdConvertor",
    "boolean",
    "integer",
    "limit",
    "moment",
    "names",
    "text",
]

DEFAULT_LIMIT = 100
"""How many items an API call returns when it is not given ``limit``."""

MAX_LIMIT = 1000
"""The most items one API call returns."""

MAX_INTEGER = 2**63 - 1
"""The largest position, version or id the engines store (a signed 64-bit integer)."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def integer(
    query: Mapping[str, str], name: str, *, minimum: int = 0, default: int | None = None
) -> int | None:
    """An integer parameter between ``minimum`` and :data:`MAX_INTEGER`, or ``default``."""
    raw = query.get(name)
    if raw is None:
        return default
    value = raw.strip()
    if not (value.isascii() and value.lstrip("-").isdigit() and len(value) <= 20):
        raise InvalidArgument(f"{name}: {raw!r} is not an integer", field=name)
    number = int(value)
    if not minimum <= number <= MAX_INTEGER:
        raise InvalidArgument(
            f"{name}: {number} is out of range ({minimum} to {MAX_INTEGER})", field=name
        )
    return number


def limit(query: Mapping[str, str], *, default: int = DEFAULT_LIMIT) -> int:
    """The ``limit`` parameter: 1 to :data:`MAX_LIMIT` items."""
    value = integer(query, "limit", minimum=1, default=default)
    assert value is not None
    if value > MAX_LIMIT:
        raise InvalidArgument(f"limit: at most {MAX_LIMIT}", field="limit")
    return value


def boolean(query: Mapping[str, str], name: str) -> bool:
    """A flag: ``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
    raw = query.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgument(f"{name}: {raw!r} is not true or false", field=name)


def moment(query: Mapping[str, str], name: str) -> datetime | None:
    """A timezone-aware ISO 8601 time (``2024-05-01T12:00:00Z``), or ``None``."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.strip().upper())
    except ValueError:
        raise InvalidArgument(
            f"{name}: {raw!r} is not an ISO 8601 time such as 2024-05-01T12:00:00Z", field=name
        ) from None
    if value.utcoffset() is None:
        raise InvalidArgument(
            f"{name}: {raw!r} has no timezone; add Z or an offset such as +02:00", field=name
        )
    return value


def text(query: Mapping[str, str], name: str, *, max_length: int = 1000) -> str | None:
    """A text parameter, or ``None`` when absent or empty."""
    raw = query.get(name)
    if not raw:
        return None
    if len(raw) > max_length:
        raise InvalidArgument(f"{name}: at most {max_length} characters", field=name)
    if "\x00" in raw:
        raise InvalidArgument(f"{name}: NUL characters are not allowed", field=name)
    return raw


def names(query: QueryParams, name: str = "names") -> list[str] | None:
    """A list of event names, ``names=a&names=b``; ``None`` when absent."""
    values = query.getlist(name)
    for value in values:
        try:
            event_name(value)
        except InvalidEvent as exc:
            raise InvalidArgument(f"{name}: {exc}", field=name) from None
    return values or None


class StreamIdConvertor(Convertor[str]):
    """``{name:stream_id}`` in a route: any text, slashes and line breaks included."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("stream_id", StreamIdConvertor())
