"""The lint of streams over the years: deletion, truncation, limits, scavenging.

::

    from conduit.testing.lint_lifecycle import *  # noqa: F403

For an engine's ``delete_stream``, ``truncate_stream``, ``set_stream_metadata``,
``stream_metadata``, ``tombstones`` and ``scavenge_batch``. Needs the ``store``
and ``make_store`` fixtures (see :mod:`conduit.testing`).
"""

from conduit.testing import contract_lifecycle, contract_scavenging
from conduit.testing.contract_lifecycle import *  # noqa: F403
from conduit.testing.contract_scavenging import *  # noqa: F403

MODULES = [contract_lifecycle, contract_scavenging]
"""The kit's modules this lint gathers."""

__all__ = [name for module in MODULES for name in module.__all__]
