"""``conduit forget``: forget a subject's personal data (destroy its key)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

import typer

from conduit.cli.common import open_store, say, stream_arg
from conduit.personal import SubjectKey

__all__ = ["forget", "key_line", "parse_key", "register"]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``conduit`` application."""
    app.command(name="forget")(forget)


def forget(
    ctx: typer.Context,
    subject: Annotated[
        str,
        typer.Argument(
            metavar="SUBJECT",
            help="The subject whose personal data to forget: the id its values were marked "
            "with (by default, the stream they were pushed to).",
        ),
    ],
    by: Annotated[
        str | None,
        typer.Option("--by", metavar="WHO", help="Who asked: kept in the audit event."),
    ] = None,
) -> None:
    """Forget a subject's personal data for good: destroy its key (crypto-shredding).

    Every read then gives the placeholder "[forgotten]" in place of the
    subject's personal values, on every store of this database, in exports,
    copies and the browser; new personal data of the subject is refused. A
    subject_forgotten event is recorded in the conduit.audit stream. There is
    no undo (except a backup, or an export made with --with-keys).

    Examples:

    conduit forget 0190a6e2-3b4c-7d5e-8f60-718293a4b5c6 --by dpo@example.com
    """
    with open_store(ctx) as store:
        destroyed = store.forget(stream_arg(subject), by=by)
    if destroyed:
        say(f"Forgot {subject}: its key is destroyed.")
    else:
        say(f"{subject} had no key (never used, or forgotten already); it is forgotten now.")


def key_line(key: SubjectKey) -> dict[str, Any]:
    """A subject's key (or tombstone) as a line of ``conduit export --with-keys``."""
    return {
        "subject_key": key.subject,
        "key": None if key.key is None else base64.b64encode(key.key).decode("ascii"),
        "created_at": None if key.created_at is None else key.created_at.isoformat(),
        "forgotten_at": None if key.forgotten_at is None else key.forgotten_at.isoformat(),
    }


def parse_key(record: dict[str, Any]) -> SubjectKey:
    """A line of :func:`key_line` back as a :class:`SubjectKey`.

    Raises:
        ValueError, TypeError: a malformed line (the caller names it).
    """
    key = record.get("key")
    created, forgotten = record.get("created_at"), record.get("forgotten_at")
    return SubjectKey(
        str(record["subject_key"]),
        None if key is None else base64.b64decode(key, validate=True),
        None if created is None else datetime.fromisoformat(created),
        None if forgotten is None else datetime.fromisoformat(forgotten),
    )
