"""A primary and its hot standbys: start, replicate, wait, fail over, clean up."""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal

import psycopg
from psycopg import sql

from .node import Node, StopMode
from .processes import (
    DEADLINE,
    DEFAULT_BIN_DIR,
    PREFIX,
    ClusterError,
    Host,
    Setting,
    format_lsn,
    free_port,
    render_config,
    server_user,
    sweep_stale_clusters,
    wait_until,
)

SyncMode = Literal["on", "remote_write", "remote_apply"]
"""The primary's ``synchronous_commit`` in a synchronous cluster (``remote_apply``:
a commit returns once every standby has replayed it)."""

BASE_SETTINGS: dict[str, Setting] = {  # in the primary's postgresql.conf: standbys copy them
    "listen_addresses": "127.0.0.1",
    "wal_level": "replica",
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "hot_standby": True,
    # a standby's readers hold the primary's vacuum back instead of being cancelled
    "hot_standby_feedback": True,
    "shared_buffers": "16MB",
    "max_connections": 50,
    "fsync": True,
    "wal_receiver_status_interval": "1s",
    # a standby whose primary restarted reconnects within a second, not five
    "wal_retrieve_retry_interval": "1s",
    "log_line_prefix": "%m [%p] %q%a ",
}
_BINARIES = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
_open: set[Cluster] = set()


