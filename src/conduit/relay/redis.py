"""Redis Streams as a relay target (redis-py's asyncio client, the ``redis`` extra).

Every event is one entry, ``XADD key <position>-0 …``: the entry id is the
event's position, so Redis itself refuses a repeat (an id must be above the
stream's last one), and the relay resumes after the stream's
``last-generated-id`` — which stays even when entries are trimmed or deleted.
An entry's fields are ``event`` (the JSON), ``subject``, and the headers.

One connection carries the batches in order, several in flight: each is
written at once, encoded here in Redis's protocol, and the replies are read in
order as they come (redis-py's client, which answers the stream's
``XINFO``, waits on each reply under a timeout of its own: too slow for
thousands of entries a second).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence
from urllib.parse import unquote, urlsplit

from conduit.importing import needs_extra
from conduit.masking import mask_password
from conduit.relay.base import BrokerError
from conduit.relay.messages import Message

with needs_extra("the Redis relay"):
    import redis.asyncio
    import redis.exceptions

__all__ = ["RedisTarget"]

_ERRORS = (redis.exceptions.RedisError, OSError, TimeoutError)


def _command(*args: bytes) -> bytes:
    """One command in Redis's protocol (RESP), for arguments that are already bytes."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class RedisTarget:
    """A Redis stream the relay appends to.

    Args:
        url: the server, ``redis://[:password@]host:6379/0``.
        key: the stream's key.
        window: batches awaiting their replies at once.
        timeout: seconds for connecting and for the first questions.
    """

    def __init__(self, url: str, *, key: str, window: int = 8, timeout: float = 5.0) -> None:
        self.url = url
        self.key = key
        self.window = window
        self.timeout = timeout
        self.description = f"Redis stream {key} at {mask_password(url)}"
        self._client: redis.asyncio.Redis | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._sent: asyncio.Queue[tuple[int, asyncio.Future[None]]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._key = key.encode()

    def __str__(self) -> str:
        return self.description

    async def connect(self) -> None:
        """See :meth:`conduit.relay.base.Target.connect` (Redis makes the stream with its
        first entry)."""
        self._sent = asyncio.Queue()
        parts = urlsplit(self.url)
        try:
            self._client = redis.asyncio.Redis.from_url(
                self.url, single_connection_client=True, socket_connect_timeout=self.timeout
            )
            await asyncio.wait_for(self._client.ping(), self.timeout)
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 6379),
                self.timeout,
            )
            hello = []
            if parts.password is not None:
                user = [unquote(parts.username).encode()] if parts.username else []
                hello.append(_command(b"AUTH", *user, unquote(parts.password).encode()))
            database = parts.path.strip("/") or "0"
            hello.append(_command(b"SELECT", database.encode()))
            self._writer = writer
            writer.write(b"".join(hello))
            for _ in hello:
                line = await asyncio.wait_for(reader.readuntil(b"\r\n"), self.timeout)
                if not line.startswith(b"+"):
                    raise BrokerError(f"{self.description}: {line.decode(errors='replace')}")
        except _ERRORS as exc:
            await self.close()
            raise BrokerError(f"{self.description}: {exc!r}") from exc
        except BrokerError:
            await self.close()
            raise
        self._reader = asyncio.get_running_loop().create_task(self._read_replies(reader))

    async def last_position(self) -> int | None:
        """See :meth:`conduit.relay.base.Target.last_position`."""
        assert self._client is not None, "connect() first"
        try:
            info = await asyncio.wait_for(self._client.xinfo_stream(self.key), self.timeout)
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
        writer = self._writer
        reader = self._reader
        if writer is None or reader is None or reader.done():
            raise BrokerError(f"{self.description}: not connected")
        key = self._key
        packed = []
        for message in batch:
            fields = [b"event", message.body, b"subject", message.subject.encode()]
            for name, value in message.headers.items():
                fields.append(name.encode())
                fields.append(value.encode())
            packed.append(_command(b"XADD", key, b"%d-0" % message.position, *fields))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sent.put_nowait((len(batch), done))
        try:
            writer.write(b"".join(packed))
            await writer.drain()
        except _ERRORS as exc:
            raise BrokerError(f"{self.description}: {exc!r}") from exc
        return done

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        """Take the replies in order; a batch is done when all of its own are in.

        Each reply to ``XADD`` is the entry's id (``$<length>``, the id) or an
        error (``-…``).
        """
        buffer = b""
        at = 0
        done: asyncio.Future[None] | None = None
        try:
            while True:
                count, done = await self._sent.get()
                refused = None
                while count:
                    end = buffer.find(b"\r\n", at)
                    if end < 0:
                        chunk = await reader.read(1 << 16)
                        if not chunk:
                            raise BrokerError(f"{self.description}: the server closed")
                        buffer = buffer[at:] + chunk
                        at = 0
                        continue
                    kind = buffer[at : at + 1]
                    if kind == b"$":
                        size = int(buffer[at + 1 : end])
                        if len(buffer) < end + 2 + size + 2:
                            chunk = await reader.read(1 << 16)
                            if not chunk:
                                raise BrokerError(f"{self.description}: the server closed")
                            buffer = buffer[at:] + chunk
                            at = 0
                            continue
                        at = end + 2 + size + 2
                    else:
                        if kind == b"-":
                            refused = refused or buffer[at + 1 : end].decode(errors="replace")
                        else:
                            refused = refused or f"unexpected reply {buffer[at:end]!r}"
                        at = end + 2
                    count -= 1
                if refused is not None:
                    raise BrokerError(f"{self.description} refused an entry: {refused}")
                if not done.done():
                    done.set_result(None)
        except (BrokerError, *_ERRORS) as exc:
            error = (
                exc if isinstance(exc, BrokerError) else BrokerError(f"{self.description}: {exc!r}")
            )
            self._fail(error, done)

    def _fail(self, error: BrokerError, current: asyncio.Future[None] | None = None) -> None:
        """Fail the batch being read (``current``) and every one sent after it."""
        waiting = [current] if current is not None else []
        while not self._sent.empty():
            waiting.append(self._sent.get_nowait()[1])
        for done in waiting:
            if not done.done():
                done.set_exception(error)
                done.exception()

    async def close(self) -> None:
        """See :meth:`conduit.relay.base.Target.close`."""
        client, self._client = self._client, None
        writer, self._writer = self._writer, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        self._fail(BrokerError(f"{self.description}: closed"))
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if client is not None:
            with contextlib.suppress(Exception):  # closing never raises
                await client.aclose()
