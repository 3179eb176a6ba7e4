"""Encrypting and decrypting personal values: pure functions, given the keys.

A value marked personal (:mod:`conduit.personal`) leaves the codec as a
marker in the data text, :data:`~conduit.codec.PENDING_VALUE`, with the value
itself beside the text (:attr:`~conduit.events.NewEvent.personal`). Sealing an
event puts a reference ``{"conduit.sealed": [subject, index]}`` in each
marker's place, and in its metadata, under
``"conduit.sealed"``, one message per subject: the AES-256-GCM encryption of
the JSON list of that subject's values under its key (base64 of a random
96-bit nonce, the ciphertext and its tag; the subject's name is the
associated data, so no message can pass for another subject's). One message
per event and subject, not per value: a decryption is the costly step of a
read. Revealing does the reverse — in place, on the fresh events an engine
read — with :data:`~conduit.personal.FORGOTTEN` for the values whose key is
gone, and ``"conduit.subjects"`` (their names) in the metadata. Which keys
exist is the caller's business (an effect): nothing here reads or writes
anything but its arguments.

``cryptography`` (the ``personal`` extra) is imported on first use, so that
stores without personal data never load it.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import orjson

from conduit.codec import PENDING_VALUE
from conduit.errors import InvalidEvent
from conduit.events import Event, NewEvent, make_new_event
from conduit.importing import needs_extra
from conduit.personal import (
    FORGOTTEN,
    SEALED_KEY,
    SUBJECTS_KEY,
    Personal,
)

__all__ = [
    "KEY_BYTES",
    "Keys",
    "Opened",
    "event_subjects",
    "event_subjects_pushed",
    "forget_cipher",
    "new_key",
    "page_subjects",
    "plain_text",
    "pushed_event",
    "reveal_event",
    "reveal_page",
    "revealed_metadata",
    "seal_event",
]

KEY_BYTES = 32
"""AES-256."""
_NONCE_BYTES = 12

Keys = Mapping[str, bytes | None]
"""Subjects' keys by subject; ``None`` or absent: forgotten (or never known)."""


def new_key() -> bytes:
    """A fresh random key for a subject."""
    return os.urandom(KEY_BYTES)


def _aead(key: bytes) -> Any:
    with needs_extra("personal data (conduit.personal)"):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    return AESGCM(key)


K = TypeVar("K")
V = TypeVar("V")


def _kept(cache: dict[K, V], key: K, value: V, most: int = 10_000) -> V:
    """``value``, kept in ``cache`` under ``key`` (emptied first when it holds more than
    ``most``). Callers look the cache up first: ``cache.get(key) or _kept(...)``."""
    if len(cache) > most:
        cache.clear()
    cache[key] = value
    return value


_ciphers: dict[bytes, Any] = {}
"""AESGCM objects by key: making one costs more than sealing a short value. Bounded."""


def _cipher(key: bytes) -> Any:
    return _ciphers.get(key) or _kept(_ciphers, key, _aead(key), 1024)


def forget_cipher(key: bytes | None) -> None:
    """Drop the cached cipher of a destroyed key."""
    if key is not None:
        _ciphers.pop(key, None)


def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag


_aads: dict[str, bytes] = {}


def _aad(subject: str) -> bytes:
    """The associated data of a subject's values: its name (so none can pass for another's)."""
    return _aads.get(subject) or _kept(_aads, subject, b"conduit.personal:" + subject.encode())


# -- events being pushed -------------------------------------------------------------


def event_subjects_pushed(new: NewEvent, stream: str) -> set[str]:
    """The subjects of ``new``'s values marked personal (``stream`` for those without)."""
    return {stream if found.subject is None else found.subject for found in new.personal}


Opened = dict[str, list[Any]]
"""Personal values by subject, in the order of their references' indexes."""


