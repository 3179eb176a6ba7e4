"""Subjects' keys of the memory engine (personal data, :mod:`conduit.personal`)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from conduit.personal import SubjectKey

__all__ = ["MemorySubjectKeys"]


class MemorySubjectKeys:
    """Mixed into the memory engine: a dict of keys behind a lock of its own."""

    def __init__(self) -> None:
        self._key_lock = threading.Lock()
        self._keys: dict[str, SubjectKey] = {}

    def subject_keys(self, subjects: Sequence[str]) -> dict[str, bytes | None]:
        """The keys of those subjects that have a row: ``None`` for a forgotten one."""
        with self._key_lock:
            return {s: self._keys[s].key for s in subjects if s in self._keys}

    def keep_subject_keys(self, keys: Sequence[SubjectKey]) -> dict[str, bytes | None]:
        """Keep new keys for subjects that have none; the keys of all of them."""
        self.add_subject_keys(keys)
        return self.subject_keys([given.subject for given in keys])

    def add_subject_keys(self, keys: Sequence[SubjectKey]) -> None:
        """Keep keys of subjects that have none yet; a tombstone (``key`` None) also
        replaces a live key (forgetting wins)."""
        now = datetime.now(UTC)
        with self._key_lock:
            for given in keys:
                known = self._keys.get(given.subject)
                if known is None or (given.key is None and known.key is not None):
                    self._keys[given.subject] = replace(
                        given,
                        created_at=given.created_at or now,
                        forgotten_at=given.forgotten_at or (now if given.key is None else None),
                    )

    def forget_subject(self, subject: str) -> bool:
        """Destroy a subject's key, keeping a tombstone; True if a key was destroyed."""
        now = datetime.now(UTC)
        with self._key_lock:
            known = self._keys.get(subject)
            self._keys[subject] = SubjectKey(subject, None, known.created_at if known else now, now)
            return known is not None and known.key is not None

    def subject_key_page(self, *, after: str | None, limit: int) -> list[SubjectKey]:
        """A page of keys and tombstones, by subject, after ``after``."""
        with self._key_lock:
            found = sorted(s for s in self._keys if after is None or s > after)[:limit]
            return [self._keys[s] for s in found]
