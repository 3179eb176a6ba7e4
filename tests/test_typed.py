"""Typed events: dataclasses (and pydantic models) pushed and read back, on every engine."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduit import (
    Event,
    EventDecodeError,
    EventStore,
    InvalidArgument,
    InvalidEvent,
    TypedEvent,
    TypeRegistry,
    new_id,
)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True)
class Address:
    street: str
    zip: int


@dataclass(frozen=True)
class Everything:
    """One field of every supported type."""

    text: str
    number: int
    ratio: float
    flag: bool
    moment: datetime
    day: date
    clock: time
    ident: uuid.UUID
    amount: Decimal
    color: Color
    level: Level
    address: Address
    pair: tuple[str, Decimal]
    numbers: tuple[int, ...]
    days: list[date]
    by_name: dict[str, uuid.UUID]
    by_id: dict[uuid.UUID, int]
    unique: frozenset[int]
    maybe: datetime | None
    kind: Literal["a", "b"]
    anything: dict[str, Any]


@dataclass(frozen=True)
class PersonRegistered:
    first_name: str
    born: date | None = None


@dataclass(frozen=True)
class Renamed:
    event_name: ClassVar[str] = "person_renamed"
    first_name: str


@dataclass(frozen=True)
class Unregistered:
    note: str


@dataclass(frozen=True)
class RatioMeasured:
    value: float


@dataclass(frozen=True)
class Moved:
    address: Address
    previous: list[Address] = field(default_factory=list)


def typed(store: EventStore, *types: type) -> EventStore:
    """A store over the same engine that reads ``types``; closed with the fixture's store."""
    return EventStore(store.backend, types=types)


texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
ints = st.integers(-(2**63), 2**63 - 1)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.datetimes(timezones=offsets)
decimals = st.decimals(allow_nan=False, allow_infinity=False)

everything = st.builds(
    Everything,
    text=texts,
    number=ints,
    ratio=st.floats(allow_nan=False, allow_infinity=False),
    flag=st.booleans(),
    moment=moments,
    day=st.dates(),
    clock=st.times(),
    ident=st.uuids(),
    amount=decimals,
    color=st.sampled_from(Color),
    level=st.sampled_from(Level),
    address=st.builds(Address, street=texts, zip=ints),
    pair=st.tuples(texts, decimals),
    numbers=st.lists(ints, max_size=5).map(tuple),
    days=st.lists(st.dates(), max_size=5),
    by_name=st.dictionaries(texts, st.uuids(), max_size=4),
    by_id=st.dictionaries(st.uuids(), ints, max_size=4),
    unique=st.frozensets(ints, max_size=5),
    maybe=st.none() | moments,
    kind=st.sampled_from(["a", "b"]),
    anything=st.dictionaries(texts, st.none() | st.booleans() | ints | texts, max_size=4),
)


def same(read: Any, given_value: Any) -> None:
    """Equal, of the same type and, for decimals, datetimes and floats, the same text."""
    assert type(read) is type(given_value), (read, given_value)
    if isinstance(given_value, Decimal):
        assert str(read) == str(given_value)
    elif isinstance(given_value, datetime | time):
        assert read == given_value
        assert read.isoformat() == given_value.isoformat()
    elif isinstance(given_value, tuple | list):
        assert len(read) == len(given_value)
        for a, b in zip(read, given_value, strict=True):
            same(a, b)
    elif isinstance(given_value, Everything | Address):
        for name in vars(given_value):
            same(getattr(read, name), getattr(given_value, name))
    else:
        assert read == given_value


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=everything)
def test_every_supported_field_type_round_trips_exactly(
    store: EventStore, value: Everything
) -> None:
    typed_store = typed(store, Everything, Address)
    stream = new_id()
    pushed = typed_store.push(value, stream)
    [read] = typed_store.get(stream)
    assert isinstance(read, TypedEvent)
    same(read.payload, value)
    assert isinstance(pushed, TypedEvent)
    assert pushed.payload is value
    assert read.data == pushed.data


