"""The contract kit against ``AsyncEventStore``: a small adapter that makes an async store
look like an ``EventStore``, so that the kit's tests run on it unchanged.

A listener subscribed through the adapter has its handlers run in the thread
that made the call (the pushing thread, as under ``EventStore``), which waits
for its call by serving them: so a plain handler may call the store again,
as a sync listener may.

:class:`LoopThread` runs one event loop in a thread of its own; :func:`blocking`
wraps an object living on that loop so that calling its coroutine methods
blocks until they are done, and its async iterators iterate as plain ones::

    loop = LoopThread()
    store = loop.call(lambda: AsyncEventStore(url))   # made on the loop's thread
    facade = blocking(store, loop)                     # facade.push(...) blocks
    ...
    loop.stop()

A kit fixture (see :mod:`conduit.testing`) returns such facades from its
``make_store``. Several threads may use one facade at once: their calls run
concurrently on the one loop, as tasks of an asyncio application would.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from conduit.core.bound import AsyncBound
from conduit.subscriptions.aio import AsyncSubscription
from conduit.subscriptions.projector import is_projector

__all__ = ["LoopThread", "blocking"]

T = TypeVar("T")


_INBOX: contextvars.ContextVar[queue.SimpleQueue[Any]] = contextvars.ContextVar("inbox")
"""The handlers to run in the thread that made the call under way."""


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run a coroutine on the loop; block until it is done and return its result.

        Meanwhile this thread runs the handlers the coroutine hands it (see
        :func:`in_caller`).
        """
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

        async def with_inbox() -> T:
            _INBOX.set(inbox)
            return await coroutine

        future: Future[T] = asyncio.run_coroutine_threadsafe(with_inbox(), self.loop)
        future.add_done_callback(lambda _: inbox.put(None))
        deadline = time.monotonic() + timeout
        while not future.done():
            try:
                job = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is not None:
                job()
        return future.result(0 if future.done() else max(0.0, deadline - time.monotonic()))

    def in_caller(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """``handler`` as a coroutine function that runs it in the calling thread."""
        loop = self.loop

        async def handle(*args: Any) -> Any:
            inbox = _INBOX.get(None)
            if inbox is None:
                return handler(*args)
            done: asyncio.Future[Any] = loop.create_future()

            def job() -> None:
                try:
                    outcome = handler(*args)
                except BaseException as exc:
                    loop.call_soon_threadsafe(done.set_exception, exc)
                else:
                    loop.call_soon_threadsafe(done.set_result, outcome)

            inbox.put(job)
            return await done

        return handle

    def call(self, fn: Callable[[], T]) -> T:
        """Call a plain function on the loop's thread (to make objects bound to it)."""

        async def call() -> T:
            return fn()

        return self.run(call())

    def stop(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def blocking(target: Any, loop: LoopThread) -> Any:
    """``target`` (an object of the loop) with its coroutines and async iterators blocking."""
    return _Blocking(target, loop)


def _iterate(iterator: AsyncIterator[Any], loop: LoopThread) -> Iterator[Any]:
    async def following() -> Any:
        try:
            return (True, await iterator.__anext__())
        except StopAsyncIteration:
            return (False, None)

    while True:
        more, item = loop.run(following())
        if not more:
            return
        yield _wrapped(item, loop)


def _wrapped(value: Any, loop: LoopThread) -> Any:
    if inspect.iscoroutine(value):
        return _wrapped(loop.run(value), loop)
    if isinstance(value, AsyncIterator):
        return _iterate(value, loop)
    if isinstance(value, AsyncSubscription | AsyncBound):
        return _Blocking(value, loop)
    return value


class _Blocking:
    """See :func:`blocking`."""

    def __init__(self, target: Any, loop: LoopThread) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_loop", loop)

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._target, name)
        loop = self._loop
        if not callable(found):
            return _wrapped(found, loop)

        proxies: dict[int, _InCaller] = self.__dict__.setdefault("_proxies", {})

        def call(*args: Any, **kwargs: Any) -> Any:
            listener = args[0] if args else None
            if name == "subscribe" and listener is not None and not is_projector(listener):
                proxy = proxies.setdefault(id(listener), _InCaller(listener, loop))
                result = _wrapped(found(proxy, *args[1:], **kwargs), loop)
                return listener if result is proxy else result
            if name == "unsubscribe" and id(listener) in proxies:
                args = (proxies.pop(id(listener)), *args[1:])
            return _wrapped(found(*args, **kwargs), loop)

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<blocking {self._target!r}>"


class _InCaller:
    """A listener whose handlers run in the calling thread (see :meth:`LoopThread.in_caller`)."""

    def __init__(self, listener: object, loop: LoopThread) -> None:
        self.listener = listener
        self.loop = loop

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.listener, name)
        if name.startswith("on_") and callable(found):
            return self.loop.in_caller(found)
        return found

    def __repr__(self) -> str:
        return repr(self.listener)
