"""Storage engines behind one protocol (:class:`conduit.backends.base.Backend`)."""

from conduit.backends.base import Backend
from conduit.backends.url import open_backend

__all__ = ["Backend", "open_backend"]
