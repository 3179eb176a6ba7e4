"""An engine bound to a runtime: its operations called like plain methods.

An engine's methods return operations (:mod:`conduit.core.effects`). Bound to
a :class:`~conduit.core.effects.SyncRuntime`, ``bound.append(...)`` runs the
operation and returns its result (``EventStore.backend``); bound to an
:class:`~conduit.core.effects.AsyncRuntime`, it returns a coroutine
(``AsyncEventStore.backend``). The names that are operations are those of
the engine roles (:data:`OPERATIONS`); anything else passes through.
"""

from __future__ import annotations

from typing import Any

from conduit.core.effects import AsyncRuntime, SyncRuntime

__all__ = ["OPERATIONS", "AsyncBound", "Bound", "SyncBound"]

OPERATIONS = frozenset(
    {
        # the log
        "setup",
        "append",
        "append_group",
        "append_request",
        "read_query",
        "read_stream",
        "read_all",
        "stream_version",
        "streams",
        "stream_totals",
        "head_position",
        "count_after",
        "first_position_since",
        "read_event",
        "rewrite_events",
        # deletion, truncation, limits, scavenging
        "delete_stream",
        "truncate_stream",
        "set_stream_metadata",
        "stream_metadata",
        "tombstones",
        "scavenge_batch",
        # snapshots
        "save_snapshot",
        "load_snapshot",
        # checkpoints and parked events
        "load_checkpoint",
        "save_checkpoint",
        "checkpoints",
        "save_subscription_state",
        "subscription_states",
        "park",
        "parked",
        "request_retry",
        "unpark",
        # leases
        "try_lease",
        "release_lease",
        "leases_held",
        # subjects' keys (personal data)
        "subject_keys",
        "add_subject_keys",
        "keep_subject_keys",
        "forget_subject",
        "subject_key_page",
    }
)
"""The engine methods that return operations."""


class Bound:
    """An engine whose operations run on a runtime, called as methods: plain ones on a
    sync runtime, coroutines on an async one (``runtime.run`` is either)."""

    def __init__(self, engine: Any, runtime: Any) -> None:
        self.engine = engine
        self.runtime = runtime

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.engine, name)
        if name not in OPERATIONS:
            return found
        run = self.runtime.run

        def call(*args: Any, **kwargs: Any) -> Any:
            return run(found(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = found.__doc__
        self.__dict__[name] = call  # found once
        return call

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.engine!r}>"


class SyncBound(Bound):
    """An engine bound to a :class:`~conduit.core.effects.SyncRuntime` (``EventStore``)."""

    runtime: SyncRuntime


class AsyncBound(Bound):
    """An engine bound to an :class:`~conduit.core.effects.AsyncRuntime`
    (``AsyncEventStore``): its operations are coroutines."""

    runtime: AsyncRuntime
