"""Operations as generators of effects: the one core both faces of Conduit run.

Everything Conduit does between a call and its result — validating, encoding,
choosing statements, paging, retrying, checkpointing, dispatching to handlers —
is written once, as a generator function that *yields* what it needs done
(an :class:`Effect`: run this statement, call this handler, sleep this long)
and receives the outcome back::

    def stream_version(self, stream: StreamKey) -> Op[int]:
        row = yield Query(self.sql.stream_version, (stream.text,), ONE)
        return int(row[0]) if row else 0

A *runtime* drives such an operation. :class:`SyncRuntime` performs each
effect by blocking the calling thread (``EventStore``); :class:`AsyncRuntime`
awaits it (``AsyncEventStore``). Only the handlers of the effects differ
between the two — a statement runs on a psycopg ``Connection`` or an
``AsyncConnection`` — so no logic exists twice. An effect that fails is thrown
back into the operation at the ``yield``, where it can be handled like any
exception.

The effects every runtime knows are defined here: :class:`Blocking` (a plain
function that may block: inline in a sync runtime, on an executor's thread in
an async one), :class:`Call` (application code, a handler that may be
``async def``), :class:`Sleep` (interruptible by a :class:`Signal`) and
:class:`Join` (group commit, see :mod:`conduit.core.group`). Engines register
handlers for their own effects (for example PostgreSQL's statements).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Generator, Mapping
from concurrent.futures import Executor
from typing import Any, Protocol, TypeAlias, TypeVar

from conduit.errors import ConduitError

__all__ = [
    "AsyncRuntime",
    "Blocking",
    "Call",
    "Effect",
    "Op",
    "Performed",
    "Signal",
    "Sleep",
    "SyncRuntime",
    "done",
    "sync_handlers",
]

T = TypeVar("T")


class Effect:
    """Something an operation needs done outside itself; see the module docstring."""

    __slots__ = ()


Op: TypeAlias = Generator[Effect, Any, T]
"""An operation: yields effects, receives their outcomes, returns its result."""


def done(value: T) -> Op[T]:
    """An operation that needs nothing done: it returns ``value`` at once."""
    return value
    yield  # pragma: no cover - makes this a generator


class Performed(Effect):
    """An effect that knows how to perform itself under either face.

    For effects of optional parts (SQL read models' statements) that the
    runtimes cannot know in advance: a runtime that has no handler for an
    effect's class calls its :meth:`perform` (sync) or awaits its
    :meth:`aperform` (async).
    """

    __slots__ = ()

    def perform(self) -> Any:
        """Perform the effect, blocking; return its outcome."""
        raise NotImplementedError

    async def aperform(self) -> Any:
        """Perform the effect as a coroutine; return its outcome."""
        raise NotImplementedError


class Blocking(Effect):
    """Call ``fn(*args)``, a plain function that may block (an SQLite statement).

    A sync runtime calls it in the calling thread; an async runtime runs it
    on ``executor`` (a thread of the engine's own) or, when ``executor`` is
    ``None``, inline in the event loop (for work that never blocks: the
    memory engine).
    """

    __slots__ = ("args", "executor", "fn")

    def __init__(
        self, fn: Callable[..., Any], *args: Any, executor: Executor | None = None
    ) -> None:
        self.fn = fn
        self.args = args
        self.executor = executor


class Call(Effect):
    """Call application code (a handler): ``fn(*args)``.

    An async runtime awaits what it returns when that is awaitable, so
    handlers may be ``async def``; a sync runtime refuses an awaitable with a
    :class:`~conduit.errors.ConduitError` that says to use ``AsyncEventStore``.
    """

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args


class Signal(Protocol):
    """What :class:`Sleep` can be woken by: a ``threading.Event`` or an ``asyncio.Event``."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...

    def clear(self) -> None: ...


class Sleep(Effect):
    """Wait ``seconds``, or until ``signal`` is set; the outcome says whether it was.

    The signal must be of the runtime's kind: a ``threading.Event`` under a
    sync runtime, an ``asyncio.Event`` under an async one (each face makes
    its own, see :meth:`SyncRuntime.signal`).
    """

    __slots__ = ("seconds", "signal")

    def __init__(self, seconds: float, signal: Signal | None = None) -> None:
        self.seconds = seconds
        self.signal = signal


Handler: TypeAlias = Callable[[Any], Any]
AsyncHandler: TypeAlias = Callable[[Any], Awaitable[Any]]


class SyncRuntime:
    """Runs operations by blocking the calling thread (the face of ``EventStore``).

    Args:
        handlers: how to perform each kind of effect beside the common ones,
            by effect class (an engine's statements, say).
    """

    __slots__ = ("_handlers",)

    is_async = False

    def __init__(self, handlers: Mapping[type[Effect], Handler] | None = None) -> None:
        self._handlers: dict[type[Effect], Handler] = {**sync_handlers(), **(handlers or {})}

    def extended(self, handlers: Mapping[type[Effect], Handler]) -> SyncRuntime:
        """A runtime that also performs these effects."""
        return SyncRuntime({**self._handlers, **handlers})

    def signal(self) -> threading.Event:
        """A new signal of this runtime's kind, for :class:`Sleep`."""
        return threading.Event()

    def run(self, op: Op[T]) -> T:
        """Drive ``op`` to its end and return its result (or raise its error)."""
        handlers = self._handlers
        send = op.send
        try:
            effect = send(None)
            while True:
                try:
                    handler = handlers.get(type(effect))
                    outcome = effect.perform() if handler is None else handler(effect)  # type: ignore[attr-defined]
                except (Exception, asyncio.CancelledError) as exc:
                    effect = op.throw(exc)
                else:
                    effect = send(outcome)
        except StopIteration as stop:
            result: T = stop.value
            return result
        finally:
            op.close()


def _blocking(effect: Blocking) -> Any:
    return effect.fn(*effect.args)


def _call(effect: Call) -> Any:
    outcome = effect.fn(*effect.args)
    if inspect.isawaitable(outcome):
        close = getattr(outcome, "close", None)
        if close is not None:
            close()  # never awaited: do not leave a warning behind
        raise ConduitError(
            f"{effect.fn!r} is async (it returned an awaitable): async handlers run under "
            "conduit.AsyncEventStore, not EventStore"
        )
    return outcome


def _sleep(effect: Sleep) -> bool:
    if effect.signal is None:
        threading.Event().wait(effect.seconds)
        return False
    assert isinstance(effect.signal, threading.Event), "a sync runtime sleeps on threading.Event"
    return effect.signal.wait(effect.seconds)


def sync_handlers() -> dict[type[Effect], Handler]:
    """The common effects, performed by blocking."""
    return {Blocking: _blocking, Call: _call, Sleep: _sleep}


class AsyncRuntime:
    """Runs operations as coroutines (the face of ``AsyncEventStore``).

    Args:
        handlers: coroutine functions performing each kind of effect beside the
            common ones, by effect class.
    """

    __slots__ = ("_handlers",)

    is_async = True

    def __init__(self, handlers: Mapping[type[Effect], AsyncHandler] | None = None) -> None:
        self._handlers: dict[type[Effect], AsyncHandler] = {
            **_async_handlers(),
            **(handlers or {}),
        }

    def extended(self, handlers: Mapping[type[Effect], AsyncHandler]) -> AsyncRuntime:
        """A runtime that also performs these effects."""
        return AsyncRuntime({**self._handlers, **handlers})

    def signal(self) -> asyncio.Event:
        """A new signal of this runtime's kind, for :class:`Sleep`."""
        return asyncio.Event()

    async def run(self, op: Op[T]) -> T:
        """Drive ``op`` to its end and return its result (or raise its error).

        Cancelled while an effect is awaited, the cancellation is thrown into
        the operation (which may clean up) and then raised.
        """
        handlers = self._handlers
        send = op.send
        try:
            effect = send(None)
            while True:
                try:
                    handler = handlers.get(type(effect))
                    if handler is None:
                        outcome = await effect.aperform()  # type: ignore[attr-defined]
                    else:
                        outcome = await handler(effect)
                except (Exception, asyncio.CancelledError) as exc:
                    effect = op.throw(exc)
                else:
                    effect = send(outcome)
        except StopIteration as stop:
            result: T = stop.value
            return result
        finally:
            op.close()


async def _ablocking(effect: Blocking) -> Any:
    if effect.executor is None:
        return effect.fn(*effect.args)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(effect.executor, _blocking, effect)


async def _acall(effect: Call) -> Any:
    outcome = effect.fn(*effect.args)
    if inspect.isawaitable(outcome):
        return await outcome
    return outcome


async def _asleep(effect: Sleep) -> bool:
    signal = effect.signal
    if signal is None:
        await asyncio.sleep(effect.seconds)
        return False
    assert isinstance(signal, asyncio.Event), "an async runtime sleeps on asyncio.Event"
    if signal.is_set():
        return True
    try:
        async with asyncio.timeout(effect.seconds):  # not wait_for: it can lose a cancellation
            await signal.wait()
    except TimeoutError:
        return False
    return True


def _async_handlers() -> dict[type[Effect], AsyncHandler]:
    return {Blocking: _ablocking, Call: _acall, Sleep: _asleep}
