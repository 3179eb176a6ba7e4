"""The contract test kit: the tests every storage engine must pass, unchanged.

Conduit's engines (memory, SQLite, PostgreSQL) all prove themselves with this
one suite, and so does yours. It is one lint per role of the
:class:`~conduit.backends.base.Backend` protocol, each a module of small
tests named after the one behaviour they pin:

- :mod:`conduit.testing.lint_log` — the log: ``append``, ``read_stream``,
  ``read_all``, ``stream_version``, ``streams``, ``head_position``,
  ``count_after``, ``first_position_since``, ``read_event`` and
  ``rewrite_events``. What ``push`` returns, expected versions, atomic
  batches, idempotent retries, paging, listeners, concurrent writers, and
  data that comes back exactly or is refused with
  :class:`~conduit.errors.InvalidEvent` before anything is written.
- :mod:`conduit.testing.lint_subscriptions` — checkpoints
  (``load_checkpoint``, ``save_checkpoint`` and its compare-and-set,
  ``checkpoints``) and parked events (``park``, ``parked``,
  ``request_retry``, ``unpark``).
- :mod:`conduit.testing.lint_leases` — ``try_lease``, ``release_lease`` and
  ``leases_held``.
- :mod:`conduit.testing.lint_snapshots` — ``save_snapshot`` and
  ``load_snapshot``.
- :mod:`conduit.testing.lint_personal` — subjects' keys (``subject_keys``,
  ``add_subject_keys``, ``keep_subject_keys``, ``forget_subject``,
  ``subject_key_page``): personal
  data stored sealed, read back, and forgotten.
- :mod:`conduit.testing.lint_lifecycle` — ``delete_stream``,
  ``truncate_stream``, ``set_stream_metadata``, ``stream_metadata``,
  ``tombstones`` and ``scavenge_batch``: soft and hard deletes, tombstones,
  limits, the audit stream, scavenging while writers append and a reader
  follows the log, positions never given twice.
- :mod:`conduit.testing.contract` — all six.

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
               store.backend.close()  # a backend object passed in is the caller's to close

       @pytest.fixture
       def store(make_store):
           # A store with nothing in it.
           return make_store()

2. In a test module, import the whole kit, or the lints of the roles your
   engine plays (an engine that keeps no snapshots leaves out
   ``lint_snapshots``; the store then must not be asked for snapshots)::

       from conduit.testing.contract import *  # noqa: F403

       # or, role by role:
       from conduit.testing.lint_log import *  # noqa: F403
       from conduit.testing.lint_subscriptions import *  # noqa: F403
       from conduit.testing.lint_leases import *  # noqa: F403

   pytest collects every ``test_*`` function imported into the module.

3. Declare what your engine's leases do when their holder dies, as a class
   attribute of its backend: nothing (or ``leases_expire = True``) when a
   lease not renewed within its ``ttl`` is free for another owner, as on
   SQLite; ``leases_expire = False`` when leases ignore ``ttl`` and end with
   the holder's session, as PostgreSQL's session advisory locks. The lease
   lints of the other kind are skipped, with that reason.

The kit needs ``pytest`` and ``hypothesis``. It sets ``store.page_size`` on the
stores it is given, to read across page boundaries with few events. The log's
lint works through the store, as users do; the other lints, and the log
methods the store does not reach, call ``store.backend`` directly. No lint
looks at the backend's type: an engine passes by behaving, not by being of
some type. Tests that need time wait for a condition with a deadline
(:mod:`conduit.testing.waits`), never for a fixed delay.
"""

import pytest

# The kit's asserts live in this package, not in the user's test files:
# ask pytest to rewrite them too, so that failures show the values compared.
pytest.register_assert_rewrite(
    "conduit.testing.contract",
    "conduit.testing.contract_append",
    "conduit.testing.contract_conditions",
    "conduit.testing.contract_multistream",
    "conduit.testing.contract_tags",
    "conduit.testing.contract_read",
    "conduit.testing.contract_input",
    "conduit.testing.contract_listeners",
    "conduit.testing.contract_concurrency",
    "conduit.testing.contract_log",
    "conduit.testing.contract_checkpoints",
    "conduit.testing.contract_parking",
    "conduit.testing.contract_leases",
    "conduit.testing.contract_snapshots",
    "conduit.testing.contract_forget",
    "conduit.testing.contract_lifecycle",
    "conduit.testing.contract_scavenging",
    "conduit.testing.lint_log",
    "conduit.testing.lint_subscriptions",
    "conduit.testing.lint_leases",
    "conduit.testing.lint_snapshots",
    "conduit.testing.lint_personal",
    "conduit.testing.lint_lifecycle",
    "conduit.testing.support",
    "conduit.testing.waits",
)
