"""Every engine (memory, sqlite, postgres) passes the contract kit, unchanged."""

import inspect

from conduit.testing import (
    contract,
    contract_append,
    contract_concurrency,
    contract_input,
    contract_listeners,
    contract_read,
)
from conduit.testing.contract import *  # noqa: F403

KIT_MODULES = [
    contract_append,
    contract_concurrency,
    contract_input,
    contract_listeners,
    contract_read,
]


def test_the_kit_exports_every_test_it_defines() -> None:
    defined = {
        name
        for module in KIT_MODULES
        for name, value in vars(module).items()
        if name.startswith("test_") and inspect.isfunction(value)
    }
    assert sorted(contract.__all__) == sorted(defined)
