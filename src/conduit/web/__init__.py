"""The event browser and its JSON API: a Starlette application over an
:class:`~conduit.AsyncEventStore`.

``create_app(store)`` returns the ASGI application that ``conduit serve``
runs with uvicorn. It is a thin client of the store's public API: every page
and API call is a coroutine that reads and writes only through the async
store (an :class:`~conduit.EventStore` given instead is served through an
async store over the same storage, see :mod:`conduit.web.stores`).
"""

from conduit.web.app import create_app

__all__ = ["create_app"]
