"""The contract kit, unchanged, against ``AsyncEventStore`` on every engine.

The kit is written against ``EventStore``; :mod:`conduit.testing.aio` makes each
async store look like one (its calls run on one event loop, concurrently when
the kit's threads call at once), so that the async face is held to every
behaviour the sync one is.
"""

from conduit.testing.contract import *  # noqa: F403

ENGINES = ["memory-async", "sqlite-async", "postgres-async"]
