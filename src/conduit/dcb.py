"""Queries and append conditions: the Dynamic Consistency Boundary (docs/dcb.md).

Events carry tags (``"course:c1"``). A :class:`Query` selects events by name
and tags; an :class:`AppendCondition` makes an append fail when an event the
query matches was recorded after the position a decision was based on. Free of
I/O: every engine and both faces share these values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from conduit.errors import InvalidArgument, InvalidEvent
from conduit.events import event_name

__all__ = ["AppendCondition", "Query", "QueryItem"]


def _strings(value: object, field: str) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Iterable) or isinstance(value, dict):
        raise InvalidArgument(
            f"{field}: an iterable of strings, not {type(value).__name__}", field=field
        )
    return tuple(value)


@dataclass(frozen=True, slots=True, init=False)
class QueryItem:
    """Events of one of ``names`` (any name when none) carrying every one of ``tags``.

    ``names`` and ``tags`` are iterables of strings (one string counts as one);
    names are checked and stored as events store them (``CourseDefined`` is
    ``course_defined``). An item with neither matches every event.
    """

    names: frozenset[str]
    tags: frozenset[str]

    def __init__(self, *, names: Iterable[str] | str = (), tags: Iterable[str] | str = ()):
        from conduit.core.writes import check_tags

        try:
            checked = frozenset(event_name(name) for name in _strings(names, "names"))
        except InvalidEvent as exc:
            raise InvalidArgument(f"names: {exc}", field="names") from None
        try:
            tag_set = check_tags(_strings(tags, "tags"), "tags")
        except InvalidEvent as exc:
            raise InvalidArgument(str(exc), field="tags") from None
        object.__setattr__(self, "names", checked)
        object.__setattr__(self, "tags", tag_set)

    @property
    def matches_all(self) -> bool:
        """Whether the item matches every event (neither names nor tags)."""
        return not self.names and not self.tags

    def matches(self, name: str, tags: frozenset[str]) -> bool:
        """Whether an event of that name and those tags matches the item."""
        return (not self.names or name in self.names) and self.tags <= tags


@dataclass(frozen=True, slots=True, init=False)
class Query:
    """Events matching any of its items (:class:`QueryItem`).

    ``Query.all()`` matches every event. ``Query()`` with no item is refused:
    it would match nothing, which is never what a condition means.
    """

    items: tuple[QueryItem, ...]

    def __init__(self, *items: QueryItem) -> None:
        if not items:
            raise InvalidArgument(
                "a Query needs at least one QueryItem; Query.all() matches every event",
                field="query",
            )
        for item in items:
            if not isinstance(item, QueryItem):
                raise InvalidArgument(
                    f"query: QueryItem values, not {type(item).__name__}", field="query"
                )
        object.__setattr__(self, "items", tuple(dict.fromkeys(items)))

    @classmethod
    def all(cls) -> Query:
        """The query that matches every event."""
        return cls(QueryItem())

    @property
    def matches_all(self) -> bool:
        """Whether the query matches every event."""
        return any(item.matches_all for item in self.items)

    def matches(self, name: str, tags: frozenset[str]) -> bool:
        """Whether an event of that name and those tags matches any item."""
        return any(item.matches(name, tags) for item in self.items)


@dataclass(frozen=True, slots=True)
class AppendCondition:
    """Fail the append if an event matching ``fail_if_events_match`` was recorded
    after position ``after`` (``None``: anywhere in the store).

    ``after`` is the position the decision was based on: the last position
    :meth:`~conduit.EventStore.read_query` returned, or
    :meth:`~conduit.EventStore.head_position` read before it.
    """

    fail_if_events_match: Query
    after: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fail_if_events_match, Query):
            raise InvalidArgument("fail_if_events_match: a Query", field="fail_if_events_match")
        after = self.after
        if after is not None and (type(after) is not int or after < 0):
            raise InvalidArgument(f"after: {after!r} is not a position", field="after")
