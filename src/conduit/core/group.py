"""Group commit: concurrent appends of one process combined into one engine transaction.

Under concurrency an append's cost is its commit. When several callers (threads
of an ``EventStore``, tasks of an ``AsyncEventStore``) append at the same moment,
a batch takes every request waiting, runs them as one transaction (the engine's
``append_group`` operation), and hands each caller its own outcome — its
recorded events, or its own error (``WrongExpectedVersion`` fails that caller
only; nothing of it is written). While a batch is in flight, new requests queue
and form the next one, so batches grow with the load and a lone caller never
waits for company.

:class:`Group` is the batching state, free of I/O; the two faces differ only
in how a caller waits for its outcome, which is this module's
:class:`Join` effect, performed by :func:`sync_join_handler` (threads: the
first caller leads the batch in its own thread) or :func:`async_join_handler`
(tasks: a batch forms once the loop's turn is over, from every task that pushed
in it, and runs in a task of its own). Cancelling one caller never cancels the
others' appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from conduit.core.effects import AsyncRuntime, Effect, Op, SyncRuntime

__all__ = ["Group", "Join", "Ticket", "async_join_handler", "sync_join_handler"]

R = TypeVar("R")


class Ticket(Generic[R]):
    """One caller's request in a group, and its outcome once the batch has run."""

    __slots__ = ("done", "error", "request", "result", "wake")

    def __init__(self, request: R) -> None:
        self.request = request
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.wake: Any = None
        """What the caller waits on: a ``threading.Event``, or a future of the loop."""


class Group(Generic[R]):
    """The requests waiting to be combined, and the batches in flight.

    Args:
        run: the operation that performs a batch: given the requests, it
            returns one outcome per request, in order — the result, or the
            exception that request alone raises. Raising fails every request
            of the batch with that error.
        max_batch: the most requests one batch takes.
        max_inflight: the most batches in flight at once (1 for an engine
            with one writer at a time).
    """

    def __init__(
        self,
        run: Callable[[Sequence[R]], Op[list[Any]]],
        *,
        max_batch: int = 256,
        max_inflight: int = 1,
    ) -> None:
        self.run = run
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.pending: deque[Ticket[R]] = deque()
        self.inflight = 0
        self.lock = threading.Lock()  # the sync face's; the async face runs on one thread
        self.batches = 0
        self.combined = 0
        """Counters: batches run, and requests that ran in a batch of more than one."""

    def submit(self, request: R) -> Ticket[R]:
        """Queue a request; the caller then leads a batch or waits for one."""
        ticket = Ticket(request)
        self.pending.append(ticket)
        return ticket

    def claim(self, limit: int | None = None) -> list[Ticket[R]] | None:
        """Take the next batch to lead (at most ``limit`` requests), or ``None`` when
        enough batches are in flight."""
        if not self.pending or self.inflight >= self.max_inflight:
            return None
        size = min(len(self.pending), self.max_batch, limit or self.max_batch)
        batch = [self.pending.popleft() for _ in range(size)]
        self.inflight += 1
        self.batches += 1
        if size > 1:
            self.combined += size
        return batch

    def finish(
        self,
        batch: Sequence[Ticket[R]],
        outcomes: Sequence[Any] | None,
        error: BaseException | None,
    ) -> Ticket[R] | None:
        """Record a batch's outcomes; returns a waiting ticket whose caller should lead next."""
        self.inflight -= 1
        for index, ticket in enumerate(batch):
            ticket.done = True
            if error is not None:
                ticket.error = error
            else:
                assert outcomes is not None
                outcome = outcomes[index]
                if isinstance(outcome, BaseException):
                    ticket.error = outcome
                else:
                    ticket.result = outcome
        return self.pending[0] if self.pending else None


def _outcome(ticket: Ticket[Any]) -> Any:
    if ticket.error is not None:
        raise ticket.error.with_traceback(ticket.error.__traceback__)
    return ticket.result


class Join(Effect):
    """Add a request to a group and wait for its own outcome (the result, or its error)."""

    __slots__ = ("group", "request")

    def __init__(self, group: Group[Any], request: Any) -> None:
        self.group = group
        self.request = request


