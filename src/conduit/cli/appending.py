"""Appending events taken from elsewhere, in order, safely repeatable: import and copy.

Each run of consecutive events of one stream gets the events' ids and
recorded times, and the expected version that gives them their versions;
runs of different streams that follow each other (many small streams) are
committed together, in one multi-stream ``push_many`` of up to the batch
size, and one by one when that call is refused. Idempotency (docs/design.md
§3.5) does the rest: a batch whose ids are already recorded in its stream
returns the recorded events and adds nothing, so an import or copy may run
again after an interruption.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conduit.errors import ConduitError, DuplicateEvent, WrongExpectedVersion
from conduit.events import Event, StreamId
from conduit.store import EventStore

__all__ = ["Appender", "Item", "resume_position"]


@dataclass(frozen=True, slots=True)
class Item:
    """One event to append, and where it came from (for error messages)."""

    where: str
    stream_id: StreamId
    version: int
    event: dict[str, Any]

    @property
    def stream_text(self) -> str:
        """The stream id as text, which is how a store knows a stream."""
        return str(self.stream_id)


@dataclass
class Appender:
    """Appends events in order, a run of consecutive events of one stream at a time.

    Each run is one ``push_many`` with the events' ids and recorded times, and
    the expected version that gives them their versions. A run already
    recorded returns the recorded events; a run partly recorded (cut short by
    an interruption, or cut differently) has its recorded head skipped.
    """

    store: EventStore
    batch_size: int
    head: int
    """The store's head position before the first append: events after it are new."""
    run: list[Item] = field(default_factory=list)
    runs: list[list[Item]] = field(default_factory=list)
    """Runs of other streams waiting to be committed with ``run``."""
    added: int = 0
    """Events appended by this appender."""
    present: int = 0
    """Events found already recorded."""

    def add(self, item: Item) -> None:
        """Queue an event; appends what is queued when this one cannot join it."""
        if self.run:
            last = self.run[-1]
            queued = len(self.run) + sum(len(run) for run in self.runs)
            if queued >= self.batch_size:
                self.flush()
            elif item.stream_text != last.stream_text:
                streams = {run[0].stream_text for run in self.runs}
                if item.stream_text in streams:  # a stream's second run: commit first
                    self.flush()
                else:
                    self.runs.append(self.run)
                    self.run = []
            elif item.version != last.version + 1:
                self.flush()
        self.run.append(item)

    def flush(self) -> None:
        """Append what is queued: runs of several streams in one transaction.

        Raises:
            ConduitError: the store refused it; the message says where the
                run came from (a file's line, a source position) and why.
        """
        runs = [*self.runs, self.run] if self.run else self.runs
        self.runs, self.run = [], []
        if not runs:
            return
        recorded: list[Event] | None = None
        if len(runs) > 1:
            try:
                recorded = self.store.push_many(
                    {run[0].stream_id: [item.event for item in run] for run in runs},
                    expected_versions={run[0].stream_id: run[0].version - 1 for run in runs},
                )
            except (DuplicateEvent, WrongExpectedVersion):
                recorded = None  # partly recorded: run by run, which skips what is there
            except ConduitError as exc:
                raise ConduitError(f"{runs[0][0].where}: {exc}") from exc
        if recorded is None:
            recorded = []
            for run in runs:
                try:
                    recorded += self._append(run)
                except ConduitError as exc:
                    raise ConduitError(
                        f"{run[0].where} (stream {run[0].stream_id}): {exc}"
                    ) from exc
        fresh = sum(1 for event in recorded if event.position > self.head)
        self.added += fresh
        self.present += len(recorded) - fresh

    def _append(self, run: list[Item]) -> list[Event]:
        first = run[0]
        try:
            return self._push(run)
        except (DuplicateEvent, WrongExpectedVersion):
            recorded = list(
                self.store.read(first.stream_id, from_version=first.version, limit=len(run))
            )
            done = 0
            for item, event in zip(run, recorded, strict=False):
                if str(event.id) != str(item.event["id"]):
                    break
                done += 1
            if done == 0:
                raise
            return recorded[:done] + self._push(run[done:])

    def _push(self, run: list[Item]) -> list[Event]:
        if not run:
            return []
        return self.store.push_many(
            run[0].stream_id, [item.event for item in run], expected_version=run[0].version - 1
        )


def resume_position(source: EventStore, target: EventStore) -> int:
    """The source position a copy into ``target`` resumes after: its last event already there.

    A copy appends the source's log in order, a run at a time, so the source
    events in the target are a prefix of the source's log. A binary search
    over source positions finds its end, looking each probe's event up by id
    in the target: about 50 lookups, whatever the stores' sizes.
    """
    if target.head_position() == 0:
        return 0

    def copied_after(position: int) -> bool:
        following = next(source.read_all(after=position, limit=1), None)
        return following is not None and target.read_event(following.id) is not None

    low, high = 0, source.head_position()
    if not copied_after(low):
        return 0
    # copied_after(low) holds and copied_after(high) does not: narrow to the boundary.
    while high - low > 1:
        middle = (low + high) // 2
        if copied_after(middle):
            low = middle
        else:
            high = middle
    return high
