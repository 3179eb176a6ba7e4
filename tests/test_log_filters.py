"""Filtered reads of the global log: by name, correlation id and causation id.

Each filter is served by an index on the SQL engines (schema 4 on SQLite, 5 on
PostgreSQL); these tests pin what they return, on every engine.
"""

from __future__ import annotations

import uuid

import pytest

from conduit import EventStore, InvalidArgument


def _push_story(store: EventStore) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    for i in range(30):
        metadata = {"correlation_id": f"c{i % 3}"}
        if ids:
            metadata["causation_id"] = str(ids[-1])
        ids.append(store.push(f"step_{i % 4}", f"s{i % 5}", {"i": i}, metadata=metadata).id)
    return ids


def test_read_all_by_correlation_id_returns_every_correlated_event_in_log_order(
    store: EventStore,
) -> None:
    _push_story(store)
    store.page_size = 4
    found = list(store.read_all(correlation_id="c1"))
    assert [e.data["i"] for e in found] == list(range(1, 30, 3))
    assert [e.position for e in found] == sorted(e.position for e in found)


def test_read_all_by_causation_id_returns_what_an_event_caused(store: EventStore) -> None:
    ids = _push_story(store)
    found = list(store.read_all(causation_id=str(ids[4])))
    assert [e.id for e in found] == [ids[5]]
    assert list(store.read_all(causation_id=ids[4])) == found  # a UUID is taken as its text


def test_filters_combine_with_names_after_and_limit(store: EventStore) -> None:
    _push_story(store)
    store.page_size = 2
    every = list(store.read_all(correlation_id="c0", names=["step_0", "step_2"]))
    assert [e.data["i"] for e in every] == [0, 6, 12, 18, 24]
    later = list(store.read_all(correlation_id="c0", names=["step_0"], after=every[1].position))
    assert [e.data["i"] for e in later] == [12, 24]
    assert [e.data["i"] for e in store.read_all(correlation_id="c0", limit=3)] == [0, 3, 6]


def test_an_integer_correlation_id_matches_its_decimal_text(store: EventStore) -> None:
    store.push("thing_happened", "s", {}, metadata={"correlation_id": 42})
    store.push("thing_happened", "s", {}, metadata={"correlation_id": "42"})
    store.push("thing_happened", "s", {}, metadata={"correlation_id": "420"})
    assert len(list(store.read_all(correlation_id="42"))) == 2


def test_an_unknown_correlation_id_gives_nothing(store: EventStore) -> None:
    _push_story(store)
    assert list(store.read_all(correlation_id="nobody")) == []


@pytest.mark.parametrize("bad", ["", 7, "a\x00b"])
def test_a_bad_correlation_id_is_refused(store: EventStore, bad: object) -> None:
    with pytest.raises(InvalidArgument, match="correlation_id"):
        store.read_all(correlation_id=bad)


def test_several_names_merge_in_log_order_across_pages(store: EventStore) -> None:
    for i in range(40):
        store.push(["common", "rare", "other"][i % 3 if i % 7 else 1], "s", {"i": i})
    store.page_size = 3
    wanted = [e for e in store.read_all() if e.name in ("common", "rare")]
    assert list(store.read_all(names=["rare", "common"])) == wanted
    assert list(store.read_all(names=["rare", "common"], limit=5)) == wanted[:5]
