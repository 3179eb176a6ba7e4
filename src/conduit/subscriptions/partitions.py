"""Partitions of a subscription: which streams each of its N parts reads. Free of I/O.

A projection subscribed with ``partitions=N`` is split into N parts by a
stable hash of the stream id: **the first four bytes of the MD5 digest of the
stream id's text (UTF-8; a UUID by its canonical lower-case text), read as a
big-endian unsigned integer, modulo N**. MD5 is not used for security here,
only because every engine computes it the same way — Python's ``hashlib``
and PostgreSQL's ``md5()`` — in every process and every Python version
(Python's own ``hash()`` of a string changes from one process to the next).

Each partition has its own checkpoint and its own lease, both kept under
:meth:`Partition.key` — a name under Conduit's reserved ``conduit.`` prefix,
so that it can never be a user's subscription name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from conduit.errors import InvalidArgument, ProjectionError

__all__ = [
    "MAX_PARTITIONS",
    "PARTITION_PREFIX",
    "Partition",
    "PartitionsChanged",
    "check_count",
    "check_partitions",
    "partition_of",
    "partitions_in",
]

MAX_PARTITIONS = 1024
"""The most partitions a subscription may have."""

PARTITION_PREFIX = "conduit.partition/"
"""How a partition's checkpoint and lease names begin: ``conduit.partition/N/i/name``."""


def partition_of(stream_id: object, count: int) -> int:
    """The partition (0 to ``count - 1``) of a stream id, among ``count`` partitions."""
    digest = hashlib.md5(str(stream_id).encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % count


@dataclass(frozen=True, slots=True)
class Partition:
    """Partition ``index`` of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count <= MAX_PARTITIONS:
            raise InvalidArgument(
                f"partition {self.index} of {self.count}: a partition is one of 1 to "
                f"{MAX_PARTITIONS}",
                field="partitions",
            )

    def keeps(self, stream_id: object) -> bool:
        """Whether a stream's events belong to this partition."""
        return self.count == 1 or partition_of(stream_id, self.count) == self.index

    def key(self, name: str) -> str:
        """The name of this partition's checkpoint and lease, for subscription ``name``."""
        return f"{PARTITION_PREFIX}{self.count}/{self.index}/{name}"

    @classmethod
    def of_key(cls, key: str) -> tuple[str, Partition] | None:
        """The subscription name and partition a key names, or ``None`` for another name."""
        if not key.startswith(PARTITION_PREFIX):
            return None
        parts = key[len(PARTITION_PREFIX) :].split("/", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        try:
            return parts[2], cls(int(parts[1]), int(parts[0]))
        except InvalidArgument:
            return None

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def check_count(partitions: Any) -> int:
    """``partitions`` as a number of partitions.

    Raises:
        InvalidArgument: not an integer from 1 to :data:`MAX_PARTITIONS`.
    """
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise InvalidArgument("partitions is a whole number", field="partitions")
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise InvalidArgument(
            f"partitions is a number from 1 to {MAX_PARTITIONS}, not {partitions}",
            field="partitions",
        )
    return partitions


def partitions_in(name: str, keys: Iterable[str]) -> set[int]:
    """The partition counts that the checkpoint names ``keys`` hold for ``name``
    (1 for its own unpartitioned checkpoint)."""
    found: set[int] = set()
    for key in keys:
        if key == name:
            found.add(1)
            continue
        parsed = Partition.of_key(key)
        if parsed is not None and parsed[0] == name:
            found.add(parsed[1].count)
    return found


class PartitionsChanged(ProjectionError):
    """A projection was started with another number of partitions than its checkpoints
    were kept for; it must be rebuilt (or reset) first."""


def check_partitions(name: str, count: int, keys: Iterable[str]) -> None:
    """Refuse to run ``name`` with ``count`` partitions when checkpoints of another count exist.

    Raises:
        PartitionsChanged: the checkpoints were kept for another number of partitions.
    """
    others = sorted(partitions_in(name, keys) - {count})
    if not others:
        return
    held = " and ".join(str(n) for n in others)
    raise PartitionsChanged(
        f"projection {name!r} has checkpoints for {held} partition"
        f"{'' if others == [1] else 's'}; it cannot run with {count} unless it is "
        f"rebuilt: rebuild it with partitions={count} "
        f"(`conduit projections rebuild {name} --partitions {count}`), or reset it and "
        "forget its checkpoints, first"
    )
