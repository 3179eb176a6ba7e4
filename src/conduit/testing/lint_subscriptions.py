"""The lint of durable subscriptions' storage: checkpoints and parked events.

::

    from conduit.testing.lint_subscriptions import *  # noqa: F403

For an engine's ``load_checkpoint``, ``save_checkpoint`` (compare-and-set),
``checkpoints``, ``park``, ``parked``, ``request_retry`` and ``unpark``.
Needs the ``store`` and ``make_store`` fixtures (see :mod:`conduit.testing`).
"""

from conduit.testing import contract_checkpoints, contract_parking
from conduit.testing.contract_checkpoints import *  # noqa: F403
from conduit.testing.contract_parking import *  # noqa: F403

MODULES = [contract_checkpoints, contract_parking]
"""The kit's modules this lint gathers."""

__all__ = [name for module in MODULES for name in module.__all__]
