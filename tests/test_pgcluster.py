"""The replication test harness itself (tests/pgcluster/), on real PostgreSQL 15 clusters.

What the replica, failover and partition tests will build on: a standby shows
what the primary committed once it has replayed it, refuses writes, holds rows
back while its replay is paused, has them before the commit returns under
synchronous replication, and takes over after a crash of the primary; and the reader
horizon of docs/design.md §3.3 holds on a standby as on the primary. Run
alone with ``pytest -m replication``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgcluster
from pgcluster import (
    Cluster,
    ClusterError,
    Node,
    format_lsn,
    parse_lsn,
    start_cluster,
    sweep_stale_clusters,
    wait_until,
)
from pgcluster.processes import alive

pytestmark = [pytest.mark.replication, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A primary and an asynchronous hot standby shared by this module's tests,
    which leave it as they found it: both running, replay not paused."""
    with start_cluster() as cluster:
        yield cluster


@pytest.fixture
def table(cluster: Cluster) -> sql.Identifier:
    """A new empty table ``(x int)`` on the primary, already replayed by the standby."""
    name = sql.Identifier(f"t_{uuid.uuid4().hex[:10]}")
    cluster.primary.execute(sql.SQL("CREATE TABLE {} (x int)").format(name))
    cluster.wait_for_replay()
    return name


def xact_id(conn: psycopg.Connection[Any]) -> int:
    """The id of the connection's transaction (one is assigned if it has none)."""
    row = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
    assert row is not None
    return int(row[0])


def insert(conn: psycopg.Connection[Any], table: sql.Identifier, x: int) -> int:
    """Inserts ``x``; returns the id of the inserting transaction."""
    conn.execute(sql.SQL("INSERT INTO {} VALUES (%s)").format(table), [x])
    return xact_id(conn)


def values(node: Node, table: sql.Identifier) -> list[int]:
    """What ``node`` shows of ``table``."""
    return [row[0] for row in node.query(sql.SQL("SELECT x FROM {} ORDER BY x").format(table))]


def cluster_dirs() -> set[str]:
    """The names of this process's cluster directories (other test runs make theirs)."""
    pattern = f"conduit-pgcluster-{os.getpid()}-*"
    return {path.name for path in Path(tempfile.gettempdir()).glob(pattern)}


def test_a_row_committed_on_the_primary_reads_back_on_the_standby_after_the_replay_wait(
    cluster: Cluster, table: sql.Identifier
) -> None:
    cluster.primary.execute(sql.SQL("INSERT INTO {} VALUES (1), (2)").format(table))

    lsn = cluster.wait_for_replay()

    assert values(cluster.standby, table) == [1, 2]
    assert cluster.standby.replay_lsn() >= lsn
    assert cluster.standby.in_recovery()
    assert not cluster.primary.in_recovery()


def test_the_standby_refuses_writes(cluster: Cluster, table: sql.Identifier) -> None:
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        cluster.standby.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))

    assert values(cluster.primary, table) == []


def test_paused_replay_holds_a_received_row_back_until_it_resumes(
    cluster: Cluster, table: sql.Identifier
) -> None:
    cluster.standby.pause_replay()
    try:
        cluster.primary.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))
        cluster.wait_for_receive()  # the row's WAL is on the standby's disk...

        assert values(cluster.standby, table) == []  # ...yet not replayed
        assert cluster.lag() > 0
    finally:
        cluster.standby.resume_replay()
    cluster.wait_for_replay()

    assert values(cluster.standby, table) == [1]


def test_waiting_for_a_paused_standby_fails_naming_its_state(
    cluster: Cluster, table: sql.Identifier
) -> None:
    cluster.standby.pause_replay()
    try:
        cluster.primary.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))
        with pytest.raises(ClusterError, match=r"(?s)node2 to replay up to .* replay is paused"):
            cluster.wait_for_replay(timeout=0.5)
    finally:
        cluster.standby.resume_replay()
    cluster.wait_for_replay()


@pytest.mark.parametrize("wrote", [True, False], ids=["wrote-a-row", "only-took-an-xid"])
def test_an_open_transaction_on_the_primary_holds_the_standbys_horizon_back(
    cluster: Cluster, table: sql.Identifier, wrote: bool
) -> None:
    """docs/design.md §10, "Replicas": the reader horizon of the global log,
    ``pg_snapshot_xmin(pg_current_snapshot())``, holds on a hot standby. Even a
    transaction whose xid no WAL has shown yet holds it: the standby counts every
    xid below the newest it has seen as running until it sees its end."""
    horizon = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
    with cluster.primary.connect(autocommit=False) as holder:
        held = insert(holder, table, 1) if wrote else xact_id(holder)
        with cluster.primary.connect() as other:
            later = insert(other, table, 2)
        cluster.wait_for_replay()

        assert values(cluster.standby, table) == [2]  # committed later, replayed, visible...
        assert held < later
        assert cluster.standby.scalar(horizon) <= held  # ...but not below the horizon
        holder.commit()

    # A commit that wrote nothing is not flushed at once: the WAL writer sends it soon.
    wait_until(lambda: cluster.standby.scalar(horizon) > held, what="the horizon to pass it")
    assert values(cluster.standby, table) == ([1, 2] if wrote else [2])


