"""``eventsourcing``'s own DCB recorder test case, run against the Conduit adapter on
every engine (conduit.integrations.eventsourcing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from eventsourcing.dcb import tests as eventsourcing_tests

from conduit import EventStore
from conduit.integrations.eventsourcing import ConduitDCBRecorder, event_name_of_type


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "memory":
        yield EventStore()
        return
    if request.param == "sqlite":
        with EventStore(f"sqlite:///{tmp_path / 'dcb.db'}") as made:
            yield made
        return
    url = request.getfixturevalue("postgres_url")
    schema = f"esdcb_{uuid.uuid4().hex[:8]}"
    with EventStore(url, schema=schema) as made:
        made.setup()
        yield made
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class _Case(eventsourcing_tests.DCBRecorderTestCase):
    """The library's test case, its checks called by the tests below on each engine."""

    __test__ = False

    def runTest(self) -> None:  # noqa: N802 - unittest's name; never collected
        pass


def test_the_recorder_appends_and_reads_as_eventsourcing_expects(store: EventStore) -> None:
    _Case()._test_append_read(ConduitDCBRecorder(store))


def test_the_recorder_subscription_blocks_then_receives(store: EventStore) -> None:
    _Case()._test_append_subscribe(ConduitDCBRecorder(store))


def test_types_that_are_not_snake_case_come_back_unchanged(store: EventStore) -> None:
    from eventsourcing.dcb.api import DCBEvent, DCBQuery, DCBQueryItem

    recorder = ConduitDCBRecorder(store)
    recorder.append([DCBEvent(type="CourseDefined", data=b"\x00\xff", tags=["c"])])
    [found] = list(recorder.read(DCBQuery(items=[DCBQueryItem(types=["CourseDefined"])])))
    assert (found.event.type, found.event.data, found.event.tags) == (
        "CourseDefined",
        b"\x00\xff",
        ["c"],
    )
    assert event_name_of_type("CourseDefined") != event_name_of_type("course_defined")
