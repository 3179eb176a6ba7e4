"""Every ```python block of README.md and docs/*.md runs: one test per file.

Conventions for whoever writes docs:

- A file's blocks run in order, in one namespace (as one module), in a fresh
  temporary working directory: a later block may use what an earlier one made.
- A block whose fence is preceded by ``<!-- no-test -->`` (blank lines aside)
  is not run. Use it sparingly: an untested sample is a sample that rots.
- PostgreSQL samples write the server as ``postgresql://app@localhost/app``
  (:data:`POSTGRES_PLACEHOLDER`), optionally followed by a query string
  (``?schema=billing``). The test replaces it with a database of its own on the
  test server (``CONDUIT_TEST_POSTGRES_URL``, see ``tests/conftest.py``), made
  for this file and dropped afterwards; such files' tests are marked
  ``postgres``. Any other ``postgresql://`` URL in a tested block fails the test.
- Stores left open at the top level of the namespace are closed afterwards.
"""

from __future__ import annotations

import os
import re
import sys
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from conduit import EventStore

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_PLACEHOLDER = "postgresql://app@localhost/app"
NO_TEST = "<!-- no-test -->"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^`]*)$")
_PLACEHOLDER = re.compile(re.escape(POSTGRES_PLACEHOLDER) + r"(?:(?P<query>\?)|(?![\w/.:@-]))")


@dataclass(frozen=True)
class Block:
    """A fenced ```python block: where it starts and its code."""

    line: int  # the first line of its code, counted from 1
    code: str
    skipped: bool


def python_blocks(text: str) -> list[Block]:
    """The ```python (or ```py) blocks of a Markdown text, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        indent, info = fence["indent"], fence["info"].strip().split(" ")[0]
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"line {index + 1}: a ``` fence is never closed")
        if info in ("python", "py"):
            body = [
                line[len(indent) :] if line.startswith(indent) else line
                for line in lines[index + 1 : end]
            ]
            before = [line.strip() for line in lines[:index] if line.strip()]
            skipped = bool(before) and before[-1] == NO_TEST
            blocks.append(Block(index + 2, "\n".join(body) + "\n", skipped))
        index = end + 1
    return blocks


def doc_files() -> list[Path]:
    """README.md and every docs/*.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def uses_postgres(path: Path) -> bool:
    """Whether a file's tested samples name the PostgreSQL placeholder."""
    return any(
        POSTGRES_PLACEHOLDER in block.code
        for block in python_blocks(path.read_text())
        if not block.skipped
    )


def _params() -> Iterator[object]:
    for path in doc_files():
        if path.exists():
            marks = [pytest.mark.postgres] if uses_postgres(path) else []
            yield pytest.param(path, id=str(path.relative_to(ROOT)), marks=marks)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture
def docs_postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of its own for one docs file, on the test server; dropped afterwards."""
    import psycopg

    server: str = request.getfixturevalue("postgres_url")
    name = f"conduit_docs_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(server, name)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def substitute_postgres(code: str, url: str) -> str:
    """Put the test server's URL where a sample has the placeholder."""

    def replace(match: re.Match[str]) -> str:
        if match["query"]:
            return url + ("&" if "?" in url else "?")
        return url

    return _PLACEHOLDER.sub(replace, code)


def run_blocks(path: Path, blocks: list[Block], postgres_url: str | None) -> None:
    """Run a file's tested blocks in order, in one module namespace."""
    module = types.ModuleType(f"docs_{path.stem.replace('-', '_')}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    try:
        for block in blocks:
            if block.skipped:
                continue
            code = block.code
            stray = re.search(r"postgres(ql)?://\S*", _PLACEHOLDER.sub("", code))
            if stray:
                pytest.fail(
                    f"{path.name}, line {block.line}: {stray.group()} is not the placeholder "
                    f"{POSTGRES_PLACEHOLDER}; use it, or mark the block {NO_TEST}",
                    pytrace=False,
                )
            if postgres_url is not None:
                code = substitute_postgres(code, postgres_url)
            # Leading newlines make tracebacks point at the Markdown file's lines.
            compiled = compile("\n" * (block.line - 1) + code, str(path), "exec")
            exec(compiled, module.__dict__)
    finally:
        del sys.modules[module.__name__]
        for value in list(vars(module).values()):
            if isinstance(value, EventStore):
                value.close()


@pytest.mark.parametrize("path", list(_params()))
def test_code_samples_run(
    path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    blocks = python_blocks(path.read_text())
    postgres_url = request.getfixturevalue("docs_postgres_url") if uses_postgres(path) else None
    monkeypatch.chdir(tmp_path)
    run_blocks(path, blocks, postgres_url)


# -- the extractor itself ----------------------------------------------------

SAMPLE = f"""\
# Title

```python
x = 1
```

{NO_TEST}

```python
raise AssertionError("skipped on purpose")
```

```bash
echo not python
```

1. In a list:

   ```py
   x += 1
   ```
"""


def test_extractor_finds_python_blocks_and_their_lines() -> None:
    blocks = python_blocks(SAMPLE)
    assert [(b.line, b.code, b.skipped) for b in blocks] == [
        (4, "x = 1\n", False),
        (10, 'raise AssertionError("skipped on purpose")\n', True),
        (20, "x += 1\n", False),
    ]


def test_blocks_share_one_namespace_and_skip_no_test(tmp_path: Path) -> None:
    path = tmp_path / "sample.md"
    path.write_text(SAMPLE + "\n```python\nassert x == 2\n```\n")
    run_blocks(path, python_blocks(path.read_text()), None)


def test_a_failing_block_fails_with_the_markdown_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.md"
    path.write_text("Intro\n\n```python\nvalue = 1\nassert value == 2\n```\n")
    with pytest.raises(AssertionError) as failure:
        run_blocks(path, python_blocks(path.read_text()), None)
    assert failure.traceback[-1].lineno + 1 == 5


def test_placeholder_is_replaced_and_its_query_kept() -> None:
    code = (
        f'a = "{POSTGRES_PLACEHOLDER}"\n'
        f'b = "{POSTGRES_PLACEHOLDER}?schema=billing"\n'
        f'c = "{POSTGRES_PLACEHOLDER}x"\n'
    )
    assert substitute_postgres(code, "postgresql://t@h/db?sslmode=disable") == (
        'a = "postgresql://t@h/db?sslmode=disable"\n'
        'b = "postgresql://t@h/db?sslmode=disable&schema=billing"\n'
        f'c = "{POSTGRES_PLACEHOLDER}x"\n'
    )


def test_a_url_other_than_the_placeholder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pg.md"
    path.write_text('```python\nurl = "postgresql://me@prod/app"\n```\n')
    with pytest.raises(pytest.fail.Exception, match="not the placeholder"):
        run_blocks(path, python_blocks(path.read_text()), None)
