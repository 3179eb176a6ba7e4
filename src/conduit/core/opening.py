"""Opening a store: its engine bound to the face's runtime, and its group of appends.

Both faces open stores the same way; they differ only in the runtime the
engine's operations run on (:class:`~conduit.core.effects.SyncRuntime` or
:class:`~conduit.core.effects.AsyncRuntime`) and in how an engine written as
blocking methods is reached (in the calling thread, or on a thread of its own).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from conduit.backends.blocking import BlockingEngine
from conduit.core.bound import AsyncBound, SyncBound
from conduit.core.effects import AsyncRuntime, SyncRuntime
from conduit.core.group import Group, async_join_handler, sync_join_handler
from conduit.errors import ConfigurationError, InvalidArgument
from conduit.typed import TypeRegistry

__all__ = ["Opened", "check_store_options", "open_async", "open_sync"]


def check_store_options(
    *,
    page_size: object,
    snapshot_every: object,
    types: TypeRegistry | Iterable[type] | None,
    group_commit: object,
) -> TypeRegistry | None:
    """Refuse options of the store itself that cannot work; returns its type registry.

    Raises:
        InvalidArgument: naming the option.
    """
    if type(page_size) is not int or page_size < 1:
        raise InvalidArgument("page_size must be at least 1", field="page_size")
    if snapshot_every is not None and (type(snapshot_every) is not int or snapshot_every < 1):
        raise InvalidArgument("snapshot_every must be None or 1 or more", field="snapshot_every")
    if group_commit is not None and type(group_commit) is not bool:
        raise InvalidArgument("group_commit must be True, False or None", field="group_commit")
    if types is None or isinstance(types, TypeRegistry):
        return types
    return TypeRegistry(types)


@dataclass(frozen=True, slots=True)
class Opened:
    """An engine as one face of a store holds it."""

    backend: Any
    """What ``store.backend`` gives: the engine's calls as plain methods (sync face)
    or coroutines (async face)."""
    engine: Any
    """The engine whose methods return operations."""
    runtime: Any
    """The runtime those operations run on (with group commit's effect)."""
    group: Group[Any] | None
    owns: bool
    """Whether the store opened the engine (and closes it)."""


def _refuse_options(options: dict[str, Any]) -> None:
    if options:
        raise ConfigurationError(
            f"engine options ({', '.join(sorted(options))}) are given to the engine "
            "when the store opens it from a URL; configure the backend object you "
            "pass instead"
        )


def _group(engine: Any, group_commit: bool | None, *, inflight: int) -> Group[Any] | None:
    """Group commit where it shares commits: SQLite (one fsync for many appends) and
    PostgreSQL (one commit); not memory, which has none to share."""
    scheme = getattr(engine, "scheme", "")
    if group_commit is False or (group_commit is None and scheme not in ("sqlite", "postgresql")):
        return None
    return Group(engine.append_group, max_inflight=inflight)


def _inflight(backend: Any) -> int:
    """How many combined transactions may run at once: one writer at a time on SQLite;
    on PostgreSQL two (one from a pool of 2 or 3), so that reads still find
    connections. Two, not more: while one combined transaction is in flight the next
    forms, and a third only splits the waiting pushes into smaller transactions, each
    with its own round trip and commit (64 tasks on a pool of 8, docs/benchmarks.md:
    about 14,700 pushes/s with 4 in flight, 15,100-15,600 with 1, 15,900-16,200 with 2)."""
    config = getattr(getattr(backend, "engine", None), "config", None)
    pool_size = getattr(config, "pool_size", 2)
    return max(1, min(2, int(pool_size) // 2))


def open_sync(url: Any, options: dict[str, Any], group_commit: bool | None) -> Opened:
    """The engine of ``EventStore(url, **options)``.

    Raises:
        ConfigurationError: as :func:`conduit.backends.url.open_backend`, or options
            given with a backend object.
    """
    from conduit.backends.base import Backend
    from conduit.backends.url import open_backend

    if isinstance(url, Backend):
        _refuse_options(options)
        backend, owns = url, False
    else:
        backend, owns = open_backend(url, **options), True
    if isinstance(backend, SyncBound):
        engine, runtime = backend.engine, backend.runtime
    else:
        engine, runtime = BlockingEngine(backend), SyncRuntime()
    group = _group(engine, group_commit, inflight=_inflight(backend))
    if group is not None:
        from conduit.core.group import Join

        runtime = runtime.extended({})
        runtime = runtime.extended({Join: sync_join_handler(runtime)})
    return Opened(backend, engine, runtime, group, owns)


def open_async(
    url: Any, options: dict[str, Any], group_commit: bool | None, executor: Executor | None
) -> Opened:
    """The engine of ``AsyncEventStore(url, **options)``.

    Engines written as blocking methods (memory, SQLite) run on ``executor`` (SQLite's
    own thread), or inline for the memory engine.

    Raises:
        ConfigurationError: as :func:`open_sync`.
    """
    from conduit.backends.base import Backend
    from conduit.backends.url import open_async_backend

    if isinstance(url, Backend | AsyncBound):
        _refuse_options(options)
        backend, owns = url, False
    else:
        backend, owns = open_async_backend(url, options, executor), True
    if isinstance(backend, AsyncBound):
        engine, runtime = backend.engine, backend.runtime
        bound = backend
    else:
        scheme = getattr(backend, "scheme", "")
        engine = BlockingEngine(backend, None if scheme == "memory" else executor)
        runtime = AsyncRuntime()
        bound = AsyncBound(engine, runtime)
    group = _group(engine, group_commit, inflight=_inflight(backend))
    if group is not None:
        from conduit.core.group import Join

        runtime = runtime.extended({})
        runtime = runtime.extended({Join: async_join_handler(runtime)})
        bound = AsyncBound(engine, runtime) if not isinstance(backend, AsyncBound) else backend
    return Opened(bound, engine, runtime, group, owns)