def test_the_name_comes_from_the_class_in_snake_case(store: EventStore) -> None:
    event = store.push(PersonRegistered("Kris"), "p")
    assert event.name == "person_registered"
    assert event.data == {"first_name": "Kris", "born": None}


def test_a_class_may_declare_its_event_name(store: EventStore) -> None:
    assert store.push(Renamed("Kris"), "p").name == "person_renamed"


def test_reading_gives_typed_events_that_are_events_with_their_data(store: EventStore) -> None:
    reader = typed(store, PersonRegistered)
    store.push(PersonRegistered("Kris", date(1990, 5, 1)), "p")
    [event] = reader.get("p")
    assert isinstance(event, TypedEvent)
    assert isinstance(event, Event)
    assert event.payload == PersonRegistered("Kris", date(1990, 5, 1))
    assert event.data == {"first_name": "Kris", "born": "1990-05-01"}
    assert next(reader.read_all()).payload == event.payload  # type: ignore[attr-defined]
    assert reader.read_event(event.id) == event


def test_unregistered_names_read_as_plain_events(store: EventStore) -> None:
    reader = typed(store, PersonRegistered)
    store.push(Unregistered("x"), "p")
    store.push("thing_happened", "p", {"a": 1})
    assert [type(event) for event in reader.get("p")] == [Event, Event]


def test_push_many_takes_typed_events_and_plain_ones_together(store: EventStore) -> None:
    reader = typed(store, PersonRegistered, Renamed)
    recorded = reader.push_many(
        "p", [PersonRegistered("Kris"), ("thing_happened", {"a": 1}), Renamed("Kit")]
    )
    assert [event.name for event in recorded] == [
        "person_registered",
        "thing_happened",
        "person_renamed",
    ]
    payloads = [getattr(event, "payload", None) for event in reader.get("p")]
    assert payloads == [PersonRegistered("Kris"), None, Renamed("Kit")]


def test_a_registered_name_pushed_with_plain_data_reads_typed(store: EventStore) -> None:
    reader = typed(store, PersonRegistered)
    pushed = reader.push("person_registered", "p", {"first_name": "Kris", "born": "2001-02-03"})
    assert isinstance(pushed, TypedEvent)
    assert pushed.payload == PersonRegistered("Kris", date(2001, 2, 3))


def test_plain_data_that_does_not_fit_a_registered_class_is_refused_before_writing(
    store: EventStore,
) -> None:
    reader = typed(store, PersonRegistered)
    with pytest.raises(InvalidEvent) as refused:
        reader.push("person_registered", "p", {"first_name": 7})
    assert refused.value.field == "data['first_name']"
    assert store.get("p") == []


def test_a_stored_event_that_does_not_fit_its_class_raises_naming_id_class_and_field(
    store: EventStore,
) -> None:
    event = store.push("moved", "p", {"address": {"street": "Main", "zip": "12345"}})
    reader = typed(store, Moved, Address)
    with pytest.raises(EventDecodeError) as failure:
        reader.get("p")
    error = failure.value
    assert error.event_id == event.id
    assert error.class_name == "Moved"
    assert error.field == "address.zip"
    assert str(event.id) in str(error)
    assert "Moved" in str(error)
    assert "'address.zip'" in str(error)


def test_a_missing_required_field_is_named(store: EventStore) -> None:
    store.push("moved", "p", {"previous": []})
    with pytest.raises(EventDecodeError, match="field 'address': missing"):
        typed(store, Moved).get("p")


def test_a_bad_item_in_a_list_is_named_with_its_index(store: EventStore) -> None:
    address = {"street": "Main", "zip": 1}
    store.push("moved", "p", {"address": address, "previous": [address, {"street": 3, "zip": 1}]})
    with pytest.raises(EventDecodeError) as failure:
        typed(store, Moved).get("p")
    assert failure.value.field == "previous[1].street"


