"""Partitions of a subscription: the stable hash of stream ids, and their keys."""

import hashlib
import subprocess
import sys
import uuid

import pytest

from conduit.errors import InvalidArgument
from conduit.subscriptions.partitions import (
    Partition,
    PartitionsChanged,
    check_partitions,
    partition_of,
    partitions_in,
)


def test_partition_of_is_the_first_four_bytes_of_the_md5_of_the_id_modulo_n() -> None:
    for stream_id in ("order-1", "café", uuid.UUID(int=7)):
        digest = hashlib.md5(str(stream_id).encode()).digest()
        assert partition_of(stream_id, 5) == int.from_bytes(digest[:4], "big") % 5


def test_partition_of_gives_the_documented_values() -> None:
    # Pinned: a change would move streams between partitions of existing projections.
    assert [partition_of(f"order-{n}", 4) for n in range(8)] == [0, 1, 1, 3, 0, 2, 3, 2]
    assert partition_of(uuid.UUID("12345678-1234-5678-1234-567812345678"), 16) == 15
    assert partition_of("café", 7) == 0


def test_partition_of_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from conduit.subscriptions.partitions import partition_of;"
        "print([partition_of(f'order-{n}', 4) for n in range(8)])"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": ":".join(sys.path)},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        assert out.strip() == "[0, 1, 1, 3, 0, 2, 3, 2]"


def test_a_partition_key_names_its_subscription_and_partition_and_reads_back() -> None:
    key = Partition(2, 4).key("people/v2")
    assert key == "conduit.partition/4/2/people/v2"
    assert Partition.of_key(key) == ("people/v2", Partition(2, 4))
    assert Partition.of_key("people") is None
    assert Partition.of_key("conduit.partition/4/9/people") is None


def test_a_partition_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        Partition(4, 4)


def test_partitions_in_counts_the_plain_checkpoint_as_one_partition() -> None:
    keys = ["people", Partition(0, 4).key("people"), Partition(1, 2).key("other")]
    assert partitions_in("people", keys) == {1, 4}
    assert partitions_in("other", keys) == {2}


def test_changing_the_number_of_partitions_is_refused_and_says_to_rebuild() -> None:
    keys = [Partition(i, 4).key("people") for i in range(4)]
    check_partitions("people", 4, keys)
    with pytest.raises(PartitionsChanged, match=r"checkpoints for 4 partitions.*rebuil"):
        check_partitions("people", 2, keys)
    with pytest.raises(PartitionsChanged, match="rebuil"):
        check_partitions("people", 3, ["people"])
