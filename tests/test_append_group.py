"""Backend.append_group: several appends in one engine transaction, each all or nothing.

Group commit (the store combining concurrent pushes) stands on it; these tests
pin the engine call itself on every engine.
"""

from __future__ import annotations

import threading
from typing import Any

from conduit import DuplicateEvent, EventStore, WrongExpectedVersion, new_id
from conduit.backends.base import AppendRequest, StreamAppend
from conduit.core.effects import Op, Sleep
from conduit.events import NewEvent, make_new_event, stream_key


def _new(name: str = "thing_happened", data: str = "{}") -> NewEvent:
    return make_new_event(new_id(), name, data, "{}")


def _request(stream: str, count: int = 1, expected: int | None = None) -> AppendRequest:
    return (StreamAppend(stream_key(stream), tuple(_new() for _ in range(count)), expected),)


def test_each_request_gets_its_own_recorded_events(store: EventStore) -> None:
    requests = [_request("a", 2), _request("b", 1), _request("c", 3)]
    outcomes = store.backend.append_group(requests)
    assert [[[e.version for e in part] for part in o] for o in outcomes] == [  # type: ignore[union-attr]
        [[1, 2]],
        [[1]],
        [[1, 2, 3]],
    ]
    for request, outcome in zip(requests, outcomes, strict=True):
        assert not isinstance(outcome, Exception)
        assert [e.id for e in outcome[0]] == [new.id for new in request[0].events]
    assert [e.stream_id for e in store.read_all()] == ["a", "a", "b", "c", "c", "c"]


def test_a_request_s_events_are_contiguous_and_in_log_order(store: EventStore) -> None:
    outcomes = store.backend.append_group([_request("a", 3), _request("b", 2)])
    positions = [e.position for o in outcomes for e in o[0]]  # type: ignore[index]
    assert positions == sorted(positions)
    logged = [e.position for e in store.read_all()]
    assert logged == positions
    first = [e.position for e in outcomes[0][0]]  # type: ignore[index]
    assert first == list(range(first[0], first[0] + 3))


def test_a_wrong_expected_version_fails_that_request_alone(store: EventStore) -> None:
    store.push("thing_happened", "taken", {})
    outcomes = store.backend.append_group(
        [_request("a"), _request("taken", 2, expected=0), _request("b")]
    )
    assert isinstance(outcomes[1], WrongExpectedVersion)
    assert (outcomes[1].expected, outcomes[1].actual) == (0, 1)
    assert not isinstance(outcomes[0], Exception)
    assert not isinstance(outcomes[2], Exception)
    assert store.stream_version("taken") == 1
    assert [e.stream_id for e in store.read_all()] == ["taken", "a", "b"]


def test_requests_to_one_stream_see_the_versions_earlier_ones_leave(store: EventStore) -> None:
    outcomes = store.backend.append_group(
        [_request("s", 1, expected=0), _request("s", 2, expected=1), _request("s", 1, expected=1)]
    )
    assert [e.version for e in outcomes[0][0]] == [1]  # type: ignore[index]
    assert [e.version for e in outcomes[1][0]] == [2, 3]  # type: ignore[index]
    assert isinstance(outcomes[2], WrongExpectedVersion)
    assert outcomes[2].actual == 3
    assert [e.version for e in store.get("s")] == [1, 2, 3]


def test_a_retried_request_gets_the_events_already_recorded(store: EventStore) -> None:
    first = _request("a", 2)
    recorded = store.backend.append_group([first])[0]
    outcomes = store.backend.append_group([first, _request("b")])
    assert not isinstance(outcomes[0], Exception)
    assert [e.id for e in outcomes[0][0]] == [e.id for e in recorded[0]]  # type: ignore[index]
    assert store.stream_version("a") == 2
    assert store.stream_version("b") == 1


def test_an_id_recorded_in_another_stream_fails_that_request_alone(store: EventStore) -> None:
    taken = store.push("thing_happened", "elsewhere", {})
    clash = (StreamAppend(stream_key("a"), (make_new_event(taken.id, "x", "{}", "{}"),), None),)
    outcomes = store.backend.append_group([clash, _request("b")])
    assert isinstance(outcomes[0], DuplicateEvent)
    assert not isinstance(outcomes[1], Exception)
    assert store.stream_version("a") == 0


def test_new_streams_keep_the_id_type_they_were_created_with(store: EventStore) -> None:
    stream_id = new_id()
    part = StreamAppend(stream_key(stream_id), (_new(),), None)
    outcomes = store.backend.append_group([(part,), _request("text")])
    assert outcomes[0][0][0].stream_id == stream_id  # type: ignore[index]
    assert store.get(stream_id)[0].stream_id == stream_id
    assert store.get("text")[0].stream_id == "text"