def test_untyped_data_keeps_the_strict_rules(store: EventStore) -> None:
    reader = typed(store, PersonRegistered)
    with pytest.raises(InvalidEvent, match="Decimal is not a JSON value"):
        reader.push("thing_happened", "p", {"amount": Decimal(1)})
    with pytest.raises(InvalidEvent, match="tuple"):
        store.push("thing_happened", "p", {"pair": (1, 2)})


def test_a_naive_datetime_in_a_typed_event_is_refused(store: EventStore) -> None:
    @dataclass
    class Scheduled:
        at: datetime

    with pytest.raises(InvalidEvent, match="naive") as refused:
        store.push(Scheduled(datetime(2024, 1, 1)), "p")
    assert refused.value.field == "data.at"
    assert store.get("p") == []


def test_a_nan_in_a_typed_event_is_refused_like_in_plain_data(store: EventStore) -> None:
    with pytest.raises(InvalidEvent, match="not a JSON number"):
        store.push(RatioMeasured(float("nan")), "p")


def test_a_typed_event_with_data_as_well_is_refused(store: EventStore) -> None:
    with pytest.raises(InvalidEvent, match="carries its own data"):
        store.push(PersonRegistered("Kris"), "p", {"first_name": "Kris"})


def test_a_field_of_an_unsupported_type_is_refused_at_registration() -> None:
    @dataclass
    class Weird:
        blob: bytes

    with pytest.raises(InvalidArgument, match="bytes"):
        TypeRegistry([Weird])


def test_two_classes_with_one_name_are_refused() -> None:
    @dataclass
    class PersonRenamed:
        first_name: str

    with pytest.raises(InvalidArgument, match="person_renamed"):
        TypeRegistry([Renamed, PersonRenamed])


def test_a_registry_works_as_a_decorator() -> None:
    registry = TypeRegistry()

    @registry.register
    @dataclass
    class ThingHappened:
        count: int

    store = EventStore(types=registry)
    store.push("thing_happened", "s", {"count": 2})
    assert store.get("s")[0].payload == ThingHappened(2)  # type: ignore[attr-defined]


def test_listeners_receive_typed_events(store: EventStore) -> None:
    reader = typed(store, PersonRegistered)
    seen: list[object] = []

    class Listener:
        def on_person_registered(self, event: TypedEvent[PersonRegistered]) -> None:
            seen.append(event.payload)

    reader.subscribe(Listener())
    reader.push(PersonRegistered("Kris"), "p")
    assert seen == [PersonRegistered("Kris")]


def test_stores_without_types_read_plain_events_as_before(store: EventStore) -> None:
    store.push(PersonRegistered("Kris"), "p")
    [event] = store.get("p")
    assert type(event) is Event
    assert event.data == {"first_name": "Kris", "born": None}


def test_pydantic_models_round_trip(store: EventStore) -> None:
    import pydantic  # a dev dependency: the optional support is always tested

    class Deposited(pydantic.BaseModel):
        amount: Decimal
        at: datetime
        tags: tuple[str, ...]
        account: uuid.UUID

    value = Deposited(
        amount=Decimal("10.50"),
        at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        tags=("a",),
        account=uuid.uuid4(),
    )
    reader = typed(store, Deposited)
    assert reader.push(value, "acct").name == "deposited"
    [event] = reader.get("acct")
    assert event.payload == value  # type: ignore[attr-defined]
    assert str(event.payload.amount) == "10.50"  # type: ignore[attr-defined]
    store.push(
        "deposited",
        "bad",
        {"amount": "x", "at": "2024-01-01T00:00:00Z", "tags": [], "account": str(uuid.uuid4())},
    )
    with pytest.raises(EventDecodeError) as failure:
        reader.get("bad")
    assert failure.value.field == "amount"
