"""The contract test kit: the tests every storage engine must pass, unchanged.

Conduit's engines (memory, SQLite, PostgreSQL) all prove themselves with this
one suite, and so does yours. It pins what users rely on: what ``push``
returns, expected versions, atomic batches, idempotent retries, reading a
stream and the global log page by page, listeners, and the promise that data
either comes back exactly as it was given or is refused with
:class:`~conduit.errors.InvalidEvent` before anything is written.

How to use it, in your engine's test suite:

1. In ``conftest.py``, define two fixtures::

       import pytest
       from conduit import EventStore

       @pytest.fixture
       def make_store(tmp_path):
           # A zero-argument factory: every call returns a NEW EventStore over
           # the SAME storage (the same file, database or schema). The
           # concurrency tests call it once per thread.
           opened = []

           def make():
               store = EventStore(MyBackend(tmp_path / "events"))
               opened.append(store)
               return store

           yield make
           for store in opened:
               store.close()

       @pytest.fixture
       def store(make_store):
           # A store with nothing in it.
           return make_store()

2. In a test module, import the kit::

       from conduit.testing.contract import *  # noqa: F403

   pytest collects every ``test_*`` function imported into the module.

The kit needs ``pytest`` and ``hypothesis``. It sets ``store.page_size`` on the
stores it is given, to read across page boundaries with few events, and it
never looks at the store's backend: an engine passes by behaving, not by
being of some type.
"""

import pytest

# The kit's asserts live in this package, not in the user's test files:
# ask pytest to rewrite them too, so that failures show the values compared.
pytest.register_assert_rewrite(
    "conduit.testing.contract",
    "conduit.testing.contract_append",
    "conduit.testing.contract_read",
    "conduit.testing.contract_input",
    "conduit.testing.contract_listeners",
    "conduit.testing.contract_concurrency",
    "conduit.testing.support",
)
