"""Checking the options given to an engine, before it is opened. Free of I/O.

``EventStore(url, **options)`` passes its options to the engine the URL names;
a misspelt one (``synchronus="normal"``) must fail with a
:class:`~conduit.errors.ConfigurationError` that names it and the options the
engine knows, never with Python's bare ``TypeError``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from conduit.errors import ConfigurationError

__all__ = ["check_options", "parse_flag"]


def check_options(engine: type, options: Mapping[str, Any], *, skip: int = 0) -> None:
    """Refuse options that ``engine``'s constructor does not take.

    ``skip`` leading positional parameters (the path or URL) are not options.

    Raises:
        ConfigurationError: an unknown option, naming the closest known one.
    """
    parameters = list(inspect.signature(engine).parameters.values())[skip:]
    known = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for name in options:
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        offered = ", ".join(known) if known else "none"
        raise ConfigurationError(
            f"unknown option {name!r} for the {getattr(engine, 'scheme', engine.__name__)} "
            f"engine{hint}; its options are: {offered}"
        )


def parse_flag(name: str, text: str) -> bool:
    """A boolean option written in a URL: ``1/true/yes/on`` or ``0/false/no/off``.

    Raises:
        ConfigurationError: any other text.
    """
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}={text!r} in the store URL is not true or false")
