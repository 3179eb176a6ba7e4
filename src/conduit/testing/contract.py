"""The whole contract suite, every lint of :mod:`conduit.testing`, to import into an
engine's test module.

::

    from conduit.testing.contract import *  # noqa: F403

The tests need two fixtures from the importing suite's conftest: ``store``
(an empty EventStore) and ``make_store`` (a zero-argument factory of new
EventStores over the same storage); see :mod:`conduit.testing`.
"""

from conduit.testing import (
    lint_leases,
    lint_lifecycle,
    lint_log,
    lint_personal,
    lint_snapshots,
    lint_subscriptions,
)
from conduit.testing.lint_leases import *  # noqa: F403
from conduit.testing.lint_lifecycle import *  # noqa: F403
from conduit.testing.lint_log import *  # noqa: F403
from conduit.testing.lint_personal import *  # noqa: F403
from conduit.testing.lint_snapshots import *  # noqa: F403
from conduit.testing.lint_subscriptions import *  # noqa: F403

LINTS = [lint_log, lint_subscriptions, lint_leases, lint_snapshots, lint_personal, lint_lifecycle]
"""One lint per role of the Backend protocol."""

__all__ = [name for lint in LINTS for name in lint.__all__]
