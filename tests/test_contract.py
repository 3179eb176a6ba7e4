"""Every engine (memory, sqlite, postgres) passes the contract kit, unchanged.

SQLite older than 3.35 runs the same kit in tests/test_sqlite_before_3_35.py.
"""

import importlib
import inspect
import pkgutil
from types import ModuleType

import conduit.testing
from conduit.testing import (
    contract,
    lint_leases,
    lint_lifecycle,
    lint_log,
    lint_personal,
    lint_snapshots,
    lint_subscriptions,
)
from conduit.testing.contract import *  # noqa: F403

LINTS = [lint_log, lint_subscriptions, lint_leases, lint_snapshots, lint_personal, lint_lifecycle]


def _tests_defined_in(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if name.startswith("test_")
        and inspect.isfunction(value)
        and value.__module__ == module.__name__
    }


def _kit_test_modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"conduit.testing.{info.name}")
        for info in pkgutil.iter_modules(conduit.testing.__path__)
        if info.name.startswith("contract_")
    ]


def test_the_kit_exports_every_test_it_defines() -> None:
    defined = {name for module in _kit_test_modules() for name in _tests_defined_in(module)}
    assert sorted(contract.__all__) == sorted(defined)


def test_each_kit_module_exports_exactly_the_tests_it_defines() -> None:
    for module in _kit_test_modules():
        assert sorted(module.__all__) == sorted(_tests_defined_in(module)), module.__name__


def test_every_kit_module_belongs_to_exactly_one_lint() -> None:
    gathered = [module for lint in LINTS for module in lint.MODULES]
    assert sorted(m.__name__ for m in gathered) == sorted(m.__name__ for m in _kit_test_modules())
    assert contract.LINTS == LINTS


def test_every_kit_module_has_its_asserts_rewritten() -> None:
    source = inspect.getsource(conduit.testing)
    for module in _kit_test_modules():
        assert f'"{module.__name__}"' in source, module.__name__
