"""What ``subscribe`` decides, for both faces: a plain listener or a named subscription,
with which projector, filter, retry policy and driver settings. Free of I/O.

The rule: a listener becomes a **named subscription** when a ``name`` is
given, or when it is a projector that keeps its own checkpoint under its own
name (it has ``load_checkpoint``, ``apply`` and ``apply_parked``, as a
``SQLProjection`` has). Anything else is a **plain listener**, whatever its
attributes; the options of a named subscription given for a plain listener
are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from conduit.core.effects import Call, Op, Signal
from conduit.core.store_ops import RESERVED_PREFIX, Notified, StoreCore
from conduit.errors import InvalidArgument
from conduit.subscriptions.driving import MAX_POLL_INTERVAL, POLL_INTERVAL, Driver, Mode
from conduit.subscriptions.partitioned import PartitionedDriver
from conduit.subscriptions.partitions import Partition, check_count
from conduit.subscriptions.projector import (
    Projector,
    StoreProjector,
    is_projector,
    projector_of,
)
from conduit.subscriptions.runner import Filter, RetryPolicy, Runner

__all__ = [
    "Plan",
    "plan_subscription",
    "reserve",
    "start_failed",
    "started",
    "starting",
    "stopping",
]


@dataclass(frozen=True, slots=True)
class Plan:
    """A named subscription, decided: what drives it and how."""

    name: str
    projector: Projector
    filter: Filter
    policy: RetryPolicy
    batch_size: int
    mode: Mode
    poll_interval: float
    max_poll_interval: float
    lease_ttl: float
    partitions: int = 1

    def driver(
        self, core: StoreCore, *, stopped: Signal, wake: Signal
    ) -> Driver | PartitionedDriver:
        """The subscription's driver, with the face's signals."""
        if self.partitions == 1:
            return self._driver(core, self.projector, self.filter, stopped, wake)
        parts = []
        for index in range(self.partitions):
            partition = Partition(index, self.partitions)
            parts.append(
                self._driver(
                    core,
                    partition_projector(core, self.projector, partition),
                    replace(self.filter, partition=partition),
                    stopped,
                    wake,
                )
            )
        return PartitionedDriver(parts)

    def _driver(
        self,
        core: StoreCore,
        projector: Projector,
        filter: Filter,
        stopped: Signal,
        wake: Signal,
    ) -> Driver:
        runner = Runner(
            core,
            projector,
            stopped=stopped,
            filter=filter,
            policy=self.policy,
            batch_size=self.batch_size,
            subscription=self.name,
        )
        return Driver(
            runner,
            self.mode,
            wake=wake,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            lease_ttl=self.lease_ttl,
        )


def partition_projector(core: StoreCore, projector: Projector, partition: Partition) -> Projector:
    """The projector of one partition: the same handlers, the partition's checkpoint.

    Raises:
        InvalidArgument: a projector that cannot keep a checkpoint per partition.
    """
    if isinstance(projector, StoreProjector):
        return StoreProjector(core.engine, partition.key(projector.name), projector.target)
    split = getattr(projector, "for_partition", None)
    if callable(split):
        found: Projector = split(partition)
        return found
    raise InvalidArgument(
        f"{projector!r} keeps one checkpoint of its own: it cannot be split into "
        "partitions (a SQLProjection, or an object with on_<name> handlers, can)",
        field="partitions",
    )


def plan_subscription(
    core: StoreCore,
    listener: object,
    *,
    name: str | None,
    mode: Mode | None,
    names: Any,
    streams: str | None,
    max_attempts: int | None,
    backoff: float | None,
    on_failure: Literal["park", "stop"] | None,
    batch_size: int | None,
    poll_interval: float | None,
    max_poll_interval: float | None,
    lease_ttl: float | None,
    partitions: int | None = None,
) -> Plan | None:
    """The named subscription ``subscribe`` makes, or ``None`` for a plain listener.

    Raises:
        InvalidArgument: a bad or reserved name, a projection named otherwise
            where it was made, or a named subscription's option given for a
            plain listener.
    """
    options = {
        "mode": mode,
        "names": names,
        "streams": streams,
        "max_attempts": max_attempts,
        "backoff": backoff,
        "on_failure": on_failure,
        "batch_size": batch_size,
        "poll_interval": poll_interval,
        "max_poll_interval": max_poll_interval,
        "lease_ttl": lease_ttl,
        "partitions": partitions,
    }
    projecting = is_projector(listener)
    if name is None and not projecting:
        given = sorted(option for option, value in options.items() if value is not None)
        if given:
            raise InvalidArgument(
                f"{', '.join(given)}: options of a named subscription, and {listener!r} "
                "is a plain listener; give it a name= to make it a named subscription",
                field=given[0],
            )
        return None
    if projecting:
        own_name = getattr(listener, "name", None)
        if name is not None and own_name != name:
            raise InvalidArgument(
                f"this projection keeps its checkpoint as {own_name!r}; "
                f"name it {name!r} where it is made, not here",
                field="name",
            )
        name = own_name
    if not isinstance(name, str) or not name:
        raise InvalidArgument("a subscription's name is a non-empty string", field="name")
    if name.startswith(RESERVED_PREFIX):
        raise InvalidArgument(
            f"subscription names starting with {RESERVED_PREFIX!r} are Conduit's own",
            field="name",
        )
    projector = (
        projector_of(listener) if projecting else StoreProjector(core.engine, name, listener)
    )
    count = 1 if partitions is None else check_count(partitions)
    if count > 1:
        partition_projector(core, projector, Partition(count - 1, count))  # can it?
    return Plan(
        name,
        projector,
        Filter.of(names, streams),
        RetryPolicy(
            3 if max_attempts is None else max_attempts,
            0.05 if backoff is None else backoff,
            on_failure=on_failure or "park",
        ),
        batch_size or getattr(listener, "batch_size", None) or 100,
        mode or "inline",
        POLL_INTERVAL if poll_interval is None else poll_interval,
        MAX_POLL_INTERVAL if max_poll_interval is None else max_poll_interval,
        10.0 if lease_ttl is None else lease_ttl,
        count,
    )


def reserve(core: StoreCore, name: str) -> None:
    """Reserve a name while its subscription starts.

    Raises:
        InvalidArgument: a subscription of that name runs (or starts) in this store.
    """
    with core.lock:
        if name in core.starting or any(known.name == name for known in core.subscriptions):
            raise InvalidArgument(f"a subscription named {name!r} is already running here")
        core.starting.add(name)


def started(core: StoreCore, subscription: Notified) -> None:
    """Register a subscription whose start succeeded (pushes now reach it)."""
    with core.lock:
        core.subscriptions = (*core.subscriptions, subscription)
        core.starting.discard(subscription.name)


def start_failed(core: StoreCore, subscription: Notified) -> None:
    """Forget a subscription whose start failed: nothing of it stays registered."""
    with core.lock:
        core.subscriptions = tuple(s for s in core.subscriptions if s is not subscription)
        core.starting.discard(subscription.name)


def stopping(core: StoreCore, listener: object) -> list[Notified]:
    """Unregister a listener, or the subscriptions of ``listener``; returns those to stop."""
    with core.lock:
        core.listeners = tuple(item for item in core.listeners if item is not listener)
        found = [
            s
            for s in core.subscriptions
            if s is listener
            or s.driver.runner.projector is listener
            or getattr(s.driver.runner.projector, "target", None) is listener
            or getattr(s.driver.runner.projector, "origin", None) is listener
        ]
        core.subscriptions = tuple(s for s in core.subscriptions if s not in found)
    return found


def starting(core: StoreCore, subscription: Any) -> Op[None]:
    """Start a subscription and register it once its start succeeded (either face's).

    The name is reserved meanwhile, so that a second subscription of the same
    name is refused; a start that fails (an inline first catch-up stopped by a
    failing event) leaves nothing registered. An inline subscription catches up
    once more after registering: what others pushed during its first catch-up,
    before their pushes could see it.
    """
    reserve(core, subscription.name)
    try:
        yield Call(subscription.start)
        started(core, subscription)
        if subscription.mode == "inline":
            yield Call(subscription.catch_up)
    except BaseException:
        start_failed(core, subscription)
        yield Call(subscription.stop)
        raise
