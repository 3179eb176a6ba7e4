"""The relay: the global log, published to a broker in order, exactly once.

A :class:`Relay` is a named durable subscription of an
:class:`~conduit.AsyncEventStore` whose handler is a broker. One relay of a
name is active at a time (it holds the subscription's lease; the others stand
by). Each time it connects it asks the broker which position it holds last,
and publishes what follows: the broker, not the checkpoint, says where to
resume, so a relay killed between the broker's acknowledgement and its
checkpoint repeats nothing. The checkpoint (in the subscriptions' table, as
every subscription's) follows the acknowledged prefix: it is the relay's lag
in ``conduit projections``, and where a broker stream that was emptied or
re-created resumes.

Publishing is pipelined: the store is read a page at a time, each batch is
encoded once and sent without waiting, up to ``window`` batches await their
acknowledgement, and the checkpoint moves when a prefix is acknowledged.
A broker that fails or goes away is connected again with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncGenerator, Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from conduit.core.following import Follow
from conduit.errors import BackendError, InvalidArgument
from conduit.events import Event
from conduit.relay.base import BrokerError, LeaseLost, Target
from conduit.relay.messages import DEFAULT_SUBJECT, Message, SubjectTemplate, encode_event

if TYPE_CHECKING:
    from conduit.async_store import AsyncEventStore

__all__ = ["Relay", "RelayState"]

log = logging.getLogger("conduit.relay")

RelayState = Literal["starting", "relaying", "idle", "standing by", "retrying", "stopped"]


class Relay:
    """Publish the store's global log to a broker, exactly once and in order.

    Args:
        store: the store whose log is relayed.
        target: the broker stream: its URL (see :func:`conduit.relay.target`),
            or a :class:`~conduit.relay.base.Target` (made with the same
            ``subject``).
        name: the relay's subscription name: its checkpoint and lease.
        subject: the subject (routing key) template, see
            :class:`~conduit.relay.messages.SubjectTemplate`.
        names, stream_prefix: relay only events with these names, of streams
            whose id starts so.
        batch_size: events per message batch (and per store read).
        lease_ttl: seconds after which a standing-by relay takes over from a
            dead one (on PostgreSQL: at once, with the dead one's session).
        ack_timeout: seconds a batch may wait for its acknowledgement before
            the broker is taken for away.
        backoff, max_backoff: the first and the longest wait before
            connecting again after a failure.
        poll_interval, max_poll_interval: once caught up, the wait between
            two looks at the log for events of other processes, growing from
            the first to the second while it is quiet (this store's pushes,
            and PostgreSQL's ``NOTIFY`` with ``notify=true``, wake it at once).

    Raises:
        InvalidArgument: a bad name, template or number.
    """

    def __init__(
        self,
        store: AsyncEventStore,
        target: Target | str,
        *,
        name: str = "relay",
        subject: str = DEFAULT_SUBJECT,
        names: Iterable[str] | None = None,
        stream_prefix: str | None = None,
        batch_size: int = 500,
        lease_ttl: float = 10.0,
        ack_timeout: float = 10.0,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        poll_interval: float = 0.01,
        max_poll_interval: float = 0.25,
    ) -> None:
        if not isinstance(name, str) or not name or name.startswith("conduit."):
            raise InvalidArgument("a relay's name is a non-empty string not starting 'conduit.'")
        if type(batch_size) is not int or batch_size < 1:
            raise InvalidArgument("batch_size must be an integer of 1 or more", field="batch_size")
        for field, value in (
            ("lease_ttl", lease_ttl),
            ("ack_timeout", ack_timeout),
            ("backoff", backoff),
            ("max_backoff", max_backoff),
            ("poll_interval", poll_interval),
            ("max_poll_interval", max_poll_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidArgument(f"{field} must be a number of seconds above 0", field=field)
        self.store = store
        self.name = name
        self.subject = SubjectTemplate(subject)
        if isinstance(target, str):
            from conduit.relay import target as target_at

            target = target_at(target, subject=subject, source=name)
        self.target: Target = target
        self.names = None if names is None else tuple(names)
        self.stream_prefix = stream_prefix
        self.batch_size = batch_size
        self.lease_ttl = float(lease_ttl)
        self.ack_timeout = float(ack_timeout)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.state: RelayState = "starting"
        """What the relay is doing: ``relaying``, ``idle`` (caught up), ``standing by``
        (another holds the lease), ``retrying`` (the broker or the store failed)."""
        self.relayed: int | None = None
        """The position of the last event the broker acknowledged (``None``: not known yet)."""
        self.last_error: str | None = None
        """Why the relay last failed, while it retries (``None`` once it relays again)."""
        self._checkpoint: int | None = None
        self._attempted: set[int] = set()  # checkpoints this relay tried to write
        self._stopped = asyncio.Event()
        self._active = False
        self._said: tuple[str, str | None] | None = None  # the state last kept in the store

    def __repr__(self) -> str:
        return f"<Relay {self.name!r} to {self.target.description}>"

    # -- running -------------------------------------------------------------

    async def run(self) -> int:
        """Relay every event recorded up to now, then return the relayed position.

        One attempt: it holds the lease for its run and does not retry.

        Raises:
            BrokerError: the broker failed.
            BackendError: the store failed.
            LeaseLost: another relay of this name is active.
        """
        if not await self._take_lease():
            raise LeaseLost(f"relay {self.name!r} is driven by another process")
        try:
            await self._session(forever=False)
        finally:
            await self._say("stopped")
            await self._release_lease()
        return self.relayed or 0

    async def run_forever(self) -> None:
        """Relay until :meth:`stop` (or the task is cancelled): stand by while another
        relay of this name is active, retry with backoff while the broker or the
        store fails, follow the log once caught up."""
        failures = 0
        try:
            while not self._stopped.is_set():
                if not await self._hold_lease():
                    await self._sleep(min(1.0, self.lease_ttl / 3))
                    continue
                try:
                    await self._session(forever=True)
                except LeaseLost as exc:
                    log.info("relay %r: %s; standing by", self.name, exc)
                    self._active = False
                    self.state = "standing by"
                except (BrokerError, BackendError, OSError, TimeoutError) as exc:
                    failures += 1
                    delay = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    await self._say("retrying", self.last_error)
                    log.warning(
                        "relay %r to %s failed (%s); retrying in %.2f s",
                        self.name,
                        self.target.description,
                        self.last_error,
                        delay,
                    )
                    await self._sleep(delay)
                else:
                    failures = 0
        finally:
            await self._say("stopped")
            await self._release_lease()

    def stop(self) -> None:
        """Ask :meth:`run_forever` to end (after the batches in flight are acknowledged)."""
        self._stopped.set()

    # -- one connection --------------------------------------------------------

    async def _session(self, *, forever: bool) -> None:
        target = self.target
        try:
            await target.connect()
            start = await self._resume_position()
            self.relayed = start
            self.last_error = None
            await self._say("relaying")
            log.info("relay %r: relaying to %s after position %d", self.name, target, start)
            window = asyncio.Semaphore(target.window)
            acks: asyncio.Queue[tuple[int, Awaitable[None]] | None] = asyncio.Queue()
            batches = self._batches(start, forever=forever)
            tasks = [
                asyncio.create_task(self._produce(batches, window, acks)),
                asyncio.create_task(self._acknowledge(window, acks)),
            ]
            if forever:
                tasks.append(asyncio.create_task(self._keep_lease()))
                tasks.append(asyncio.create_task(self._watch_stop(tasks[0], acks)))
            try:
                await _first_failure(tasks, wait_for=tasks[1])
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        finally:
            await target.close()
        await self._save_checkpoint()

    async def _resume_position(self) -> int:
        broker = await self.target.last_position()
        checkpoint = await self.store.backend.load_checkpoint(self.name)
        self._checkpoint = checkpoint
        self._attempted = set()
        if broker is not None:
            return int(broker)
        if checkpoint:
            log.warning(
                "relay %r: %s holds no event; resuming after the checkpoint %d",
                self.name,
                self.target.description,
                checkpoint,
            )
        return int(checkpoint or 0)

    async def _batches(self, start: int, *, forever: bool) -> AsyncGenerator[Sequence[Event], None]:
        """Pages of the log after ``start``: until the head (``run``), or for ever."""
        store = self.store
        size = self.batch_size
        prefix = self.stream_prefix
        if forever:
            pages = store.follow_pages(
                after=start,
                names=self.names,
                stream_prefix=prefix,
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
            )
            async with contextlib.aclosing(pages):
                async for page in pages:
                    for at in range(0, len(page), size):
                        yield page[at : at + size]
                    if self._stopped.is_set():
                        return
            return
        # One attempt up to the head: pages as the follower reads them, until it has
        # caught up (the engine's pages, not an event at a time).
        follow = Follow(
            store._core,
            after=start,
            names=self.names,
            stream_prefix=prefix,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
        )
        runtime = store._runtime
        while True:
            page = await runtime.run(follow.step())
            for at in range(0, len(page), size):
                yield page[at : at + size]
            if follow.caught_up:
                return

    async def _produce(
        self,
        batches: AsyncGenerator[Sequence[Event], None],
        window: asyncio.Semaphore,
        acks: asyncio.Queue[tuple[int, Awaitable[None]] | None],
    ) -> None:
        subject = self.subject
        publish = self.target.publish
        async with contextlib.aclosing(batches):
            async for events in batches:
                messages: list[Message] = [encode_event(event, subject) for event in events]
                await window.acquire()
                acked = await publish(messages)
                acks.put_nowait((messages[-1].position, acked))
        acks.put_nowait(None)

    async def _acknowledge(
        self,
        window: asyncio.Semaphore,
        acks: asyncio.Queue[tuple[int, Awaitable[None]] | None],
    ) -> None:
        moved = asyncio.Event()
        keeping = asyncio.create_task(self._keep_checkpoint(moved))
        try:
            while True:
                item = await acks.get()
                if item is None:
                    return
                if keeping.done():
                    keeping.result()  # its failure (LeaseLost, the store's) ends the session
                position, acked = item
                try:
                    await asyncio.wait_for(acked, self.ack_timeout)
                except TimeoutError:
                    raise BrokerError(
                        f"{self.target.description}: no acknowledgement within {self.ack_timeout} s"
                    ) from None
                window.release()
                self.relayed = position
                self.state = "relaying" if not acks.empty() else "idle"
                moved.set()
        finally:
            keeping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeping

    async def _keep_checkpoint(self, moved: asyncio.Event) -> None:
        """Move the checkpoint to the acknowledged prefix, at most every 0.2 s, beside the
        acknowledgements (a slow checkpoint write never holds the window)."""
        while True:
            await moved.wait()
            moved.clear()
            await self._save_checkpoint()
            await asyncio.sleep(0.2)

    async def _watch_stop(
        self, producer: asyncio.Task[None], acks: asyncio.Queue[tuple[int, Awaitable[None]] | None]
    ) -> None:
        """On :meth:`stop`: publish nothing more, and let the batches in flight be acknowledged."""
        await self._stopped.wait()
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
        acks.put_nowait(None)

    async def _save_checkpoint(self) -> None:
        position = self.relayed
        if position is None or position == self._checkpoint:
            return
        if self._checkpoint is not None and position < self._checkpoint:
            return  # the broker holds less than the checkpoint says: keep the higher
        backend = self.store.backend
        self._attempted.add(position)
        moved = await backend.save_checkpoint(self.name, position, expected=self._checkpoint)
        if not moved:
            # A save of ours may have been cancelled after it was written (the session
            # ending while a checkpoint was on its way): that is not another relay.
            found = await backend.load_checkpoint(self.name)
            if found not in self._attempted:
                raise LeaseLost(f"relay {self.name!r}: another relay moved its checkpoint")
            self._checkpoint = found
            if found == position:
                return
            moved = await backend.save_checkpoint(self.name, position, expected=found)
            if not moved:
                raise LeaseLost(f"relay {self.name!r}: another relay moved its checkpoint")
        self._checkpoint = position
        self._attempted = {position}

    # -- the lease ---------------------------------------------------------------

    async def _take_lease(self) -> bool:
        taken = bool(await self.store.backend.try_lease(self.name, self.owner, self.lease_ttl))
        self._active = taken
        return taken

    async def _hold_lease(self) -> bool:
        try:
            active = await self._take_lease()
        except BackendError as exc:
            self.state = "retrying"
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("relay %r: the store failed (%s)", self.name, exc)
            return False
        if not active and self.state != "standing by":
            log.info("relay %r: standing by, another relay holds it", self.name)
            self.state = "standing by"
        return active

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            if not await self._take_lease():
                raise LeaseLost(f"relay {self.name!r}: another relay took its lease")

    async def _release_lease(self) -> None:
        if not self._active:
            return
        self._active = False
        try:
            await self.store.backend.release_lease(self.name, self.owner)
        except BackendError as exc:  # it lapses after lease_ttl instead
            log.warning("relay %r: cannot release its lease: %s", self.name, exc)

    async def _say(self, state: RelayState, detail: str | None = None) -> None:
        """Be in ``state``; while holding the lease, keep it in the store too (once per
        change), for ``conduit projections``, ``conduit stats`` and the browser."""
        self.state = state
        if not self._active or self._said == (state, detail):
            return
        try:
            await self.store.backend.save_subscription_state(self.name, state, detail)
        except BackendError as exc:  # the store is away: the log says it meanwhile
            log.debug("relay %r: cannot keep its state: %s", self.name, exc)
            return
        self._said = (state, detail)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # not wait_for: it can lose a cancellation
                await self._stopped.wait()


async def _first_failure(tasks: list[asyncio.Task[Any]], *, wait_for: asyncio.Task[Any]) -> None:
    """Wait until ``wait_for`` ends or any task fails; raise the first failure."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if wait_for in done:
            return
