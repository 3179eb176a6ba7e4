"""The extras of ``pip install 'conduit-eventstore[…]'``, and the errors when one is missing.

Building a fresh environment per test is too slow: a missing package is
simulated in a subprocess by ``sys.modules[name] = None``, which makes its
import fail as if it were not installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from conduit.errors import ConfigurationError, MissingDependency
from conduit.importing import EXTRAS, needs_extra

ROOT = Path(__file__).resolve().parent.parent
PROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OPTIONAL = {
    "cryptography",
    "psycopg",
    "psycopg_pool",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "jinja2",
    "typer",
    "rich",
    "nats",
    "redis",
    "rstream",
}
# where a module's package is named otherwise
DISTRIBUTIONS = {"psycopg_pool": "psycopg-pool", "nats": "nats-py"}


def requirement_names(requirements: Sequence[str]) -> set[str]:
    """``psycopg[binary]>=3.2`` -> ``psycopg``, normalized as pip compares them."""
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert match, requirement
        names.add(re.sub(r"[-_.]+", "-", match.group()).lower())
    return names


def extra(name: str) -> list[str]:
    return list(PROJECT["optional-dependencies"][name])


def python(
    code: str, *, missing: Sequence[str] = (), cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which the ``missing`` modules cannot be imported."""
    prelude = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in missing)
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def conduit(*args: str, missing: Sequence[str] = (), cwd: Path | None = None) -> Any:
    """Run the ``conduit`` console script's entry point with the ``missing`` modules."""
    code = f"sys.argv = ['conduit', *{list(args)!r}]\nfrom conduit.cli import main\nmain()\n"
    return python(code, missing=missing, cwd=cwd)


# -- pyproject.toml ----------------------------------------------------------


def test_the_core_install_needs_only_orjson() -> None:
    assert requirement_names(PROJECT["dependencies"]) == {"orjson"}


@pytest.mark.parametrize(
    ("name", "packages"),
    [
        ("postgres", {"psycopg", "psycopg-pool"}),
        ("sql", {"sqlalchemy", "aiosqlite"}),
        ("web", {"starlette", "uvicorn", "jinja2"}),
        ("cli", {"typer", "rich"}),
    ],
)
def test_each_extra_brings_its_packages(name: str, packages: set[str]) -> None:
    assert requirement_names(extra(name)) == packages


def test_postgres_extra_brings_the_binary_driver() -> None:
    assert any(r.startswith("psycopg[binary]") for r in extra("postgres"))


def test_all_is_every_extra_and_dev_includes_all() -> None:
    assert extra("all") == ["conduit-eventstore[postgres,sql,web,cli,personal]"]
    assert "conduit-eventstore[all]" in extra("dev")


def test_the_makefile_installs_every_extra_the_tests_need() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet -e '.[all,dev]'" in makefile


def test_every_optional_module_is_named_with_the_extra_that_installs_it() -> None:
    assert set(EXTRAS) == OPTIONAL
    for module, name in EXTRAS.items():
        assert DISTRIBUTIONS.get(module, module) in requirement_names(extra(name)), module


# -- the errors --------------------------------------------------------------


def test_missing_dependency_is_a_configuration_error_and_an_import_error() -> None:
    error = MissingDependency("the PostgreSQL engine", "psycopg", "postgres")
    assert isinstance(error, ConfigurationError)
    assert isinstance(error, ImportError)
    assert (error.module, error.extra, error.name) == ("psycopg", "postgres", "psycopg")
    assert "pip install 'conduit-eventstore[postgres]'" in str(error)


def test_needs_extra_lets_other_import_errors_through() -> None:
    with pytest.raises(ModuleNotFoundError) as caught, needs_extra("a test"):
        import conduit_no_such_module  # type: ignore[import-not-found]  # noqa: F401
    assert not isinstance(caught.value, MissingDependency)