def sync_join_handler(runtime: SyncRuntime) -> Callable[[Join], Any]:
    """The :class:`Join` handler of a sync runtime: callers are threads."""

    def join(effect: Join) -> Any:
        group = effect.group
        lock = group.lock
        lock.acquire()
        ticket = group.submit(effect.request)
        while True:
            try:
                if ticket.done:
                    return _outcome(ticket)
                batch = group.claim()
                if batch is None:
                    # Made only to wait on: a lone caller leads its own batch at once.
                    # Under the lock, so whoever finishes a batch sees it, or sees
                    # this ticket done or next in line before it is made.
                    wake = ticket.wake
                    if wake is None:
                        wake = ticket.wake = threading.Event()
                    else:
                        wake.clear()
            finally:
                lock.release()
            if batch is None:
                wake.wait()
                lock.acquire()
                continue
            outcomes: list[Any] | None = None
            failure: BaseException | None = None
            try:
                outcomes = runtime.run(group.run([t.request for t in batch]))
            except BaseException as exc:
                failure = exc
            lock.acquire()
            successor = group.finish(batch, outcomes, failure)
            for done in batch:
                if done.wake is not None:
                    done.wake.set()
            if successor is not None and successor.wake is not None:
                successor.wake.set()

    return join


def async_join_handler(runtime: AsyncRuntime) -> Callable[[Join], Awaitable[Any]]:
    """The :class:`Join` handler of an async runtime: callers are tasks of one loop.

    A caller queues its request and waits; batches are claimed by a callback the
    first caller of a loop iteration schedules, so every task that pushes in that
    iteration (the callers of a batch just done, pushing again) joins one batch
    instead of the first of them leading a batch of one into the free slot. With
    two batches allowed in flight and none in flight, the waiting requests go as
    two halves: the callers then form two cohorts whose batches alternate, one
    with the engine while the loop hands out the other's results (64 tasks on a
    pool of 8: docs/benchmarks.md). Every batch runs in a task of its own, which
    cancelling a caller does not cancel."""
    running: set[asyncio.Task[None]] = set()
    scheduled: dict[Group[Any], asyncio.AbstractEventLoop] = {}
    """The groups whose flush is scheduled, and in which loop (a loop that closed
    before running it leaves its entry: a push in another loop schedules anew)."""

    def start_all(group: Group[Any]) -> None:
        """Start every batch the group lets run now."""
        share = None
        free = group.max_inflight - group.inflight
        if group.inflight == 0 and free > 1 and len(group.pending) > 1:
            share = -(-len(group.pending) // free)  # cohorts, one per batch (see above)
        while True:
            batch = group.claim(share)
            if batch is None:
                return
            task = asyncio.get_running_loop().create_task(lead(group, batch))
            running.add(task)
            task.add_done_callback(running.discard)

    def flush(group: Group[Any]) -> None:
        scheduled.pop(group, None)
        start_all(group)

    async def lead(group: Group[Any], batch: list[Ticket[Any]]) -> None:
        outcomes: list[Any] | None = None
        failure: BaseException | None = None
        try:
            outcomes = await runtime.run(group.run([t.request for t in batch]))
        except BaseException as exc:
            failure = exc
            raise
        finally:
            group.finish(batch, outcomes, failure)
            # The requests that came while this batch ran go to the engine at once,
            # before its callers take their results (and push again): the engine
            # works on the next batch while this loop hands those out.
            if not isinstance(failure, asyncio.CancelledError):
                start_all(group)
            else:  # the loop ends, maybe: the waiting requests go after this turn, if any
                asyncio.get_running_loop().call_soon(flush, group)
            for done in batch:
                if not done.wake.done():  # a cancelled caller's future is done
                    done.wake.set_result(None)

    async def join(effect: Join) -> Any:
        group = effect.group
        ticket = group.submit(effect.request)
        loop = asyncio.get_running_loop()
        ticket.wake = loop.create_future()  # its outcome is there once it is set
        if scheduled.get(group) is not loop:
            scheduled[group] = loop
            loop.call_soon(flush, group)
        try:
            await ticket.wake
            return _outcome(ticket)
        except asyncio.CancelledError:
            _abandon(group, ticket)
            raise

    return join


def _abandon(group: Group[Any], ticket: Ticket[Any]) -> None:
    """A cancelled caller: a request not yet in a batch is withdrawn (nothing written)."""
    with contextlib.suppress(ValueError):  # already in a batch: it commits or fails whole
        group.pending.remove(ticket)
