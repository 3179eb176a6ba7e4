"""A projector driven by hand, as a subscription's driver drives it (for tests of the
Projector role): the checkpoint it loaded is the baseline its next batch moves from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conduit.core.effects import SyncRuntime
from conduit.events import Event
from conduit.subscriptions.projector import HandlerFailed, Projector

_run = SyncRuntime().run


class Driving:
    """``projector`` with the driver's baseline; other attributes are the projector's."""

    def __init__(self, projector: Projector) -> None:
        self.projector = projector
        self.baseline: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.projector, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("projector", "baseline"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.projector, name, value)

    def load_checkpoint(self) -> int:
        """Load the checkpoint, which becomes the baseline of the next batch."""
        self.baseline = _run(self.projector.load_checkpoint_op())
        return self.baseline or 0

    def apply(self, events: Sequence[Event], up_to: int) -> None:
        """Apply a batch from the baseline, as a driver would."""
        try:
            _run(self.projector.apply_op(events, up_to, self.baseline))
        except HandlerFailed as failure:
            if failure.index:
                self.baseline = events[failure.index - 1].position
            raise
        self.baseline = up_to

    def apply_parked(self, event: Event) -> None:
        """Apply one parked event."""
        _run(self.projector.apply_parked_op(event))
