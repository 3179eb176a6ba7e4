"""Sealing snapshots of entities whose events hold personal data: pure, given the keys.

A snapshot's state may hold any of its events' personal values, so it is sealed
as a whole under one key derived from the keys of all their subjects: gone as
soon as any one of them is forgotten (:mod:`conduit.snapshots` then ignores it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import orjson

from conduit.core.sealing import _GONE, Keys, _open_text, _seal_text
from conduit.personal import subject_text

__all__ = ["open_state", "seal_state", "sealed_state_subjects"]

_STATE_KEY = "conduit.sealed_state"


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
    return orjson.dumps({_STATE_KEY: [live, _seal_text(key, ",".join(live), text)]}).decode()


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
    opened = _open_text(key, ",".join(subjects), sealed)
    return None if opened is _GONE else str(opened)
