"""Read models in a SQL database, kept by projections (SQLAlchemy 2).

A :class:`SQLProjection` declares its tables and its handlers; subscribed to
a store, it applies events in batches, each batch in one transaction of the
read-model database together with its checkpoint, so that every event's effect
happens exactly once, even across crashes. :func:`rebuild` rebuilds a read
model from the first event into fresh tables, swapped in once caught up;
:func:`replay_since` replays the events recorded since a point in time.
"""

from conduit.importing import needs_extra

with needs_extra("conduit.projections (SQL read models)"):
    from conduit.projections.rebuild import rebuild, replay_since
    from conduit.projections.sql import SQLProjection

__all__ = ["SQLProjection", "rebuild", "replay_since"]
