"""The lint of snapshots: kept per stream and entity class, the newest winning.

::

    from conduit.testing.lint_snapshots import *  # noqa: F403

For an engine's ``save_snapshot`` and ``load_snapshot``. Needs the ``store``
fixture (see :mod:`conduit.testing`).
"""

from conduit.testing import contract_snapshots
from conduit.testing.contract_snapshots import *  # noqa: F403

MODULES = [contract_snapshots]
"""The kit's modules this lint gathers."""

__all__ = [name for module in MODULES for name in module.__all__]
