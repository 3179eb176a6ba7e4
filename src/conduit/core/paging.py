"""Paged reads as small state objects that both faces drive. Free of I/O.

A read (``read``, ``read_all``, ``streams``, ``parked``) fetches a page at a
time from the engine. :class:`Pages` knows where the read stands — its cursor
(a version, a position, a stream id, a parked id), how many items the caller
still wants, whether the last page was short — and hands out the operation
that fetches the next page; the face runs it (blocking, or awaiting) and
feeds the page back::

    while (op := pages.next()) is not None:
        yield from pages.feed(runtime.run(op))

So the paging logic exists once; an async iterator holds no pooled connection
between two pages, as each page is one statement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from conduit.core.effects import Op

__all__ = ["Pages"]

C = TypeVar("C")
T = TypeVar("T")


class Pages(Generic[C, T]):
    """The state of one paged read.

    Args:
        fetch: the operation that reads at most ``size`` items after ``cursor``.
        cursor: where the read starts (its meaning is ``fetch``'s).
        advance: the cursor after an item of a page (``None``: nothing after it).
        limit: the most items to hand out (``None``: all).
        page_size: the most items one fetch reads.
        keep: turns a page into the items handed out (decoding, a filter applied
            after reading); the cursor still moves over the whole page.
    """

    __slots__ = ("_advance", "_cursor", "_done", "_fetch", "_keep", "_page_size", "_remaining")

    def __init__(
        self,
        fetch: Callable[[C, int], Op[Sequence[T]]],
        cursor: C,
        advance: Callable[[T], C | None],
        *,
        limit: int | None,
        page_size: int,
        keep: Callable[[Sequence[T]], Sequence[T]] | None = None,
    ) -> None:
        self._fetch = fetch
        self._cursor = cursor
        self._advance = advance
        self._remaining = limit
        self._page_size = page_size
        self._keep = keep
        self._done = limit == 0

    def _size(self) -> int:
        remaining = self._remaining
        if remaining is None or self._keep is not None:
            # A filter after reading: read whole pages, count what is kept.
            return self._page_size
        return min(self._page_size, remaining)

    def next(self) -> Op[Sequence[T]] | None:
        """The operation fetching the next page, or ``None`` when the read is over."""
        if self._done:
            return None
        return self._fetch(self._cursor, self._size())

    def feed(self, page: Sequence[T]) -> Sequence[T]:
        """Take a fetched page; returns the items to hand out."""
        size = self._size()
        if len(page) < size:
            self._done = True
        if page:
            cursor = self._advance(page[-1])
            if cursor is None:
                self._done = True
            else:
                self._cursor = cursor
        items = page if self._keep is None else self._keep(page)
        remaining = self._remaining
        if remaining is not None:
            if len(items) >= remaining:
                items = items[:remaining]
                self._done = True
            self._remaining = remaining - len(items)
        return items