def seal_event(
    new: NewEvent, stream: str, keys: Keys, *, shown: bool = False
) -> tuple[NewEvent, Opened]:
    """``new`` with its personal values encrypted, and the values by subject.

    In the data, a reference ``{"conduit.sealed": [subject, index]}`` takes the place
    of each :data:`~conduit.codec.PENDING_VALUE` (the text is cut, not parsed); in the
    metadata (``"conduit.sealed": {subject: base64}``), one AES-GCM message per subject
    holds that subject's values. ``shown``: also give the sealed event the texts its
    push returns (:attr:`~conduit.events.NewEvent.shown`).

    Raises:
        InvalidEvent: the event already holds sealed values of one of those subjects
            (a copied event given new personal values).
    """
    personal = new.personal
    pieces = new.data.split(PENDING_VALUE)
    assert len(pieces) == len(personal) + 1, "a marker for each personal value"
    values: Opened = {}
    refs: dict[str, str] = {}
    out = [pieces[0]]
    clear = [pieces[0]] if shown else None  # as plain_text, in the same pass
    for index, found in enumerate(personal, 1):
        subject = found.subject or stream  # a subject is never empty
        taken = values.get(subject)
        if taken is None:
            taken = values[subject] = []
            refs[subject] = _reference_start(subject)
        piece = pieces[index]
        out.append(f"{refs[subject]}{len(taken)}]}}{piece}")
        taken.append(found.value)
        if clear is not None:
            clear.append(orjson.dumps(found.value).decode())
            clear.append(piece)
    if new.metadata == "{}":
        metadata: dict[str, Any] = {
            SEALED_KEY: {s: _seal_text(_key(keys, s), s, found) for s, found in values.items()}
        }
        shown_metadata = _subjects_text(values)
    else:
        metadata = orjson.loads(new.metadata)
        sealed = metadata.get(SEALED_KEY)
        if not isinstance(sealed, dict):
            sealed = {}
        elif sealed:
            clear = None  # sealed values of other subjects too: the store reveals them
        for subject, taken in values.items():
            if subject in sealed:
                raise InvalidEvent(
                    f"data: already holds sealed values of {subject!r}; give new personal "
                    "values of that subject in an event of their own",
                    field="data",
                )
            sealed[subject] = _seal_text(_key(keys, subject), subject, taken)
        if clear is not None:
            plain = {k: v for k, v in metadata.items() if k != SEALED_KEY}
            plain[SUBJECTS_KEY] = sorted(values)
            shown_metadata = orjson.dumps(plain).decode()
        metadata[SEALED_KEY] = sealed
        metadata.pop(SUBJECTS_KEY, None)
    made = make_new_event(
        new.id,
        new.name,
        "".join(out),
        orjson.dumps(metadata).decode(),
        (),
        new.tags,
        new.recorded_at,
        None if clear is None else ("".join(clear), shown_metadata),
    )
    return made, values


_subjects_texts: dict[tuple[str, ...], str] = {}


def _subjects_text(values: Opened) -> str:
    """The metadata text of a push's result whose own metadata was empty."""
    subjects = tuple(values) if len(values) == 1 else tuple(sorted(values))
    return _subjects_texts.get(subjects) or _kept(
        _subjects_texts, subjects, orjson.dumps({SUBJECTS_KEY: subjects}).decode()
    )


def _key(keys: Keys, subject: str) -> bytes:
    key = keys[subject]
    assert key is not None, "a forgotten subject's data is refused before sealing"
    return key


_starts: dict[str, str] = {}


def _reference_start(subject: str) -> str:
    """The text of a reference to a value of ``subject``, up to its index."""
    return _starts.get(subject) or _kept(
        _starts, subject, f'{{"{SEALED_KEY}":[{orjson.dumps(subject).decode()},'
    )


def _seal_text(key: bytes, subject: str, value: Any) -> str:
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _cipher(key).encrypt(nonce, orjson.dumps(value), _aad(subject))
    return base64.b64encode(nonce + sealed).decode("ascii")


def _open_text(key: bytes | None, subject: str, text: object) -> Any:
    """The value sealed in ``text``, or ``_GONE`` (no key, or not what the key sealed)."""
    if key is None or type(text) is not str:
        return _GONE
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
        plain = _cipher(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(subject))
    except (binascii.Error, ValueError):
        return _GONE
    except _invalid_tag():  # sealed under another key, or altered
        return _GONE
    return orjson.loads(plain)


_GONE = object()


def plain_text(text: str, personal: Sequence[Personal]) -> str:
    """Data text with each personal value in place of its marker: what reads will give
    (for the typed checks a push makes before anything is written)."""
    if not personal:
        return text
    pieces = text.split(PENDING_VALUE)
    out = [pieces[0]]
    for found, piece in zip(personal, pieces[1:], strict=True):
        out.append(orjson.dumps(found.value).decode())
        out.append(piece)
    return "".join(out)


