"""The other side of a relay: a projection driven from a JetStream stream, not the store.

:func:`consume` runs one projection (a SQL read model, any ``on_<name>``
object with a name) from the events a relay published to a JetStream stream,
on a machine that has no access to the event store. It is the same driver as
``conduit run``'s (:class:`~conduit.subscriptions.driving.Driver`: batches,
retries with backoff, parked events, the lease), reading its pages from a
JetStream pull consumer instead of the store's log:

- on connecting, the durable consumer (named after the projection) is made
  anew to start at the first message after the projection's checkpoint
  (found by a binary search of the stream's messages, whose positions
  increase), so nothing the projection handled comes again and nothing after
  it is skipped, whatever the consumer's state was when its process died;
- messages are acknowledged (``AckAll``) once the checkpoint has moved past
  them, that is after the read model's transaction committed;
- a message redelivered, or at or below the checkpoint, is dropped.

The consumer's own bookkeeping — leases, parked events, the checkpoints of
projections that keep them in the store (plain ``on_<name>`` objects) — lives in
a store of its own (``book``, by default in memory), never in the relayed one.
A parked event is listed and dropped there; retrying it (``conduit parked
retry``) needs the event itself, which that store does not hold: it is left
parked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from conduit.async_store import AsyncEventStore
from conduit.core.effects import Op, Performed, done
from conduit.errors import ConfigurationError, InvalidArgument
from conduit.events import Event
from conduit.importing import needs_extra
from conduit.relay.base import BrokerError
from conduit.relay.messages import decode_event

with needs_extra("consuming a NATS relay"):
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

__all__ = ["JetStreamSource", "consume"]

log = logging.getLogger("conduit.relay")

_ERRORS = (nats.errors.Error, OSError, TimeoutError)


class JetStreamSource:
    """The events of a JetStream stream, after a position, for one projection.

    Args:
        servers: the NATS servers.
        stream: the JetStream stream a relay publishes to.
        durable: the durable consumer's name (the projection's).
        wait: seconds a fetch waits for new messages (a long poll).
        timeout: seconds for connecting and JetStream API requests.
    """

    def __init__(
        self,
        servers: Sequence[str],
        *,
        stream: str,
        durable: str,
        wait: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        self.servers = list(servers)
        self.stream = stream
        self.durable = "".join(c if c.isalnum() or c in "-_" else "_" for c in durable)
        self.wait = wait
        self.timeout = timeout
        self.description = f"NATS JetStream stream {stream} at {','.join(self.servers)}"
        self._nc: Client | None = None
        self._sub: Any = None
        self._held: list[tuple[Event, Msg]] = []
        self._after: int | None = None

    @classmethod
    def from_url(cls, url: str, *, durable: str) -> JetStreamSource:
        """``nats://host:4222[,host:port…]/STREAM``."""
        parts = urlsplit(url)
        if parts.scheme != "nats":
            raise ConfigurationError(f"{url!r}: consuming needs nats://host:port/STREAM")
        hosts = [h for h in parts.netloc.split(",") if h]
        stream = unquote(parts.path.strip("/")) or "CONDUIT"
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return cls(
            [f"nats://{h}" for h in hosts],
            stream=stream,
            durable=query.get("durable", durable),
        )

    async def close(self) -> None:
        """Disconnect (never raises); the next read connects again."""
        nc, self._nc, self._sub = self._nc, None, None
        self._held = []
        self._after = None
        if nc is not None:
            try:
                await nc.close()
            except Exception:  # closing never raises
                log.debug("closing %s failed", self.description, exc_info=True)

    async def read(self, after: int, limit: int) -> list[Event]:
        """Events after ``after`` (the projection's checkpoint), at most ``limit``.

        Acknowledges what is at or below ``after``; waits up to ``wait``
        seconds for a message when none is held.

        Raises:
            BrokerError: the broker failed (the next read connects again).
        """
        try:
            if self._nc is None or self._after is None or after < self._after:
                await self._start(after)
            await self._acknowledge(after)
            self._after = after
            if not self._held:
                await self._fetch(after, limit)
            return [event for event, _ in self._held[:limit]]
        except _ERRORS as exc:
            await self.close()
            raise BrokerError(f"{self.description}: {exc!r}") from exc

    async def _start(self, after: int) -> None:
        await self.close()
        self._nc = await nats.connect(
            servers=self.servers,
            connect_timeout=self.timeout,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.05,
        )
        js = self._nc.jetstream(timeout=self.timeout)
        start = await self._first_after(after)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(self.stream, self.durable)
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.ALL,
            ack_wait=120,
            max_ack_pending=-1,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
        )
        await js.add_consumer(self.stream, config)
        self._sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        self._after = after

    async def _first_after(self, after: int) -> int:
        """The sequence of the stream's first message whose position is above ``after``."""
        assert self._nc is not None
        js = self._nc.jetstream(timeout=self.timeout)
        state = (await js.stream_info(self.stream)).state
        low, high = state.first_seq or 1, state.last_seq + 1  # high: past the end
        while low < high:
            middle = (low + high) // 2
            position = await self._position_at(middle, high)
            if position is None or position > after:
                high = middle
            else:
                low = middle + 1
        return max(low, 1)

    async def _position_at(self, seq: int, end: int) -> int | None:
        """The position of the message at ``seq`` (or the next one kept), ``None`` past the end."""
        assert self._nc is not None
        js = self._nc.jetstream(timeout=self.timeout)
        while seq < end:
            try:
                found = await js.get_msg(self.stream, seq=seq)
            except nats.js.errors.NotFoundError:
                seq += 1
                continue
            return decode_event(found.data or b"").position
        return None

    async def _fetch(self, after: int, limit: int) -> None:
        try:
            msgs = await self._sub.fetch(limit, timeout=self.wait)
        except nats.errors.TimeoutError:
            return
        last = self._held[-1][0].position if self._held else after
        stale: Msg | None = None
        for msg in msgs:
            try:
                event = decode_event(msg.data)
            except InvalidArgument as exc:
                raise BrokerError(f"{self.description}: {exc}") from None
            if event.position <= last:  # handled already, or redelivered
                stale = msg
                continue
            self._held.append((event, msg))
            last = event.position
        if stale is not None and not self._held:
            await stale.ack()

    async def _acknowledge(self, after: int) -> None:
        """Ack (all up to) the last held message the checkpoint has passed."""
        held = self._held
        done_up_to = 0
        while done_up_to < len(held) and held[done_up_to][0].position <= after:
            done_up_to += 1
        if done_up_to:
            await held[done_up_to - 1][1].ack()
            del held[:done_up_to]


