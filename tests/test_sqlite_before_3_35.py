"""The contract kit on SQLite older than 3.35, whose appends cannot use RETURNING.

Appends there read the stream's row and upsert it in two statements; the
engine picks that path by the SQLite version it runs on. Here it is forced.
"""

from conduit.testing.contract import *  # noqa: F403

ENGINES = ["sqlite-before-3.35"]
