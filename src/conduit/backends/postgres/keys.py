"""The DCB lock keys of an append and the parameters of a condition. Free of I/O.

A written event of name ``n`` holds, for each of its tags ``t``, the keys
``n␟t`` and ``␟t`` (shared); a condition item of names ``N`` and tags ``T``
takes ``n␟min(T)`` for each ``n`` in ``N``, or ``␟min(T)`` when ``N`` is empty
(exclusive). Every event an item matches carries ``min(T)`` (and one of ``N``),
so its writer holds a key the condition needs: the condition waits for it,
then sees its events. The migration ``007_tags.sql`` tells the whole scheme.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from conduit.backends.base import AppendRequest
from conduit.dcb import AppendCondition
from conduit.events import NewEvent, StreamKey

__all__ = ["SEPARATOR", "condition_keys", "condition_params", "event_keys", "tagged_params"]

SEPARATOR = "\x1f"
"""Between a name and a tag in a key (the unit separator: no name holds it)."""


def event_keys(events: Iterable[NewEvent]) -> set[str]:
    """The keys the writer of ``events`` holds, shared."""
    keys: set[str] = set()
    for new in events:
        for tag in new.tags:
            keys.add(new.name + SEPARATOR + tag)
            keys.add(SEPARATOR + tag)
    return keys


def condition_keys(condition: AppendCondition) -> tuple[set[str], bool]:
    """The keys a condition takes, exclusive, and whether it must lock the table
    instead (an item by name alone, or one that matches everything)."""
    keys: set[str] = set()
    table = False
    for item in condition.fail_if_events_match.items:
        if not item.tags:
            table = True
            continue
        first = min(item.tags)
        if item.names:
            keys.update(name + SEPARATOR + first for name in item.names)
        else:
            keys.add(SEPARATOR + first)
    return keys, table


def request_events(request: AppendRequest) -> list[NewEvent]:
    """Every event of a request, parts in order."""
    return [new for part in request for new in part.events]


def condition_params(condition: AppendCondition) -> tuple[Any, ...]:
    """The condition's leading parameters of ``append_conditional``, but its keys."""
    query = condition.fail_if_events_match
    names: list[str] = []
    name_item: list[int] = []
    tags: list[str] = []
    tag_item: list[int] = []
    for number, item in enumerate(query.items, 1):
        for name in sorted(item.names):
            names.append(name)
            name_item.append(number)
        for tag in sorted(item.tags):
            tags.append(tag)
            tag_item.append(number)
    return (
        condition.after or 0,
        len(query.items),
        names,
        name_item,
        tags,
        tag_item,
        query.matches_all,
    )


def tagged_params(
    stream: StreamKey,
    new: NewEvent,
    expected: int | None,
    notify: bool,
    condition: AppendCondition | None,
    max_keys: int,
) -> tuple[Any, ...] | None:
    """The parameters of ``append_tagged`` (migration 011) for one event, or ``None``
    when that lean call cannot take it: an imported time, a condition of several
    items or of one without tags, or more keys than ``max_keys``."""
    if new.recorded_at is not None:
        return None
    keys = event_keys((new,))
    head: tuple[Any, ...] = (None, None, None, None, None)
    if condition is not None:
        query = condition.fail_if_events_match
        if query.matches_all or len(query.items) != 1:
            return None
        [item] = query.items
        if not item.tags:
            return None
        exclusive, _ = condition_keys(condition)
        if len(exclusive) + len(keys) > max_keys:
            return None
        tags = sorted(item.tags)
        head = (
            condition.after or 0,
            tags[0],
            tags if len(tags) > 1 else None,
            sorted(item.names) if item.names else None,
            sorted(exclusive),
        )
    elif len(keys) > max_keys:
        return None
    return (
        stream.text,
        stream.is_uuid,
        expected,
        new.id,
        new.name,
        new.data,
        new.metadata,
        notify,
        sorted(new.tags),
        sorted(keys),
        *head,
    )