class _Read(Performed):
    """The effect of reading a page from the broker: an async face only."""

    __slots__ = ("after", "limit", "source")

    def __init__(self, source: JetStreamSource, after: int, limit: int) -> None:
        self.source = source
        self.after = after
        self.limit = limit

    def perform(self) -> Any:
        raise ConfigurationError("consuming a relay runs under asyncio (conduit.relay.consume)")

    async def aperform(self) -> Any:
        return await self.source.read(self.after, self.limit)


class _BrokerEngine:
    """The book store's engine, but the global log read from the broker."""

    def __init__(self, book: Any, source: JetStreamSource) -> None:
        self._book = book
        self._source = source

    def __getattr__(self, name: str) -> Any:
        return getattr(self._book, name)

    def read_all(self, *, after: int, names: Any, limit: int, **_: Any) -> Op[list[Event]]:
        events: list[Event] = yield _Read(self._source, after, limit)
        if names is not None:
            wanted = set(names)
            return [event for event in events if event.name in wanted]
        return events


class _BrokerCore:
    """What a subscription's runner asks of a store's core, with the broker as the log."""

    def __init__(self, book: Any, source: JetStreamSource) -> None:
        self._book = book
        self.engine = _BrokerEngine(book.engine, source)
        self.page_size = book.page_size
        self.types = book.types

    def log_filter(self, names: tuple[str, ...] | None) -> Any:
        return self._book.log_filter(names)

    def head_position(self, *, wait: bool = True) -> Op[int]:
        return done(0)  # unknown here: no lag past the names filter is counted

    def read_event(self, event_id: Any) -> Op[Event | None]:
        return done(None)

    def revealed(self, page: Sequence[Event]) -> Op[Sequence[Event]]:
        # The broker's events are as the relay published them: nothing to unseal here.
        return done(page)


async def consume(
    projection: object,
    source: str | JetStreamSource,
    *,
    book: AsyncEventStore | None = None,
    name: str | None = None,
    batch_size: int | None = None,
    max_attempts: int | None = None,
    backoff: float | None = None,
    on_failure: Any = None,
    lease_ttl: float | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Drive ``projection`` from a relay's JetStream stream until ``stop`` is set.

    Args:
        projection: a SQL read model, or any object with ``on_<name>``
            methods (then ``name`` is needed: its checkpoint is kept in
            ``book``).
        source: ``nats://host:4222/STREAM`` (the relay's target), or a
            :class:`JetStreamSource`.
        book: where leases, parked events and store-kept checkpoints live
            (by default a store in memory).
        name, batch_size, max_attempts, backoff, on_failure, lease_ttl: as for
            :meth:`conduit.AsyncEventStore.subscribe`.
        stop: set it to end the consumer (after the batch at hand).

    Raises:
        ProjectionError: the projection stopped on a failing event
            (``on_failure="stop"``).
    """
    from conduit.core.subscribing import plan_subscription
    from conduit.subscriptions.aio import AsyncSubscription

    own_book = book is None
    store = book if book is not None else AsyncEventStore()
    try:
        plan = plan_subscription(
            store._core,
            projection,
            name=name,
            mode="background",
            names=None,
            streams=None,
            max_attempts=max_attempts,
            backoff=backoff,
            on_failure=on_failure,
            batch_size=batch_size,
            poll_interval=0.001,  # each read waits on the broker itself (a long poll)
            max_poll_interval=0.001,
            lease_ttl=lease_ttl,
        )
        if plan is None:
            raise InvalidArgument("consume() needs a projection, or a name= for a listener")
        durable = plan.name
        broker = (
            source
            if isinstance(source, JetStreamSource)
            else JetStreamSource.from_url(source, durable=durable)
        )
        core = _BrokerCore(store._core, broker)
        driver = plan.driver(core, stopped=asyncio.Event(), wake=asyncio.Event())  # type: ignore[arg-type]
        driver.runner._mirror = False  # no store to mirror the checkpoint into
        subscription = AsyncSubscription(driver, store._runtime)
        await subscription.start()
        try:
            waiting = asyncio.create_task((stop or asyncio.Event()).wait())
            assert subscription._task is not None
            await asyncio.wait({waiting, subscription._task}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if driver.error is not None:
                raise driver.error
        finally:
            await subscription.stop()
            await broker.close()
    finally:
        if own_book:
            await store.close()
