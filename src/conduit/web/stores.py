"""The store an application serves: an :class:`~conduit.AsyncEventStore`, every route
awaiting it.

``create_app`` takes an ``AsyncEventStore``, or an ``EventStore`` for
applications built around one. An ``EventStore`` is served through an
``AsyncEventStore`` of the application's own over the same storage:

- memory and SQLite (and any engine given as a backend object): over the
  same backend object, whose calls run on the async store's own thread
  (inline for memory);
- PostgreSQL: over the same engine (:meth:`AsyncPostgresBackend.sharing`),
  its statements on an async connection pool of its own, so that reads
  through the application still wait for the ``EventStore``'s own pushes.

The application opens that store in its lifespan and closes it at shutdown;
the ``EventStore`` stays the caller's. Subscriptions stay with the store they
were made on: a retry requested through the application is picked up by the
subscription's driver when it next catches up (an inline subscription of the
``EventStore``: at that store's next push).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from conduit.async_store import AsyncEventStore
from conduit.errors import ConfigurationError, InvalidArgument
from conduit.store import EventStore

__all__ = ["ServedStore", "store_of"]


class ServedStore:
    """The async store an application serves, and what the application opened for it.

    Args:
        store: what ``create_app`` was given.

    Raises:
        InvalidArgument: ``store`` is neither an ``EventStore`` nor an ``AsyncEventStore``.
    """

    def __init__(self, store: EventStore | AsyncEventStore) -> None:
        self._backend: Any = None  # an async engine the application made, and closes
        if isinstance(store, AsyncEventStore):
            self.store = store
            self.made = False
        elif isinstance(store, EventStore):
            self.store, self._backend = _async_face(store)
            self.made = True
        else:
            raise InvalidArgument(
                f"store: an EventStore or an AsyncEventStore, not {type(store).__name__}",
                field="store",
            )
        self.opened = False

    @property
    def needs_lifespan(self) -> bool:
        """Whether the store only works once the lifespan opened it: an async connection
        pool the application made belongs to the event loop that opened it."""
        return self._backend is not None

    async def open(self) -> None:
        """Open the store (its connection pool) in the server's event loop; safe to repeat."""
        await self.store.__aenter__()
        self.opened = True

    async def close(self) -> None:
        """Close what the application made; a store it was given stays open."""
        if self.made:
            await self.store.close()
        if self._backend is not None:
            await self._backend.close()


def _async_face(store: EventStore) -> tuple[AsyncEventStore, Any]:
    backend: Any = store.backend
    options: dict[str, Any] = {
        "page_size": store.page_size,
        "types": store.types,
        "snapshot_every": store.snapshot_every,
    }
    if getattr(backend, "scheme", None) == "postgresql":
        from conduit.backends.postgres.aio import AsyncPostgresBackend
        from conduit.backends.postgres.sync import PostgresBackend

        if isinstance(backend, PostgresBackend):
            shared = AsyncPostgresBackend.sharing(backend.engine)
            return AsyncEventStore(shared, **options), shared
    return AsyncEventStore(backend, **options), None


def store_of(request: Request) -> AsyncEventStore:
    """The store the application serves.

    Raises:
        ConfigurationError: the application serves an ``EventStore`` on PostgreSQL
            and its lifespan did not run (``with TestClient(app)``).
    """
    served: ServedStore = request.app.state.served
    if served.needs_lifespan and not served.opened:
        raise ConfigurationError(
            "the application's lifespan has not run, and its async connection pool "
            "belongs to the event loop that opens it: serve the application with "
            "its lifespan (uvicorn does; use `with TestClient(app) as client:`)"
        )
    return served.store
