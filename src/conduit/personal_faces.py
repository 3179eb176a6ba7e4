"""The store's calls for personal data: forgetting a subject, and its keys.

Mixins of :class:`~conduit.EventStore` and :class:`~conduit.AsyncEventStore`:
each call runs one operation of the store's core, blocking or awaited.
Behaviour, choices and errors: docs/personal-data.md.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from conduit.core.effects import AsyncRuntime, SyncRuntime
from conduit.personal import SubjectKey

if TYPE_CHECKING:
    from conduit.core.paging import Pages
    from conduit.core.store_ops import StoreCore

__all__ = ["AsyncStorePersonalData", "StorePersonalData"]

T = TypeVar("T")


class StorePersonalData:
    """``EventStore``'s calls for personal data."""

    _core: StoreCore
    _runtime: SyncRuntime

    if TYPE_CHECKING:  # provided by EventStore

        def _pages(self, pages: Pages[Any, T]) -> Iterator[T]: ...

    def forget(self, subject: str | uuid.UUID, *, by: str | None = None) -> bool:
        """Forget a subject's personal data: destroy its key (crypto-shredding).

        From then on every read, on this store and any other on the same
        database, gives :data:`conduit.FORGOTTEN` in place of the subject's
        personal values, and snapshots holding them are ignored; pushing new
        personal data of the subject raises :class:`~conduit.SubjectForgotten`.
        A ``subject_forgotten`` event (``by`` in its metadata) is recorded in the
        audit stream ``conduit.audit``. Returns True when a key was destroyed
        (False: the subject had none, or was forgotten already).

        Raises:
            InvalidArgument: a subject that is not a non-empty string or UUID.
        """
        return self._runtime.run(self._core.forget(subject, by))

    def subject_keys(self, *, limit: int | None = None) -> Iterator[SubjectKey]:
        """Every subject's key, and the tombstones of forgotten ones, by subject.

        For ``conduit export --with-keys`` and ``conduit copy``: whoever holds
        the keys can read the personal data.
        """
        return self._pages(self._core.key_pages(limit=limit))

    def add_subject_keys(self, keys: Iterable[SubjectKey]) -> None:
        """Keep another store's keys (those of subjects this store has no key for) and
        tombstones (which also destroy a key this store holds).

        Raises:
            InvalidArgument: not :class:`~conduit.SubjectKey` values, or keys not of 32 bytes.
        """
        self._runtime.run(self._core.add_keys(list(keys)))


class AsyncStorePersonalData:
    """``AsyncEventStore``'s calls for personal data; each behaves as its
    ``EventStore`` namesake (see :class:`StorePersonalData`)."""

    _core: StoreCore
    _runtime: AsyncRuntime

    if TYPE_CHECKING:  # provided by AsyncEventStore

        def _pages(self, pages: Pages[Any, T]) -> AsyncIterator[T]: ...

    async def forget(self, subject: str | uuid.UUID, *, by: str | None = None) -> bool:
        """See :meth:`EventStore.forget`."""
        return await self._runtime.run(self._core.forget(subject, by))

    def subject_keys(self, *, limit: int | None = None) -> AsyncIterator[SubjectKey]:
        """See :meth:`EventStore.subject_keys`: an async iterator."""
        return self._pages(self._core.key_pages(limit=limit))

    async def add_subject_keys(self, keys: Iterable[SubjectKey]) -> None:
        """See :meth:`EventStore.add_subject_keys`."""
        await self._runtime.run(self._core.add_keys(list(keys)))
