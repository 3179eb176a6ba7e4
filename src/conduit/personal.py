"""Personal data: values marked as a subject's, stored encrypted, forgotten on request.

A value of an event's data can be marked as personal data of a *subject*
(a person, a customer: the id the key is kept under)::

    store.push("person_registered", person_id,
               {"first_name": conduit.personal("Kris"), "plan": "basic"})

    @dataclass
    class PersonRegistered:
        first_name: Annotated[str, conduit.PersonalData()]              # subject: the stream
        email: Annotated[str, conduit.PersonalData(subject="person_id")]  # subject: a field
        person_id: str

The store encrypts such values (AES-256-GCM, one key per subject, kept in the
store's own database) before they reach the engine, and decrypts them on
every read. ``store.forget(subject)`` destroys the subject's key: from then
on every read gives :data:`FORGOTTEN` in place of those values, on every
engine. In the stored data, a reference ``{"conduit.sealed": [subject, n]}``
stands for each value, encrypted in the metadata (see
:mod:`conduit.core.sealing`); reads list the event's subjects under
:data:`SUBJECTS_KEY` in its metadata.

This module holds the public values; :mod:`conduit.core.sealing` does the
(pure) encryption and :mod:`conduit.core.shredding` the operations.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from conduit.errors import InvalidEvent

__all__ = [
    "FORGOTTEN",
    "PENDING_KEY",
    "SEALED_KEY",
    "SUBJECTS_KEY",
    "Forgotten",
    "Personal",
    "PersonalData",
    "SubjectKey",
    "personal",
    "subject_text",
]

SUBJECTS_KEY: Final = "conduit.subjects"
"""The metadata key listing the subjects whose personal data an event holds."""

SEALED_KEY: Final = "conduit.sealed"
"""In stored data, the key of the one-key object that refers to an encrypted value; in
stored metadata, the key of the subjects' encrypted messages."""

PENDING_KEY: Final = "conduit.pending"
"""The key of a value marked personal, between its encoding and its encryption: never
stored (a push refuses data that uses this key itself)."""


class Forgotten(str):
    """The type of :data:`FORGOTTEN`: a ``str``, so that code that formats or
    compares a personal value keeps working after its subject is forgotten."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "conduit.FORGOTTEN"


FORGOTTEN: Final = Forgotten("[forgotten]")
"""What reads give in place of a personal value whose subject was forgotten (or whose
key the store does not hold): the text ``"[forgotten]"``, as this one object
(``value is conduit.FORGOTTEN``). JSON output (exports of revealed data, the
browser) shows the text."""


def subject_text(subject: object, field: str = "subject") -> str:
    """A subject as the keys table holds it: its text (a UUID's canonical text).

    Raises:
        InvalidEvent: not a non-empty string or UUID, or holding a NUL character.
    """
    if isinstance(subject, uuid.UUID):
        return str(subject)
    if type(subject) is not str or not subject or "\x00" in subject or len(subject) > 1000:
        raise InvalidEvent(
            f"{field}: a subject is a non-empty string (at most 1000 characters, no NUL) "
            f"or a UUID, not {subject!r}",
            field=field,
        )
    return subject


class Personal:
    """A value marked as personal data of ``subject`` (``None``: the event's stream).

    Made by :func:`personal`; only an event's data may hold it.
    """

    __slots__ = ("subject", "value")

    def __init__(self, value: Any, subject: str | None) -> None:
        self.value = value
        self.subject = subject

    def __repr__(self) -> str:
        return f"conduit.personal(<hidden>, subject={self.subject!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Personal)
            and other.subject == self.subject
            and other.value == self.value
        )

    def __hash__(self) -> int:
        return hash((Personal, self.subject))


def personal(value: Any, subject: str | uuid.UUID | None = None) -> Personal:
    """Mark ``value`` (any JSON value) as personal data of ``subject``.

    ``subject`` defaults to the stream the event is pushed to. Put the result
    anywhere in an event's data (not its metadata)::

        store.push("person_registered", person_id, {"name": conduit.personal("Kris")})

    Raises:
        InvalidEvent: a subject that is not a non-empty string or a UUID.
    """
    return Personal(value, None if subject is None else subject_text(subject))


@dataclass(frozen=True, slots=True)
class PersonalData:
    """Marks a field of a typed event as personal data: ``Annotated[str, PersonalData()]``.

    ``subject``: the name of another field of the same class whose value is
    the subject; ``None`` (the default) means the stream the event is pushed to.
    """

    subject: str | None = None


@dataclass(frozen=True, slots=True)
class SubjectKey:
    """A subject's key as the store keeps it (``conduit export --with-keys``, ``conduit copy``).

    ``key`` is ``None`` once the subject was forgotten (the row stays, as a
    tombstone, so that new personal data of the subject is refused).
    """

    subject: str
    key: bytes | None
    created_at: datetime | None = None
    forgotten_at: datetime | None = None
