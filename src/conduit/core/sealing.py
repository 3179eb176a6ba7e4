"""Encrypting and decrypting personal values: pure functions, given the keys.

A value marked personal (:mod:`conduit.personal`) leaves the codec in its
*pending* form, ``{"conduit.pending": [subject or null, value]}``; sealing
turns each into ``{"conduit.sealed": [subject, "<base64>"]}``, the AES-256-GCM
encryption of the value's JSON text under the subject's key (a random 96-bit
nonce, then the ciphertext and its tag; the subject is the associated data,
so a value cannot be moved to another subject's name). Revealing does the
reverse, and gives :data:`~conduit.personal.FORGOTTEN` for a value whose key
is gone. Which keys exist is the caller's business (an effect): nothing here
reads or writes anything but its arguments.

``cryptography`` (the ``personal`` extra) is imported on first use, so that
stores without personal data never load it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from conduit.codec import PENDING_MARK
from conduit.events import Event, NewEvent, make_event, make_new_event
from conduit.importing import needs_extra
from conduit.personal import (
    FORGOTTEN,
    PENDING_KEY,
    SEALED_KEY,
    SUBJECTS_KEY,
    subject_text,
)

__all__ = [
    "KEY_BYTES",
    "Keys",
    "event_subjects",
    "forget_cipher",
    "new_key",
    "open_state",
    "open_value",
    "page_subjects",
    "pending_subjects",
    "plain_text",
    "reveal_event",
    "reveal_page",
    "seal_event",
    "seal_state",
    "seal_value",
    "sealed_state_subjects",
]

KEY_BYTES = 32
"""AES-256."""
_NONCE_BYTES = 12

Keys = Mapping[str, bytes | None]
"""Subjects' keys by subject; ``None`` or absent: forgotten (or never known)."""

_STATE_KEY = "conduit.sealed_state"


def new_key() -> bytes:
    """A fresh random key for a subject."""
    return os.urandom(KEY_BYTES)


def _aead(key: bytes) -> Any:
    with needs_extra("personal data (conduit.personal)"):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    return AESGCM(key)


_ciphers: dict[bytes, Any] = {}
"""AESGCM objects by key: making one costs more than sealing a short value. Bounded."""


def _cipher(key: bytes) -> Any:
    found = _ciphers.get(key)
    if found is None:
        if len(_ciphers) > 1024:
            _ciphers.clear()
        found = _ciphers[key] = _aead(key)
    return found


def forget_cipher(key: bytes | None) -> None:
    """Drop the cached cipher of a destroyed key."""
    if key is not None:
        _ciphers.pop(key, None)


def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag


def _aad(subject: str) -> bytes:
    return b"conduit.personal:" + subject.encode()


