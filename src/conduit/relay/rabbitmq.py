"""RabbitMQ Streams as a relay target (rstream, the ``rabbitmq`` extra).

The relay publishes through a *named* producer (its reference is the relay's
name) with each message's publishing id set to the event's position: the
broker keeps the last publishing id of each named producer and drops a
message whose id is not above it (confirming it all the same), so nothing is
held twice; the relay resumes after that id (``query_publisher_sequence``).
A message is AMQP 1.0: the event's JSON as its body, its subject (the routing
key) in the properties, and the headers as application properties.

Needs RabbitMQ's ``rabbitmq_stream`` plugin (port 5552).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Sequence

from conduit.importing import needs_extra
from conduit.relay.base import BrokerError
from conduit.relay.messages import Message

with needs_extra("the RabbitMQ Streams relay"):
    import rstream
    from rstream.utils import RawMessage

__all__ = ["RabbitStreamTarget", "amqp_message"]


def _amqp_string(text: str) -> bytes:
    raw = text.encode()
    if len(raw) < 256:
        return b"\xa1" + bytes((len(raw),)) + raw  # str8-utf8
    return b"\xb1" + struct.pack(">L", len(raw)) + raw  # str32-utf8


def amqp_message(message: Message) -> bytes:
    """``message`` as an AMQP 1.0 message: its subject and headers as application
    properties, its body as one data section (the bytes rstream's ``AMQPMessage``
    makes of them, written here without its general-purpose encoder, a third of
    a relay's time)."""
    properties = {"subject": message.subject, **message.headers}
    items = b"".join(_amqp_string(k) + _amqp_string(v) for k, v in properties.items())
    count = 2 * len(properties)
    if len(items) + 1 < 256:
        section = b"\xc1" + bytes((len(items) + 1, count)) + items  # map8
    else:
        section = b"\xd1" + struct.pack(">LL", len(items) + 4, count) + items  # map32
    body = message.body
    if len(body) < 256:
        data = b"\xa0" + bytes((len(body),)) + body  # vbin8
    else:
        data = b"\xb0" + struct.pack(">L", len(body)) + body  # vbin32
    # described sections: 0x00, smallulong 0x53, then application-properties (0x74)
    # and data (0x75)
    return b"\x00\x53\x74" + section + b"\x00\x53\x75" + data


class RabbitStreamTarget:
    """A RabbitMQ stream the relay publishes to, created when missing.

    Args:
        host, port, username, password, vhost: the broker's stream endpoint.
        stream: the stream's name.
        producer: the producer's reference (the relay's name): the broker's
            dedup key.
        window: batches awaiting their publish confirms at once.
        timeout: seconds for connecting.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 5552,
        username: str = "guest",
        password: str = "guest",
        vhost: str = "/",
        stream: str,
        producer: str = "conduit",
        window: int = 64,
        timeout: float = 5.0,
    ) -> None:
        self.host, self.port, self.vhost = host, port, vhost
        self._credentials = (username, password)
        self.stream = stream
        self.reference = producer
        self.window = window
        self.timeout = timeout
        self.description = f"RabbitMQ stream {stream} at {host}:{port}"
        self._producer: rstream.Producer | None = None
        self._failure: BrokerError | None = None
        self._waiting: set[asyncio.Future[None]] = set()

    def __str__(self) -> str:
        return self.description

    async def connect(self) -> None:
        """See :meth:`conduit.relay.base.Target.connect`."""
        self._failure = None
        username, password = self._credentials
        producer = rstream.Producer(
            self.host,
            self.port,
            vhost=self.vhost,
            username=username,
            password=password,
            max_retries=1,
            connection_name=f"conduit-relay-{self.reference}",
            on_close_handler=self._on_close,
        )
        self._producer = producer
        try:
            await asyncio.wait_for(producer.start(), self.timeout)
            await asyncio.wait_for(
                producer.create_stream(self.stream, exists_ok=True), self.timeout
            )
        except Exception as exc:  # rstream raises builtins as well as its own
            await self.close()
            raise BrokerError(f"{self.description}: {exc!r}") from exc

    async def last_position(self) -> int | None:
        """See :meth:`conduit.relay.base.Target.last_position`."""
        assert self._producer is not None, "connect() first"
        try:
            client = await self._producer.default_client
            sequence = await asyncio.wait_for(
                client.query_publisher_sequence(stream=self.stream, reference=self.reference),
                self.timeout,
            )
        except Exception as exc:
            raise BrokerError(f"{self.description}: {exc!r}") from exc
        return int(sequence) or None

    async def publish(self, batch: Sequence[Message]) -> Awaitable[None]:
        """See :meth:`conduit.relay.base.Target.publish`."""
        producer = self._producer
        if producer is None or self._failure is not None:
            raise self._failure or BrokerError(f"{self.description}: not connected")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        left = len(batch)
        description = self.description

        def confirmed(status: rstream.ConfirmationStatus) -> None:
            nonlocal left
            if done.done():
                return
            if not status.is_confirmed:
                done.set_exception(
                    BrokerError(
                        f"{description} refused publishing id {status.message_id} "
                        f"(code {status.response_code})"
                    )
                )
                return
            left -= 1
            if not left:
                done.set_result(None)

        messages = [
            RawMessage(data=amqp_message(message), publishing_id=message.position)
            for message in batch
        ]
        self._waiting.add(done)
        done.add_done_callback(self._waiting.discard)
        try:
            await producer.send_batch(
                self.stream,
                messages,
                publisher_name=self.reference,
                on_publish_confirm=confirmed,
            )
        except Exception as exc:
            error = BrokerError(f"{self.description}: {exc!r}")
            self._fail(error)
            raise error from exc
        return done

    async def close(self) -> None:
        """See :meth:`conduit.relay.base.Target.close`."""
        producer, self._producer = self._producer, None
        self._fail(BrokerError(f"{self.description}: closed"))
        if producer is not None:
            with contextlib.suppress(Exception):  # closing never raises
                await asyncio.wait_for(producer.close(), self.timeout)

    def _fail(self, error: BrokerError) -> None:
        if self._failure is None:
            self._failure = error
        for waiting in list(self._waiting):
            if not waiting.done():
                waiting.set_exception(error)
                waiting.exception()

    async def _on_close(self, info: object) -> None:
        self._fail(BrokerError(f"{self.description}: connection closed ({info})"))
