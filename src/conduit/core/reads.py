"""The checks of a read's arguments, before any engine sees them. Free of I/O."""

from __future__ import annotations

import uuid
from datetime import datetime

from conduit.errors import InvalidArgument

__all__ = [
    "check_before",
    "check_from_version",
    "check_limit",
    "check_position",
    "check_related",
    "check_since",
]


def check_since(since: object) -> None:
    """Refuse a ``since`` that is not ``None`` or a timezone-aware datetime."""
    if since is None:
        return
    if not isinstance(since, datetime):
        raise InvalidArgument("since must be a datetime", field="since")
    if since.tzinfo is None or since.utcoffset() is None:
        raise InvalidArgument(
            "since must be timezone-aware (for example datetime.now(UTC)); a naive "
            "datetime is ambiguous",
            field="since",
        )


def check_limit(limit: object) -> int | None:
    """The ``limit`` of a read: ``None`` (no limit) or an integer of 0 or more."""
    if limit is None:
        return None
    if type(limit) is not int or limit < 0:
        raise InvalidArgument("limit must be an integer of 0 or more", field="limit")
    return limit


def check_related(key: str, value: object) -> str:
    """A ``correlation_id`` or ``causation_id`` filter as text (a UUID gives its text)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if type(value) is not str or not value or "\x00" in value:
        raise InvalidArgument(f"{key} must be a non-empty string", field=key)
    return value


def check_position(after: object) -> int:
    """The ``after`` of a global-log read: ``None`` (the beginning, 0) or a position."""
    if after is None:
        return 0
    if type(after) is not int or after < 0:
        raise InvalidArgument("after must be a position (an integer of 0 or more)", field="after")
    return after


def check_before(before: object) -> int | None:
    """The ``before`` of a global-log read: ``None`` (the end of the log) or a position."""
    if before is not None and (type(before) is not int or before < 1):
        raise InvalidArgument("before must be a position (an integer of 1 or more)", field="before")
    return before


def check_from_version(from_version: object) -> None:
    """Refuse a ``from_version`` that is not ``None`` or a version of 1 or more."""
    if from_version is not None and (type(from_version) is not int or from_version < 1):
        raise InvalidArgument("from_version must be an integer of 1 or more", field="from_version")