def test_threads_pushing_at_once_share_a_transaction_each_with_its_own_outcome(
    make_store: Any,
) -> None:
    store = make_store()
    group = store._core.group
    if group is None:
        assert store.backend.scheme == "memory"  # no commit to share
        return
    store.push("thing_happened", "taken", {})
    real = group.run
    real_submit = group.submit
    submitted = threading.Semaphore(0)
    seen = 0

    def counting_submit(request: Any) -> Any:
        submitted.release()
        return real_submit(request)

    def held(requests: Any) -> Op[Any]:
        # Every batch in flight waits until all 16 pushes have queued (bounded in time),
        # so the pushes behind them are sure to form a batch of several.
        nonlocal seen
        for _ in range(1000):
            while submitted.acquire(blocking=False):
                seen += 1
            if seen >= 16:
                break
            yield Sleep(0.01)
        return (yield from real(requests))

    group.submit = counting_submit
    group.run = held
    outcomes: dict[int, Any] = {}

    def push(n: int) -> None:
        try:
            if n == 0:
                outcomes[n] = store.push("thing_happened", "taken", {}, expected_version=0)
            else:
                outcomes[n] = store.push("thing_happened", f"s-{n}", {"n": n})
        except WrongExpectedVersion as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=push, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert isinstance(outcomes[0], WrongExpectedVersion)
    for n in range(1, 16):
        assert (outcomes[n].stream_id, outcomes[n].version, outcomes[n].data) == (
            f"s-{n}",
            1,
            {"n": n},
        )
    assert group.combined > 0  # some pushes shared one transaction
    assert store.stream_version("taken") == 1


def test_threads_that_lead_batches_without_their_own_request_still_get_their_outcome(
    make_store: Any,
) -> None:
    # Batches of two at most: a thread that claims a batch may lead others' requests
    # and then its own, or wait for the next leader; none may be left waiting.
    store = make_store()
    group = store._core.group
    if group is None:
        assert store.backend.scheme == "memory"  # no commit to share
        return
    group.max_batch = 2
    failures: list[BaseException] = []

    def push(n: int) -> None:
        try:
            for version in range(50):
                store.push("thing_happened", f"t-{n}", {"v": version}, expected_version=version)
        except BaseException as exc:  # the assertion below names it
            failures.append(exc)

    threads = [threading.Thread(target=push, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not [thread for thread in threads if thread.is_alive()]
    assert failures == []
    assert [store.stream_version(f"t-{n}") for n in range(8)] == [50] * 8
    assert sum(1 for _ in store.read_all()) == 400


def test_async_the_pushes_that_queued_go_to_the_engine_before_a_batch_s_callers_resume() -> None:
    """While batch n's callers take their results (and push again), batch n+1, the
    requests that queued meanwhile, is already with the engine: the two overlap."""
    import asyncio

    from conduit.core.effects import AsyncRuntime
    from conduit.core.group import Group, Join, async_join_handler

    log: list[str] = []

    def run(requests: Any) -> Op[list[Any]]:
        log.append("start " + ",".join(requests))
        yield Sleep(0.02)
        log.append("end " + ",".join(requests))
        return list(requests)

    group: Group[str] = Group(run, max_inflight=1)
    runtime = AsyncRuntime()
    runtime = runtime.extended({Join: async_join_handler(runtime)})

    async def push(name: str, after: float) -> None:
        await asyncio.sleep(after)

        def op() -> Op[str]:
            result: str = yield Join(group, name)
            return result

        assert await runtime.run(op()) == name
        log.append(f"{name} done")

    async def scenario() -> None:
        await asyncio.gather(
            push("x", 0), push("a", 0.005), push("b", 0.005), push("c", 0.03), push("d", 0.03)
        )

    asyncio.run(scenario())
    assert log.index("start c,d") < log.index("a done")
    assert log.index("start c,d") < log.index("b done")
    assert group.batches == 3


def test_async_tasks_pushing_in_one_turn_share_batches_split_in_two_cohorts() -> None:
    """Tasks that push in the same turn of the loop join one batch, not a first one
    of the first caller alone; with two batches allowed and none in flight it goes
    as two halves, and each half's callers, pushing again, form the next batch of
    their own while the other half is with the engine."""
    import asyncio

    from conduit.core.effects import AsyncRuntime
    from conduit.core.group import Group, Join, async_join_handler

    sizes: list[int] = []

    def run(requests: Any) -> Op[list[Any]]:
        sizes.append(len(requests))
        yield Sleep(0.01)
        return list(requests)

    group: Group[str] = Group(run, max_inflight=2)
    runtime = AsyncRuntime()
    runtime = runtime.extended({Join: async_join_handler(runtime)})

    async def pusher(name: str) -> None:
        for turn in range(3):

            def op(request: str) -> Op[str]:
                result: str = yield Join(group, request)
                return result

            assert await runtime.run(op(f"{name}.{turn}")) == f"{name}.{turn}"

    async def scenario() -> None:
        await asyncio.gather(*(pusher(f"t{n}") for n in range(8)))

    asyncio.run(scenario())
    assert sizes == [4, 4, 4, 4, 4, 4]
