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
from conduit.events import NewEvent

__all__ = ["SEPARATOR", "condition_keys", "condition_params", "event_keys"]

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
