"""The whole contract suite, to import into an engine's test module.

::

    from conduit.testing.contract import *  # noqa: F403

The tests need two fixtures from the importing suite's conftest: ``store``
(an empty EventStore) and ``make_store`` (a zero-argument factory of new
EventStores over the same storage); see :mod:`conduit.testing`.
"""

from conduit.testing import (
    contract_append,
    contract_concurrency,
    contract_input,
    contract_listeners,
    contract_read,
)
from conduit.testing.contract_append import *  # noqa: F403
from conduit.testing.contract_concurrency import *  # noqa: F403
from conduit.testing.contract_input import *  # noqa: F403
from conduit.testing.contract_listeners import *  # noqa: F403
from conduit.testing.contract_read import *  # noqa: F403

__all__ = [
    *contract_append.__all__,
    *contract_concurrency.__all__,
    *contract_input.__all__,
    *contract_listeners.__all__,
    *contract_read.__all__,
]
