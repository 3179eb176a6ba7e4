"""Delivering events to listeners and projections."""

from conduit.subscriptions.dispatch import deliver, handlers_for

__all__ = ["deliver", "handlers_for"]