def test_memory_and_sqlite_stores_work_with_the_core_alone(tmp_path: Path) -> None:
    code = f"""
from conduit import EventStore
for url in ["memory://", "sqlite:///{tmp_path / "events.db"}"]:
    with EventStore(url) as store:
        store.setup()
        store.push("person_registered", "p-1", {{"first_name": "Kris"}})
        assert [e.name for e in store.read_all()] == ["person_registered"]
loaded = [m for m, module in sys.modules.items() if module is not None]
print(sorted(m for m in loaded if m.partition(".")[0] in {sorted(OPTIONAL)!r}))
"""
    result = python(code, missing=sorted(OPTIONAL))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["psycopg", "psycopg_pool"])
def test_a_postgres_store_without_psycopg_names_the_postgres_extra(module: str) -> None:
    code = """
from conduit import EventStore
from conduit.errors import MissingDependency
try:
    EventStore("postgresql://app:s3cret@db.example.com/app")
except MissingDependency as exc:
    assert isinstance(exc, ImportError)
    print(exc)
"""
    result = python(code, missing=[module])
    assert result.returncode == 0, result.stderr
    assert f"needs {module}" in result.stdout
    assert "pip install 'conduit-eventstore[postgres]'" in result.stdout


def test_projections_without_sqlalchemy_name_the_sql_extra() -> None:
    code = """
try:
    from conduit.projections import SQLProjection
except ImportError as exc:
    print(type(exc).__name__, exc)
"""
    result = python(code, missing=["sqlalchemy"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("MissingDependency ")
    assert "pip install 'conduit-eventstore[sql]'" in result.stdout


@pytest.mark.parametrize("module", ["typer", "rich"])
def test_the_command_without_the_cli_extra_says_what_to_install(module: str) -> None:
    result = conduit("--help", missing=[module])
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: the conduit command needs {module}, which is not installed: "
        "pip install 'conduit-eventstore[cli]'\n"
    )


@pytest.mark.parametrize("module", ["starlette", "uvicorn", "jinja2"])
def test_serve_without_the_web_extra_says_what_to_install(module: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'events.db'}"
    result = conduit("--store", store, "serve", missing=[module])
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1
    assert f"conduit serve needs {module}" in result.stderr
    assert "pip install 'conduit-eventstore[web]'" in result.stderr


def test_demo_without_sqlalchemy_names_the_sql_extra(tmp_path: Path) -> None:
    result = conduit("demo", "--path", str(tmp_path / "demo.db"), missing=["sqlalchemy"])
    assert result.returncode == 1, result.stderr
    assert "conduit demo needs sqlalchemy" in result.stderr
    assert "pip install 'conduit-eventstore[sql]'" in result.stderr
    assert not (tmp_path / "demo.db").exists()


def test_store_commands_work_without_the_sql_web_and_postgres_extras(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'events.db'}"
    missing = ["sqlalchemy", "starlette", "uvicorn", "jinja2", "psycopg", "psycopg_pool"]
    for args in (
        ["init", store],
        ["--store", store, "push", "person_registered", "p-1", '{"first_name": "Kris"}'],
        ["--store", store, "get", "p-1"],
        ["--store", store, "streams"],
        ["--store", store, "projections"],
    ):
        result = conduit(*args, missing=missing)
        assert result.returncode == 0, (args, result.stderr)
    result = conduit(
        "--store", store, "projections", "rebuild", "people", "--app", "x:y", missing=missing
    )
    assert result.returncode == 1
    assert "pip install 'conduit-eventstore[sql]'" in result.stderr


def test_importing_conduit_leaves_pydantic_unimported() -> None:
    # pydantic costs a tenth of a second to import; models are recognised once
    # the application has imported it (its models are made of it).
    code = (
        "import sys, conduit\n"
        "assert 'pydantic' not in sys.modules, 'conduit imported pydantic'\n"
        "import pydantic\n"
        "class Registered(pydantic.BaseModel):\n"
        "    name: str\n"
        "store = conduit.EventStore(types=[Registered])\n"
        "event = store.push(Registered(name='Kris'), 's')\n"
        "assert store.get('s')[0].payload == Registered(name='Kris')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