class Cluster:
    """A primary and its hot standbys, made by :func:`start_cluster`."""

    def __init__(self, host: Host, *, database: str, synchronous: SyncMode | None) -> None:
        self.host = host
        self.root = host.root
        """The temporary directory holding every node's data, log and socket."""
        self.database = database
        self.synchronous = synchronous
        self.nodes: list[Node] = []
        """Every node ever made, in order; stopped and former primaries too."""
        self.standbys: list[Node] = []
        """The standbys of the current primary."""
        self._primary: Node | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"<Cluster {self.root} primary={self._primary} standbys={self.standbys}>"

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def primary(self) -> Node:
        """The node that accepts writes (after :meth:`failover`, the promoted one)."""
        if self._primary is None:
            raise ClusterError("the cluster has no primary yet")
        return self._primary

    @property
    def standby(self) -> Node:
        """The first standby."""
        if not self.standbys:
            raise ClusterError("the cluster has no standby")
        return self.standbys[0]

    @property
    def url(self) -> str:
        """The primary's URL."""
        return self.primary.url

    def multi_host_url(
        self,
        *,
        target_session_attrs: str | None = "read-write",
        nodes: list[Node] | None = None,
        **params: str | int,
    ) -> str:
        """One URL naming every node (in the order they were made), for libpq to pick:
        ``postgresql://postgres@127.0.0.1:P1,127.0.0.1:P2/DB?target_session_attrs=read-write``.

        Made before a failover, it still reaches the primary after it.
        """
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in nodes or self.nodes)
        query = {"target_session_attrs": target_session_attrs, **params}
        encoded = "&".join(f"{key}={value}" for key, value in query.items() if value is not None)
        return f"postgresql://postgres@{hosts}/{self.database}" + (f"?{encoded}" if encoded else "")

    def _new_node(self) -> Node:
        name = f"node{len(self.nodes) + 1}"
        node = Node(name, self.root / name, free_port(), self.database, self.host)
        node.settings.update(port=node.port, cluster_name=name, synchronous_standby_names="")
        self.nodes.append(node)
        return node

    def _start_primary(self, settings: Mapping[str, Setting], timeout: float) -> None:
        node = self._new_node()
        self.host.check(
            "initdb", "-D", str(node.data_dir), "--auth=trust", "-U", "postgres",
            "-E", "UTF8", "--locale=C", "--no-sync", timeout=timeout + 30,
        )  # fmt: skip
        common = {
            **BASE_SETTINGS,
            "unix_socket_directories": str(self.root),
            "synchronous_commit": self.synchronous or "on",
            **settings,
        }
        with (node.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# conduit tests/pgcluster\n" + render_config(common))
            conf.write("include_if_exists = 'node.conf'  # this node's own settings\n")
        node.configure()
        node.start(timeout=timeout)
        if self.database != "postgres":
            with psycopg.connect(node.url_for("postgres"), autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        self._primary = node

    def add_standby(self, *, timeout: float = DEADLINE) -> Node:
        """A new hot standby of the current primary (``pg_basebackup -R -X stream`` with a
        replication slot of its name), started and streaming. In a synchronous cluster
        the primary then waits for it too. Also how a standby is re-attached after a
        failover."""
        primary = self.primary
        node = self._new_node()
        self.host.check(
            "pg_basebackup",
            "-d", f"host=127.0.0.1 port={primary.port} user=postgres application_name={node.name}",
            "-D", str(node.data_dir), "-R", "-X", "stream", "-C", "-S", node.name,
            "-c", "fast", "--no-sync", timeout=timeout + 30,
        )  # fmt: skip
        node.configure()
        node.start(timeout=timeout)
        self.standbys.append(node)
        self._wait_streaming(node, "async", timeout)
        if self.synchronous is not None:
            names = ", ".join(f'"{standby.name}"' for standby in self.standbys)
            primary.configure(
                synchronous_standby_names=f"FIRST {len(self.standbys)} ({names})", timeout=timeout
            )
            self._wait_streaming(node, "sync", timeout)
        return node

    def _wait_streaming(self, node: Node, sync_state: str, timeout: float) -> None:
        def streaming() -> bool:
            rows = self.primary.query(
                "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s",
                [node.name],
            )
            return bool(rows) and rows[0] == ("streaming", sync_state)

        wait_until(
            streaming,
            timeout=timeout,
            what=f"{node.name} to stream from {self.primary.name} ({sync_state})",
            report=node._describe,
        )

    def failover(
        self, to: Node | None = None, *, mode: StopMode = "immediate", timeout: float = DEADLINE
    ) -> Node:
        """Stops the primary (``immediate``: a crash) and promotes ``to`` (default: the first
        standby), which is the primary from then on. Returns it.

        Other standbys keep following the old primary: give the new one standbys of
        its own with :meth:`add_standby`.
        """
        target = to if to is not None else self.standby
        if target not in self.standbys:
            raise ClusterError(f"{target.name} is not a standby of {self.primary.name}")
        self.primary.stop(mode, timeout=timeout)
        target.promote(timeout=timeout)
        self.standbys.remove(target)
        self._primary = target
        return target

    def wait_for_replay(self, standby: Node | None = None, *, timeout: float = DEADLINE) -> int:
        """Waits until ``standby`` (default: every standby, so none may be stopped) has
        replayed the primary's current WAL position (``pg_current_wal_lsn()``), so that
        whatever the primary committed before the call is visible there. Returns it.

        Only WAL the primary has written counts: a commit that is not flushed at once
        (``synchronous_commit = off``, or a transaction that took an xid and wrote
        nothing) reaches the standby when the WAL writer flushes it, within
        ``wal_writer_delay`` (200 ms); wait for its effect instead."""
        return self._wait_for_lsn("replay", standby, timeout)

    def wait_for_receive(self, standby: Node | None = None, *, timeout: float = DEADLINE) -> int:
        """Waits until ``standby`` (default: every standby) has received and flushed the
        primary's current WAL position, replayed or not (replay may be paused). Returns
        that position."""
        return self._wait_for_lsn("receive", standby, timeout)

    def _wait_for_lsn(self, kind: str, standby: Node | None, timeout: float) -> int:
        target = self.primary.current_lsn()
        deadline = time.monotonic() + timeout
        for node in [standby] if standby is not None else list(self.standbys):
            self._wait_node(node, kind, target, deadline)
        return target

    @staticmethod
    def _wait_node(node: Node, kind: str, target: int, deadline: float) -> None:
        lsn = node.replay_lsn if kind == "replay" else node.receive_lsn

        def report() -> str:
            return (
                f"{node.name} is at {format_lsn(lsn())} and its replay is "
                f"{node.replay_state()}\n{node._describe()}"
            )

        wait_until(
            lambda: lsn() >= target,
            timeout=max(0.0, deadline - time.monotonic()),
            what=f"{node.name} to {kind} up to {format_lsn(target)}",
            report=report,
        )

    def lag(self, standby: Node | None = None) -> int:
        """How many bytes of the primary's WAL ``standby`` (default: the first) has yet
        to replay."""
        node = standby if standby is not None else self.standby
        return max(0, self.primary.current_lsn() - node.replay_lsn())

    def close(self) -> None:
        """Stops every node immediately and removes the directory. Idempotent."""
        if self.closed:
            return
        self.closed = True
        _open.discard(self)
        problems = []
        for node in reversed(self.nodes):
            try:
                node._stop_quietly()
            except ClusterError as exc:
                problems.append(str(exc))
        shutil.rmtree(self.root, ignore_errors=True)
        if problems:
            raise ClusterError("\n".join(problems))


def start_cluster(
    *,
    standbys: int = 1,
    synchronous: SyncMode | None = None,
    database: str = "conduit",
    settings: Mapping[str, Setting] | None = None,
    bin_dir: Path | str | None = None,
    timeout: float = DEADLINE,
) -> Cluster:
    """Starts a primary with a database ``database`` and ``standbys`` hot standbys.

    ``synchronous``: the primary waits for every standby before a commit returns
    (``synchronous_standby_names`` names them all), up to the point this
    ``synchronous_commit`` says — ``remote_apply``: a committed row is already
    visible on the standbys. A synchronous primary waits for a standby that is
    stopped or paused: commits hang until it is back. ``settings`` go into
    every node's configuration. On any failure what was started is stopped and
    removed before the error propagates.
    """
    directory = Path(bin_dir or os.environ.get("CONDUIT_TEST_PG_BIN") or DEFAULT_BIN_DIR)
    missing = [name for name in _BINARIES if not (directory / name).is_file()]
    if missing:
        raise ClusterError(
            f"the PostgreSQL server binaries are not in {directory} (no {', '.join(missing)}): "
            "install them (Debian: apt-get install postgresql-15) or set CONDUIT_TEST_PG_BIN"
        )
    user = server_user()
    sweep_stale_clusters()
    root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    host = Host(directory, root, user)
    cluster = Cluster(host, database=database, synchronous=synchronous)
    _open.add(cluster)
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        writable = host.run(shutil.which("test") or "/usr/bin/test", "-w", str(root), timeout=10)
        if writable.returncode != 0:
            raise ClusterError(
                f"the {user} OS user cannot write to {root}: point TMPDIR at a directory it "
                "can reach (pytest's tmp_path is private to root)"
            )
        cluster._start_primary(settings or {}, timeout)
        for _ in range(standbys):
            cluster.add_standby(timeout=timeout)
    except BaseException:
        cluster.close()
        raise
    return cluster


@atexit.register
def _close_forgotten() -> None:
    """A backstop for clusters nobody closed (an interrupted run)."""
    for cluster in list(_open):
        with contextlib.suppress(Exception):
            cluster.close()
