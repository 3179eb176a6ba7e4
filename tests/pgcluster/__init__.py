"""PostgreSQL clusters of the tests' own: a primary, hot standbys, failover.

Replica and failover tests stop, crash and promote servers, so they cannot use
the shared server on 127.0.0.1:5432: they start their own with the PostgreSQL
15 binaries (``initdb``, ``pg_basebackup -R``, ``pg_ctl``). Every server
listens on a free port of 127.0.0.1 and keeps its data, socket and log under
one temporary directory, which goes away with the cluster::

    with start_cluster() as cluster:          # a primary and one hot standby
        cluster.primary.execute("CREATE TABLE t (x int)")
        cluster.wait_for_replay()             # the standby has replayed it all
        assert cluster.standby.scalar("SELECT count(*) FROM t") == 0

Run as root (as the tests are here), the servers run as the ``postgres`` OS
user, which owns the temporary directory; run as anyone else, they run as
that user. Every wait has a deadline and fails with :class:`ClusterError`,
quoting the tail of the server's log. ``close()`` (or the end of the ``with``
block) stops every node with ``-m immediate`` and removes the directory; the
directory of a test run that was killed is removed by the next run.

The binaries come from ``bin_dir`` or ``CONDUIT_TEST_PG_BIN`` (default
``/usr/lib/postgresql/15/bin``). When they are missing, :func:`start_cluster`
raises: these tests fail, they never skip.

Modules: ``cluster`` (:class:`Cluster`, :func:`start_cluster`), ``node``
(:class:`Node`, one server), ``processes`` (commands, ports, waits, cleanup).
"""

from .cluster import BASE_SETTINGS, Cluster, SyncMode, start_cluster
from .node import Node, StopMode
from .processes import (
    DEADLINE,
    DEFAULT_BIN_DIR,
    ClusterError,
    Setting,
    format_lsn,
    free_port,
    parse_lsn,
    sweep_stale_clusters,
    wait_until,
)

__all__ = [
    "BASE_SETTINGS",
    "DEADLINE",
    "DEFAULT_BIN_DIR",
    "Cluster",
    "ClusterError",
    "Node",
    "Setting",
    "StopMode",
    "SyncMode",
    "format_lsn",
    "free_port",
    "parse_lsn",
    "start_cluster",
    "sweep_stale_clusters",
    "wait_until",
]
