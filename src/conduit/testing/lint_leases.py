"""The lint of leases, which elect the one driver of a subscription.

::

    from conduit.testing.lint_leases import *  # noqa: F403

For an engine's ``try_lease``, ``release_lease`` and ``leases_held``. An engine whose leases
end with the holder's session rather than after their ttl declares
``leases_expire = False`` on its backend class; see
:mod:`conduit.testing.contract_leases`. Needs the ``store`` and
``make_store`` fixtures (see :mod:`conduit.testing`).
"""

from conduit.testing import contract_leases
from conduit.testing.contract_leases import *  # noqa: F403

MODULES = [contract_leases]
"""The kit's modules this lint gathers."""

__all__ = [name for module in MODULES for name in module.__all__]