def seal_value(key: bytes, subject: str, value: Any) -> dict[str, Any]:
    """The stored form of a personal value of ``subject``."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _cipher(key).encrypt(nonce, orjson.dumps(value), _aad(subject))
    return {SEALED_KEY: [subject, base64.b64encode(nonce + sealed).decode("ascii")]}


def open_value(keys: Keys, sealed: Sequence[Any]) -> Any:
    """A personal value from its stored form's list ``[subject, base64]``: the value, or
    :data:`FORGOTTEN` when its key is gone (or the text is not what was sealed)."""
    if len(sealed) != 2 or type(sealed[0]) is not str or type(sealed[1]) is not str:
        return FORGOTTEN
    subject, text = sealed
    key = keys.get(subject)
    if key is None:
        return FORGOTTEN
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return FORGOTTEN
    try:
        plain = _cipher(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(subject))
    except _invalid_tag():  # sealed under another key, or altered
        return FORGOTTEN
    return orjson.loads(plain)


# -- events being pushed -------------------------------------------------------------


def pending_subjects(new: NewEvent, stream: str) -> set[str] | None:
    """The subjects whose keys sealing ``new`` needs; ``None`` when it holds no personal
    value (the common case, told by one substring search)."""
    if PENDING_MARK not in new.data:
        return None
    found: set[str] = set()
    _walk_pending(orjson.loads(new.data), stream, found)
    return found


def _walk_pending(value: Any, stream: str, found: set[str]) -> None:
    t = type(value)
    if t is dict:
        pending = value.get(PENDING_KEY) if len(value) == 1 else None
        if pending is not None:
            found.add(stream if pending[0] is None else pending[0])
            return
        for item in value.values():
            _walk_pending(item, stream, found)
    elif t is list:
        for item in value:
            _walk_pending(item, stream, found)


def seal_event(new: NewEvent, stream: str, keys: Keys) -> NewEvent:
    """``new`` with each pending value encrypted, and its subjects in its metadata.

    Raises:
        KeyError: a subject has no key in ``keys`` (the caller made sure of them).
    """
    subjects: set[str] = set()
    data = _seal(orjson.loads(new.data), stream, keys, subjects)
    metadata = orjson.loads(new.metadata)
    known = metadata.get(SUBJECTS_KEY)
    if isinstance(known, list):
        subjects.update(item for item in known if type(item) is str)
    metadata[SUBJECTS_KEY] = sorted(subjects)
    sealed = make_new_event(
        new.id, new.name, orjson.dumps(data).decode(), orjson.dumps(metadata).decode()
    )
    if new.recorded_at is not None:
        from dataclasses import replace

        sealed = replace(sealed, recorded_at=new.recorded_at)
    return sealed


def _seal(value: Any, stream: str, keys: Keys, subjects: set[str]) -> Any:
    t = type(value)
    if t is dict:
        pending = value.get(PENDING_KEY) if len(value) == 1 else None
        if pending is not None:
            subject = stream if pending[0] is None else pending[0]
            key = keys[subject]
            assert key is not None, "a forgotten subject's data is refused before sealing"
            subjects.add(subject)
            return seal_value(key, subject, pending[1])
        return {k: _seal(item, stream, keys, subjects) for k, item in value.items()}
    if t is list:
        return [_seal(item, stream, keys, subjects) for item in value]
    return value


def plain_text(text: str) -> str:
    """Data text with each pending value in place of its marker: what reads will give
    (for the typed checks a push makes before anything is written)."""
    if PENDING_MARK not in text:
        return text
    return orjson.dumps(_unmark(orjson.loads(text))).decode()


def _unmark(value: Any) -> Any:
    t = type(value)
    if t is dict:
        pending = value.get(PENDING_KEY) if len(value) == 1 else None
        if pending is not None:
            return pending[1]
        return {k: _unmark(item) for k, item in value.items()}
    if t is list:
        return [_unmark(item) for item in value]
    return value


# -- events being read ---------------------------------------------------------------


def event_subjects(event: Event) -> list[str]:
    """The subjects an event holds personal data of (its metadata says)."""
    found = event.metadata.get(SUBJECTS_KEY)
    if type(found) is not list:
        return []
    return [subject for subject in found if type(subject) is str]


def page_subjects(page: Iterable[Event]) -> set[str]:
    """The subjects a page of events holds personal data of."""
    found: set[str] = set()
    for event in page:
        if SUBJECTS_KEY in event.metadata:
            found.update(event_subjects(event))
    return found


def reveal_event(event: Event, keys: Keys) -> Event:
    """``event`` with its sealed values decrypted (or :data:`FORGOTTEN`)."""
    if SUBJECTS_KEY not in event.metadata:
        return event
    return make_event(
        event.id,
        event.stream_id,
        event.name,
        _open(event.data, keys),
        event.metadata,
        event.version,
        event.position,
        event.recorded_at,
    )


def reveal_page(page: Sequence[Event], keys: Keys) -> list[Event]:
    """Every event of a page revealed (see :func:`reveal_event`)."""
    return [reveal_event(event, keys) for event in page]


def _open(value: Any, keys: Keys) -> Any:
    t = type(value)
    if t is dict:
        sealed = value.get(SEALED_KEY) if len(value) == 1 else None
        if type(sealed) is list:
            return open_value(keys, sealed)
        return {k: _open(item, keys) for k, item in value.items()}
    if t is list:
        return [_open(item, keys) for item in value]
    return value


# -- snapshots -----------------------------------------------------------------------


def _state_key(subjects: Sequence[str], keys: Keys) -> bytes | None:
    """One key from the keys of every subject (sorted): gone as soon as any one is."""
    digest = hashlib.sha256(b"conduit.snapshot")
    for subject in subjects:
        key = keys.get(subject)
        if key is None:
            return None
        digest.update(subject.encode() + b"\x00" + key)
    return digest.digest()


def seal_state(text: str, subjects: Iterable[str], keys: Keys) -> str:
    """A snapshot's state, encrypted under the keys of the subjects whose personal data
    it may hold (those still known); unchanged when there are none."""
    live = sorted(subject for subject in set(subjects) if keys.get(subject) is not None)
    if not live:
        return text
    key = _state_key(live, keys)
    assert key is not None
    sealed = seal_value(key, ",".join(live), text)
    return orjson.dumps({_STATE_KEY: [live, sealed[SEALED_KEY][1]]}).decode()


def sealed_state_subjects(text: str) -> list[str] | None:
    """The subjects a sealed snapshot needs; ``None`` when it is not sealed."""
    if not text.startswith('{"' + _STATE_KEY):
        return None
    found = orjson.loads(text)[_STATE_KEY][0]
    return [subject_text(subject) for subject in found]


def open_state(text: str, keys: Keys) -> str | None:
    """A sealed snapshot's state text, or ``None`` once one of its subjects is forgotten."""
    subjects, sealed = orjson.loads(text)[_STATE_KEY]
    key = _state_key(subjects, keys)
    if key is None:
        return None
    opened = open_value({",".join(subjects): key}, [",".join(subjects), sealed])
    return None if opened is FORGOTTEN else str(opened)