def revealed_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as reads give it: the subjects' names in place of their sealed values."""
    sealed = metadata.get(SEALED_KEY)
    if not isinstance(sealed, dict):
        return metadata
    shown = {k: v for k, v in metadata.items() if k != SEALED_KEY}
    shown[SUBJECTS_KEY] = sorted(sealed)
    return shown


def pushed_event(event: Event, opened: Opened | None) -> Event:
    """A recorded event as its push returns it, given the values it was pushed with
    (:func:`seal_event`): as the engine returned it if it was built from
    :attr:`~conduit.events.NewEvent.shown`, else revealed in place, as
    :func:`reveal_event` (an engine returns fresh dicts), without decrypting anything."""
    if opened is None:
        return event
    metadata = event.metadata
    if type(metadata.get(SEALED_KEY)) is dict:
        _open_object(event.data, opened)
        subjects = metadata.pop(SEALED_KEY)
        metadata[SUBJECTS_KEY] = sorted(subjects)
    return event


# -- events being read ---------------------------------------------------------------


def event_subjects(event: Event) -> list[str]:
    """The subjects an event holds personal data of (its metadata says, sealed or read)."""
    metadata = event.metadata
    sealed = metadata.get(SEALED_KEY)
    if isinstance(sealed, dict):
        return [subject for subject in sealed if type(subject) is str]
    found = metadata.get(SUBJECTS_KEY)
    if type(found) is not list:
        return []
    return [subject for subject in found if type(subject) is str]


def page_subjects(page: Iterable[Event]) -> set[str]:
    """The subjects a page of events holds personal data of."""
    found: set[str] = set()
    for event in page:
        metadata = event.metadata
        if metadata:
            sealed = metadata.get(SEALED_KEY)
            if type(sealed) is dict:
                found.update(sealed)
            elif SUBJECTS_KEY in metadata:
                found.update(event_subjects(event))
    return found


def reveal_event(event: Event, keys: Keys) -> Event:
    """``event`` with its sealed values decrypted (or :data:`FORGOTTEN`).

    In place: an engine builds fresh dicts for every event it reads (the
    :class:`~conduit.backends.base.Backend` contract), which only this read holds.
    """
    metadata = event.metadata
    sealed = metadata.get(SEALED_KEY)
    if type(sealed) is not dict:
        return event
    values = {
        subject: _open_text(keys.get(subject), subject, text) for subject, text in sealed.items()
    }
    _open_object(event.data, values)
    del metadata[SEALED_KEY]
    metadata[SUBJECTS_KEY] = sorted(sealed)
    return event


def reveal_page(page: Sequence[Event], keys: Keys) -> Sequence[Event]:
    """Every event of a page revealed, in place (see :func:`reveal_event`)."""
    for event in page:
        if SEALED_KEY in event.metadata:
            reveal_event(event, keys)
    return page


def _value(values: dict[str, Any], ref: Any) -> Any:
    if type(ref) is not list or len(ref) != 2:
        return FORGOTTEN
    found = values.get(ref[0], _GONE)
    index = ref[1]
    if found is _GONE or type(found) is not list or type(index) is not int:
        return FORGOTTEN
    return found[index] if 0 <= index < len(found) else FORGOTTEN


def _open_object(value: dict[str, Any], values: dict[str, Any]) -> None:
    for key, item in value.items():
        t = type(item)
        if t is dict:
            if len(item) == 1 and SEALED_KEY in item:
                ref = item[SEALED_KEY]
                try:  # the common case, inline: [subject, index] of a value opened
                    value[key] = values[ref[0]][ref[1]]
                except (KeyError, IndexError, TypeError):
                    value[key] = _value(values, ref)
            else:
                _open_object(item, values)
        elif t is list:
            _open_list(item, values)


def _open_list(value: list[Any], values: dict[str, Any]) -> None:
    for index, item in enumerate(value):
        t = type(item)
        if t is dict:
            if len(item) == 1 and SEALED_KEY in item:
                value[index] = _value(values, item[SEALED_KEY])
            else:
                _open_object(item, values)
        elif t is list:
            _open_list(item, values)