def test_stopped_nodes_start_again_and_the_standby_catches_up(
    cluster: Cluster, table: sql.Identifier
) -> None:
    cluster.standby.stop("immediate")
    cluster.primary.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))
    cluster.standby.start()  # the slot kept the WAL it missed
    cluster.wait_for_replay()
    assert values(cluster.standby, table) == [1]

    cluster.primary.stop("fast")
    cluster.primary.start()
    cluster.primary.execute(sql.SQL("INSERT INTO {} VALUES (2)").format(table))
    cluster.wait_for_replay()  # the standby reconnected to it
    assert values(cluster.standby, table) == [1, 2]


def test_with_synchronous_replication_a_commit_returns_once_the_standby_applied_it() -> None:
    with start_cluster(synchronous="remote_apply") as cluster:
        cluster.primary.execute("CREATE TABLE t (x int)")
        assert cluster.primary.query(
            "SELECT application_name, sync_state FROM pg_stat_replication"
        ) == [(cluster.standby.name, "sync")]
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"

        cluster.standby.pause_replay()
        with ThreadPoolExecutor(1) as pool:
            commit = pool.submit(cluster.primary.execute, "INSERT INTO t VALUES (1)")
            try:
                wait_until(lambda: cluster.primary.scalar(waiting) == 1, what="a SyncRep wait")
                assert not commit.done()  # it cannot return before the standby applies it
            finally:
                cluster.standby.resume_replay()
            commit.result(timeout=30)

        assert cluster.standby.query("SELECT x FROM t") == [(1,)]  # no replay wait


def test_after_a_crash_and_a_promotion_the_multi_host_url_reaches_the_new_primary() -> None:
    with start_cluster() as cluster:
        old, new = cluster.primary, cluster.standby
        url = cluster.multi_host_url()  # made before the failover, as an application's
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            assert conn.execute("SELECT inet_server_port()").fetchone() == (old.port,)
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
        cluster.wait_for_replay()

        assert cluster.failover() is new  # old stopped with -m immediate, new promoted

        assert cluster.primary is new
        assert not old.running
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            assert conn.execute("SELECT inet_server_port()").fetchone() == (new.port,)
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
            conn.execute("INSERT INTO t VALUES (2)")

        standby = cluster.add_standby()  # re-attached to the new primary
        cluster.wait_for_replay()
        assert standby.query("SELECT x FROM t ORDER BY x") == [(1,), (2,)]
        root = cluster.root

    assert not root.exists()  # every node stopped, the directory removed


def test_a_node_that_fails_to_start_raises_with_its_log_and_leaves_nothing() -> None:
    before = cluster_dirs()

    with pytest.raises(ClusterError, match=r'invalid value for parameter "shared_buffers"'):
        start_cluster(standbys=0, settings={"shared_buffers": "plenty"})

    assert cluster_dirs() == before


def test_lsns_read_and_write_as_postgresql_does() -> None:
    assert parse_lsn("16/B374D848") == 0x16_B374_D848
    assert format_lsn(0x16_B374_D848) == "16/B374D848"
    assert format_lsn(parse_lsn("0/0")) == "0/0"


def test_missing_binaries_fail_naming_where_they_were_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"binaries are not in .* \(no initdb, pg_ctl"):
        start_cluster(bin_dir=tmp_path)


def test_a_port_taken_before_the_first_start_is_traded_for_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        ports = iter([busy])
        real = pgcluster.processes.free_port
        monkeypatch.setattr(pgcluster.node, "free_port", lambda: next(ports, None) or real())
        monkeypatch.setattr(pgcluster.cluster, "free_port", lambda: next(ports, None) or real())

        with start_cluster(standbys=0) as cluster:
            assert cluster.primary.port != busy
            assert cluster.primary.scalar("SELECT inet_server_port()") == cluster.primary.port
            assert "could not bind" in cluster.primary.log_tail(100)


def test_the_clusters_of_a_killed_test_run_are_removed_by_the_next_one() -> None:
    maker = subprocess.Popen(
        [sys.executable, "-c", MAKER],
        cwd=Path(__file__).parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert maker.stdout is not None
        line = maker.stdout.readline()  # bounded: the maker's start_cluster has deadlines
        assert line, "the child could not start its cluster (see its stderr)"
        root, pid = Path(line.split()[0]), int(line.split()[1])
        assert alive(pid)  # its postmaster runs...
    finally:
        maker.kill()  # ...and outlives it: a SIGKILL leaves no time to clean up
        maker.wait(timeout=30)

    sweep_stale_clusters()  # what every start_cluster() does first

    assert not root.exists()
    wait_until(lambda: not alive(pid), what=f"the postmaster {pid} to exit")


MAKER = """
import sys
from pgcluster import start_cluster
cluster = start_cluster(standbys=0)
print(cluster.root, cluster.primary.pid(), flush=True)
sys.stdin.read()
"""
