"""The log's lint: appending, reading, the global log, listeners, and bad input.

::

    from conduit.testing.lint_log import *  # noqa: F403

For an engine's ``append``, ``read_stream``, ``read_all``, ``stream_version``,
``streams``, ``head_position``, ``count_after``, ``first_position_since``,
``read_event``, ``rewrite_events``, ``append_request`` (several streams,
conditions) and ``read_query`` (tags). Needs the ``store`` and
``make_store`` fixtures (see :mod:`conduit.testing`).
"""

from conduit.testing import (
    contract_append,
    contract_concurrency,
    contract_conditions,
    contract_input,
    contract_listeners,
    contract_log,
    contract_multistream,
    contract_read,
    contract_tags,
)
from conduit.testing.contract_append import *  # noqa: F403
from conduit.testing.contract_concurrency import *  # noqa: F403
from conduit.testing.contract_conditions import *  # noqa: F403
from conduit.testing.contract_input import *  # noqa: F403
from conduit.testing.contract_listeners import *  # noqa: F403
from conduit.testing.contract_log import *  # noqa: F403
from conduit.testing.contract_multistream import *  # noqa: F403
from conduit.testing.contract_read import *  # noqa: F403
from conduit.testing.contract_tags import *  # noqa: F403

MODULES = [
    contract_append,
    contract_concurrency,
    contract_conditions,
    contract_input,
    contract_listeners,
    contract_log,
    contract_multistream,
    contract_read,
    contract_tags,
]
"""The kit's modules this lint gathers."""

__all__ = [name for module in MODULES for name in module.__all__]
