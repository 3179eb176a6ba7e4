"""One PostgreSQL server of a test cluster: SQL, start, stop, promotion, replay."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.abc import Params

from .processes import (
    DEADLINE,
    ClusterError,
    Host,
    Setting,
    answers,
    free_port,
    kill_postmaster,
    parse_lsn,
    render_config,
    wait_until,
)

StopMode = Literal["smart", "fast", "immediate"]
"""pg_ctl's shutdown modes; ``immediate`` is a crash (recovery at the next start)."""
Query = str | sql.SQL | sql.Composed

_GENERATION = "conduit_pgcluster.generation"  # a placeholder setting: tells a reload happened
_BIND_FAILED = ("could not bind", "Address already in use")


@dataclass(eq=False, repr=False)
class Node:
    """One PostgreSQL server of a :class:`Cluster`: a primary or a hot standby."""

    name: str
    """Also its ``cluster_name``, its ``application_name`` on the primary, its slot."""
    data_dir: Path
    port: int
    database: str
    """The database its :attr:`url` and queries use: the cluster's."""
    host: Host
    settings: dict[str, Setting] = field(default_factory=dict)
    """This node's own settings (its ``node.conf``): see :meth:`configure`."""
    generation: int = 0

    def __repr__(self) -> str:
        return f"<Node {self.name} 127.0.0.1:{self.port}>"

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/DATABASE``."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """The URL of another database of this node."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        """The server's log (outside its data directory, so standbys do not copy it)."""
        return self.host.root / f"{self.name}.log"

    def log_tail(self, lines: int = 25, *, since: int = 0) -> str:
        """The last lines of the server's log (after byte offset ``since``)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _describe(self) -> str:
        return f"--- the end of {self.log_path} ---\n{self.log_tail()}"

    # -- SQL ---------------------------------------------------------------

    def connect(self, *, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new psycopg connection to this node's database (autocommit unless told)."""
        kwargs.setdefault("connect_timeout", 5)
        return psycopg.connect(self.url, autocommit=autocommit, **kwargs)

    def query(self, query: Query, params: Params | None = None) -> list[tuple[Any, ...]]:
        """The rows of one statement, run on a connection of its own."""
        with self.connect() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description is not None else []

    def execute(self, query: Query, params: Params | None = None) -> None:
        """Runs one statement (committed) on a connection of its own."""
        self.query(query, params)

    def scalar(self, query: Query, params: Params | None = None) -> Any:
        """The first column of the first row of one statement."""
        rows = self.query(query, params)
        return rows[0][0] if rows else None

    def in_recovery(self) -> bool:
        """Whether it is a standby (``pg_is_in_recovery()``)."""
        return bool(self.scalar("SELECT pg_is_in_recovery()"))

    # -- life --------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether its postmaster runs (``pg_ctl status``)."""
        if not self.data_dir.is_dir():
            return False
        status = self.host.run("pg_ctl", "status", "-D", str(self.data_dir), timeout=10)
        return status.returncode == 0

    def pid(self) -> int | None:
        """The postmaster's pid, while it runs."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self, *, timeout: float = DEADLINE) -> None:
        """Starts the server and waits until it accepts connections.

        On its first start a node whose port was taken meanwhile (by another test
        run) moves to another one; later starts keep the port, since URLs name it.
        """
        first = not self.log_path.exists()
        for attempt in range(3):
            since = self.log_path.stat().st_size if self.log_path.exists() else 0
            result = self.host.run(
                "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path),
                "-w", "-t", str(round(timeout)), timeout=timeout + 15,
            )  # fmt: skip
            if result.returncode == 0:
                return
            tail = self.log_tail(40, since=since)
            self._stop_quietly()
            if first and attempt < 2 and any(sign in tail for sign in _BIND_FAILED):
                self.port = free_port()
                self.configure(port=self.port)
                continue
            raise ClusterError(
                f"{self.name} did not start on 127.0.0.1:{self.port} within {timeout:g} s:\n"
                f"{result.stdout.strip()}\n--- {self.log_path} ---\n{tail}"
            )

    def stop(self, mode: StopMode = "fast", *, timeout: float = DEADLINE) -> None:
        """Stops the server (nothing to do when it is stopped)."""
        if not self.running:
            return
        result = self.host.run(
            "pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode,
            "-w", "-t", str(round(timeout)), timeout=timeout + 15,
        )  # fmt: skip
        if result.returncode != 0:
            raise ClusterError(
                f"{self.name} did not stop ({mode}) within {timeout:g} s:\n"
                f"{result.stdout.strip()}\n{self._describe()}"
            )

    def _stop_quietly(self) -> None:
        """Stops it immediately, with signals if pg_ctl cannot: for cleanups."""
        if not self.running:
            return
        with contextlib.suppress(ClusterError):
            self.stop("immediate", timeout=10)
            return
        kill_postmaster(self.data_dir / "postmaster.pid")

    def promote(self, *, timeout: float = DEADLINE) -> None:
        """Promotes a standby (``pg_ctl promote``) and waits until it accepts writes."""
        result = self.host.run(
            "pg_ctl", "promote", "-D", str(self.data_dir), "-w", "-t", str(round(timeout)),
            timeout=timeout + 15,
        )  # fmt: skip
        if result.returncode != 0:
            raise ClusterError(f"{self.name} was not promoted:\n{result.stdout}{self._describe()}")
        wait_until(
            answers(lambda: not self.in_recovery()),
            timeout=timeout,
            what=f"{self.name} to leave recovery",
            report=self._describe,
        )

    def configure(self, *, timeout: float = DEADLINE, **settings: Setting) -> None:
        """Sets this node's own settings and, if it runs, reloads them and waits until
        they hold (those that need a restart take effect at the next :meth:`start`).

        After the reload a primary runs a ``CHECKPOINT``: the checkpointer is the
        process that tells committing sessions about ``synchronous_standby_names``,
        and it has read the new settings once a checkpoint it was asked for is done.
        """
        self.settings.update(settings)
        self.generation += 1
        self.host.write(
            self.data_dir / "node.conf",
            render_config({**self.settings, _GENERATION: str(self.generation)}),
        )
        if not self.running:
            return
        self.execute("SELECT pg_reload_conf()")
        generation = str(self.generation)

        def reloaded() -> bool:
            value = self.scalar("SELECT current_setting(%s, true)", [_GENERATION])
            return bool(value == generation)

        wait_until(
            answers(reloaded),
            timeout=timeout,
            what=f"{self.name} to reload its settings",
            report=self._describe,
        )
        errors = self.query(
            "SELECT name, error FROM pg_file_settings WHERE error IS NOT NULL"
            " AND error <> 'setting could not be applied'"
        )
        if errors:
            raise ClusterError(f"{self.name} refused settings {errors}:\n{self._describe()}")
        if not self.in_recovery():
            self.execute("CHECKPOINT")

    # -- WAL ---------------------------------------------------------------

    def current_lsn(self) -> int:
        """A primary's WAL write position (``pg_current_wal_lsn()``)."""
        return parse_lsn(self.scalar("SELECT pg_current_wal_lsn()"))

    def replay_lsn(self) -> int:
        """How far a standby has replayed (``pg_last_wal_replay_lsn()``)."""
        return self._standby_lsn("pg_last_wal_replay_lsn")

    def receive_lsn(self) -> int:
        """How far a standby has received WAL and flushed it (``pg_last_wal_receive_lsn()``)."""
        return self._standby_lsn("pg_last_wal_receive_lsn")

    def _standby_lsn(self, function: str) -> int:
        value = self.scalar(sql.SQL("SELECT {}()").format(sql.Identifier(function)))
        if value is None:
            raise ClusterError(f"{self.name} is not a standby: {function}() is NULL")
        return parse_lsn(value)

    def replay_state(self) -> str:
        """``not paused``, ``pause requested`` or ``paused``."""
        return str(self.scalar("SELECT pg_get_wal_replay_pause_state()"))

    def pause_replay(self, *, timeout: float = DEADLINE) -> None:
        """Pauses a standby's replay, and waits until it has paused: WAL still
        arrives (see ``wait_for_receive``), nothing more becomes visible."""
        self.execute("SELECT pg_wal_replay_pause()")
        wait_until(
            lambda: self.replay_state() == "paused",
            timeout=timeout,
            what=f"{self.name} to pause its replay",
            report=self._describe,
        )

    def resume_replay(self) -> None:
        """Resumes a standby's replay."""
        self.execute("SELECT pg_wal_replay_resume()")
