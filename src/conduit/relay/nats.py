"""NATS JetStream as a relay target (nats-py, the ``nats`` extra).

Every event is one message on its subject, published without waiting (the
PubAck comes back on an inbox of the target's own), with two headers that make
the stream hold it exactly once and gap-free:

- ``Nats-Msg-Id``: the relay's source name and the event's position; the
  server drops a repeat within its duplicate window;
- ``Nats-Expected-Last-Sequence``: the stream sequence the message must
  follow. A message the server lost (a connection or leader lost mid-flight)
  makes every later one of the flight refused, never stored behind a gap.

On connecting, the relay reads the stream's last message and resumes after
the position it carries, so a restart repeats nothing even after the
duplicate window. The JetStream stream belongs to the relay: it is created
(with the subjects of the relay's template) when missing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence
from typing import Any

import orjson

from conduit.importing import needs_extra
from conduit.relay.base import BrokerError
from conduit.relay.messages import Message

with needs_extra("the NATS relay"):
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ["NatsTarget"]

_ERRORS = (nats.errors.Error, OSError, TimeoutError)


class _Batch:
    __slots__ = ("done", "left")

    def __init__(self, done: asyncio.Future[None], left: int) -> None:
        self.done = done
        self.left = left


class NatsTarget:
    """A JetStream stream the relay publishes to.

    Args:
        servers: the NATS servers (``nats://127.0.0.1:4222``), one or several
            of one cluster.
        stream: the JetStream stream's name.
        subjects: the subjects it holds when the relay creates it (the
            relay's template's wildcard, ``conduit.*``).
        source: the first part of every ``Nats-Msg-Id`` (the relay's name).
        replicas: the stream's replicas when the relay creates it.
        window: batches awaiting their PubAcks at once.
        timeout: seconds for connecting and for JetStream API requests.
    """

    def __init__(
        self,
        servers: Sequence[str],
        *,
        stream: str = "CONDUIT",
        subjects: Sequence[str] = ("conduit.*",),
        source: str = "conduit",
        replicas: int = 1,
        window: int = 32,
        timeout: float = 5.0,
    ) -> None:
        self.servers = list(servers)
        self.stream = stream
        self.subjects = list(subjects)
        self.source = source
        self.replicas = replicas
        self.window = window
        self.timeout = timeout
        self.description = f"NATS JetStream stream {stream} at {','.join(self.servers)}"
        self._nc: Client | None = None
        self._inbox = ""
        self._cut = 0
        self._pending: dict[str, _Batch] = {}
        self._sequence = 0
        self._failure: BrokerError | None = None

    def __str__(self) -> str:
        return self.description

    async def connect(self) -> None:
        """See :meth:`conduit.relay.base.Target.connect`."""
        self._failure = None
        self._pending = {}
        try:
            self._nc = await nats.connect(
                servers=self.servers,
                allow_reconnect=False,
                connect_timeout=self.timeout,
                max_reconnect_attempts=1,  # each server tried twice, then NoServersError
                reconnect_time_wait=0.05,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
            )
            js = self._nc.jetstream(timeout=self.timeout)
            try:
                await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                await js.add_stream(
                    name=self.stream, subjects=self.subjects, num_replicas=self.replicas
                )
            self._inbox = self._nc.new_inbox()
            self._cut = len(self._inbox) + 1
            await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)
        except _ERRORS as exc:
            await self.close()
            raise BrokerError(f"{self.description}: {exc!r}") from exc

    async def last_position(self) -> int | None:
        """See :meth:`conduit.relay.base.Target.last_position`."""
        assert self._nc is not None, "connect() first"
        js = self._nc.jetstream(timeout=self.timeout)
        try:
            info = await js.stream_info(self.stream)
            state = info.state
            self._sequence = state.last_seq
            if not state.messages:
                return None
            seq = state.last_seq
            while seq >= state.first_seq:  # the last one may have been deleted alone
                try:
                    found = await js.get_msg(self.stream, seq=seq)
                except nats.js.errors.NotFoundError:
                    seq -= 1
                    continue
                position: int = orjson.loads(found.data or b"{}")["position"]
                return position
            return None
        except _ERRORS as exc:
            raise BrokerError(f"{self.description}: {exc!r}") from exc
        except (KeyError, orjson.JSONDecodeError) as exc:
            raise BrokerError(
                f"{self.description}: its last message is not a relayed event ({exc!r})"
            ) from exc

    async def publish(self, batch: Sequence[Message]) -> Awaitable[None]:
        """See :meth:`conduit.relay.base.Target.publish`."""
        nc = self._nc
        if nc is None or self._failure is not None:
            raise self._failure or BrokerError(f"{self.description}: not connected")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = _Batch(done, len(batch))
        pending = self._pending
        inbox = self._inbox
        source = self.source
        sequence = self._sequence
        try:
            for message in batch:
                token = str(message.position)
                headers = dict(message.headers)
                headers["Nats-Msg-Id"] = f"{source}:{token}"
                headers["Nats-Expected-Last-Sequence"] = str(sequence)
                sequence += 1
                pending[token] = entry
                await nc.publish(
                    message.subject, message.body, reply=f"{inbox}.{token}", headers=headers
                )
        except _ERRORS as exc:
            self._fail(BrokerError(f"{self.description}: {exc!r}"))
            raise self._failure from exc  # type: ignore[misc]
        self._sequence = sequence
        return done

    async def close(self) -> None:
        """See :meth:`conduit.relay.base.Target.close`."""
        nc, self._nc = self._nc, None
        self._fail(BrokerError(f"{self.description}: closed"))
        if nc is not None:
            with contextlib.suppress(Exception):  # closing never raises
                await nc.close()

    # -- the broker's answers ------------------------------------------------------

    async def _on_ack(self, msg: Msg) -> None:
        entry = self._pending.pop(msg.subject[self._cut :], None)
        if entry is None or entry.done.done():
            return
        data = msg.data
        if b'"error"' in data or not data:
            reply: Any = (
                orjson.loads(data) if data else {"error": f"no reply ({msg.headers}) {msg.subject}"}
            )
            self._fail(BrokerError(f"{self.description} refused a message: {reply['error']}"))
            return
        entry.left -= 1
        if not entry.left:
            entry.done.set_result(None)

    def _fail(self, error: BrokerError) -> None:
        """Fail every batch in flight: the relay connects again and resumes."""
        if self._failure is None:
            self._failure = error
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.done.done():
                entry.done.set_exception(error)
                entry.done.exception()  # retrieved: a batch nobody awaits is no warning

    async def _on_error(self, exc: Exception) -> None:
        self._fail(BrokerError(f"{self.description}: {exc!r}"))

    async def _on_disconnected(self) -> None:
        self._fail(BrokerError(f"{self.description}: disconnected"))
