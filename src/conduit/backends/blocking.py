"""An engine written as plain blocking methods, offered as operations.

The memory and SQLite engines (and any third-party engine written against the
:class:`~conduit.backends.base.Backend` protocol) do their work in plain
methods. :class:`BlockingEngine` offers each of them as an operation that
yields one :class:`~conduit.core.effects.Blocking` effect: under
``EventStore`` the method runs in the calling thread, as it always did; under
``AsyncEventStore`` it runs on the engine's executor — SQLite's own thread,
so that the event loop never waits for the disk — or inline for the memory
engine, which never blocks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from conduit.core.bound import OPERATIONS
from conduit.core.effects import Blocking, Op

__all__ = ["BlockingEngine"]


def _operation(method: Callable[..., Any], executor: Executor | None) -> Callable[..., Op[Any]]:
    def operation(*args: Any, **kwargs: Any) -> Op[Any]:
        fn = functools.partial(method, **kwargs) if kwargs else method
        return (yield Blocking(fn, *args, executor=executor))

    operation.__name__ = method.__name__
    operation.__doc__ = method.__doc__
    return operation


class BlockingEngine:
    """A :class:`~conduit.backends.base.Backend` whose methods are offered as operations.

    Args:
        backend: the engine, written as plain methods.
        executor: where an async runtime runs them (``None``: inline, for
            work that never blocks).
    """

    def __init__(self, backend: Any, executor: Executor | None = None) -> None:
        self.backend = backend
        self.executor = executor
        self.scheme: str = backend.scheme

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.backend, name)
        if name not in OPERATIONS:
            return found
        operation = _operation(found, self.executor)
        self.__dict__[name] = operation
        return operation

    def __repr__(self) -> str:
        return f"<BlockingEngine {self.backend!r}>"
