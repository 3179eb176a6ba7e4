"""The event browser and its JSON API: a Starlette application over an :class:`EventStore`.

``create_app(store)`` returns the ASGI application that ``conduit serve``
runs with uvicorn. It is a thin client of the store's public API: pages and
API calls read and write only through :class:`~conduit.store.EventStore`.
"""

from conduit.web.app import create_app

__all__ = ["create_app"]
