"""Following the global log: catch up, then wait for new events, for ever. Free of I/O.

:class:`Follow` is the state of one follower — where it stands in the log, its
filters, how long to wait before the next look — and offers each look as an
operation; a face (``AsyncEventStore.follow``, ``EventStore.follow``) runs the
looks and does the waiting, on a signal that this store's pushes (and an
engine's announcements) set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from conduit.core.effects import Op
from conduit.core.reads import check_position
from conduit.errors import InvalidArgument
from conduit.events import Event, event_name

__all__ = ["Follow"]


class Follow:
    """One follower of the global log (see the module docstring).

    Args:
        core: the store's :class:`~conduit.core.store_ops.StoreCore`.
        after: the position to follow from (``None``: the beginning).
        names: only events with these names.
        stream_prefix: only events of streams whose id starts so.
        poll_interval, max_poll_interval: seconds between looks while events
            come, and the longest wait once the log is quiet.

    Raises:
        InvalidArgument: a bad position, name or interval.
    """

    def __init__(
        self,
        core: object,
        *,
        after: int | None,
        names: Iterable[str] | None,
        stream_prefix: str | None,
        poll_interval: float,
        max_poll_interval: float,
    ) -> None:
        for field, value in (
            ("poll_interval", poll_interval),
            ("max_poll_interval", max_poll_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidArgument(f"{field} must be a number of seconds above 0", field=field)
        if stream_prefix is not None and not isinstance(stream_prefix, str):
            raise InvalidArgument("stream_prefix must be a string", field="stream_prefix")
        self.core = core
        self.position = check_position(after)
        wanted = None if names is None else tuple(sorted({event_name(n) for n in names}))
        self.stored, self.keep = core.log_filter(wanted)  # type: ignore[attr-defined]
        self.stream_prefix = stream_prefix
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max(float(max_poll_interval), self.poll_interval)
        self.caught_up = False
        """True once a look found less than a page: the follower waits before the next."""
        self._delay = self.poll_interval

    def step(self) -> Op[Sequence[Event]]:
        """One look: the next page of the log after the follower's position, filtered."""
        if self.stored is not None and not self.stored:
            self.caught_up = True
            return []
        size = self.core.page_size  # type: ignore[attr-defined]
        raw: Sequence[Event] = yield from self.core.engine.read_all(  # type: ignore[attr-defined]
            after=self.position, names=self.stored, limit=size
        )
        self.caught_up = len(raw) < size
        if not raw:
            return []
        self.position = raw[-1].position
        self._delay = self.poll_interval
        raw = yield from self.core.revealed(raw)  # type: ignore[attr-defined]
        events = raw if self.keep is None else self.keep(raw)
        prefix = self.stream_prefix
        if prefix is None:
            return events
        return [event for event in events if str(event.stream_id).startswith(prefix)]

    def wait(self) -> float:
        """Seconds to wait before the next look, unless woken."""
        return self._delay

    def quiet(self) -> None:
        """A wait ran out: look less and less often."""
        self._delay = min(self._delay * 2, self.max_poll_interval)

    def woken(self) -> None:
        """Woken by a push or an announcement: look now, and soon again."""
        self._delay = self.poll_interval
