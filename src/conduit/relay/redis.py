"""Redis Streams as a relay target (redis-py's asyncio client, the ``redis`` extra).

Every event is one entry, ``XADD key <position>-0 …``: the entry id is the
event's position, so Redis itself refuses a repeat (an id must be above the
stream's last one), and the relay resumes after the stream's
``last-generated-id`` — which stays even when entries are trimmed or deleted.
An entry's fields are ``event`` (the JSON), ``subject``, and the headers.

One connection carries the batches in order: a batch is one pipeline (one
round trip), sent once the one before it is answered, while the relay reads
and encodes the next ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence

from conduit.importing import needs_extra
from conduit.masking import mask_password
from conduit.relay.base import BrokerError
from conduit.relay.messages import Message

with needs_extra("the Redis relay"):
    import redis.asyncio
    import redis.exceptions

__all__ = ["RedisTarget"]

_ERRORS = (redis.exceptions.RedisError, OSError, TimeoutError)


class RedisTarget:
    """A Redis stream the relay appends to.

    Args:
        url: the server, ``redis://host:6379/0``.
        key: the stream's key.
        window: batches sent or waiting to be sent at once.
        timeout: seconds for connecting and for each reply.
    """

    def __init__(self, url: str, *, key: str, window: int = 4, timeout: float = 5.0) -> None:
        self.url = url
        self.key = key
        self.window = window
        self.timeout = timeout
        self.description = f"Redis stream {key} at {mask_password(url)}"
        self._client: redis.asyncio.Redis | None = None
        self._last: asyncio.Task[None] | None = None

    def __str__(self) -> str:
        return self.description

    async def connect(self) -> None:
        """See :meth:`conduit.relay.base.Target.connect` (Redis makes the stream with its
        first entry)."""
        self._last = None
        try:
            self._client = redis.asyncio.Redis.from_url(
                self.url,
                single_connection_client=True,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
            )
            await self._client.ping()
        except _ERRORS as exc:
            await self.close()
            raise BrokerError(f"{self.description}: {exc!r}") from exc

    async def last_position(self) -> int | None:
        """See :meth:`conduit.relay.base.Target.last_position`."""
        assert self._client is not None, "connect() first"
        try:
            info = await self._client.xinfo_stream(self.key)
        except redis.exceptions.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None
            raise BrokerError(f"{self.description}: {exc!r}") from exc
        except _ERRORS as exc:
            raise BrokerError(f"{self.description}: {exc!r}") from exc
        last = info["last-generated-id"]
        text = last.decode() if isinstance(last, bytes) else str(last)
        position = int(text.partition("-")[0])
        return position or None

    async def publish(self, batch: Sequence[Message]) -> Awaitable[None]:
        """See :meth:`conduit.relay.base.Target.publish`."""
        client = self._client
        if client is None:
            raise BrokerError(f"{self.description}: not connected")
        pipe = client.pipeline(transaction=False)
        key = self.key
        for message in batch:
            fields: dict[str, str | bytes] = {"event": message.body, "subject": message.subject}
            fields.update(message.headers)
            pipe.xadd(key, fields, id=f"{message.position}-0")  # type: ignore[arg-type]
        sent = asyncio.get_running_loop().create_task(self._send(pipe, self._last))
        self._last = sent
        return sent

    async def _send(
        self, pipe: redis.asyncio.client.Pipeline, before: Awaitable[None] | None
    ) -> None:
        if before is not None:
            await before  # in order, on the one connection; its failure is this one's too
        try:
            replies = await pipe.execute(raise_on_error=False)
        except _ERRORS as exc:
            raise BrokerError(f"{self.description}: {exc!r}") from exc
        for reply in replies:
            if isinstance(reply, Exception):
                raise BrokerError(f"{self.description} refused an entry: {reply}")

    async def close(self) -> None:
        """See :meth:`conduit.relay.base.Target.close`."""
        client, self._client = self._client, None
        last, self._last = self._last, None
        if last is not None and not last.done():
            last.cancel()
        if client is not None:
            with contextlib.suppress(Exception):  # closing never raises
                await client.aclose()
