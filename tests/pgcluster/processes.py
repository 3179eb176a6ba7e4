"""Processes, ports and waits of the test clusters: what the nodes run on.

Everything here is bounded: commands have timeouts, waits have deadlines, and
both raise :class:`ClusterError` with what they saw.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

DEFAULT_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
DEADLINE = 30.0
"""Seconds any start, stop, promotion or wait may take by default."""
PREFIX = "conduit-pgcluster-"
"""The clusters' directories, in the temporary directory: ``PREFIX<maker's pid>-<random>``."""

Setting = str | int | float | bool
"""A server setting's value, as written into a configuration file."""

_ports = random.SystemRandom()
_taken: set[int] = set()


class ClusterError(Exception):
    """A node of a test cluster failed to start, stop or catch up in time.

    The message names the node and quotes the tail of its server log.
    """


def parse_lsn(text: str) -> int:
    """A ``pg_lsn`` as PostgreSQL writes it (``16/B374D848``), as an integer."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    """An integer LSN in PostgreSQL's notation, the inverse of :func:`parse_lsn`."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on, never handed out twice by this process.

    Chosen below Linux's ephemeral range (32768-60999), where the client side of
    every connection on the machine takes its port from.
    """
    for _ in range(200):
        port = _ports.randrange(20000, 32000)
        if port in _taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise ClusterError("no free port found on 127.0.0.1 between 20000 and 32000")


def _render(value: Setting) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "'" + str(value).replace("'", "''") + "'"


def render_config(settings: Mapping[str, Setting]) -> str:
    """Lines of a configuration file setting ``settings``."""
    return "".join(f"{name} = {_render(value)}\n" for name, value in settings.items())


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie nobody reaps counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def wait_until(
    condition: Callable[[], bool],
    *,
    what: str,
    timeout: float = DEADLINE,
    report: Callable[[], str] = lambda: "",
) -> None:
    """Polls ``condition`` until it holds; after ``timeout`` seconds raises
    :class:`ClusterError` saying it was waiting for ``what``, with ``report()``."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while not condition():
        if time.monotonic() >= deadline:
            details = report()
            raise ClusterError(
                f"timed out after {timeout:.1f} s waiting for {what}"
                + (f"\n{details}" if details else "")
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def answers(probe: Callable[[], bool]) -> Callable[[], bool]:
    """``probe``, counting a refused or broken connection as "not yet"."""

    def condition() -> bool:
        try:
            return probe()
        except psycopg.OperationalError:
            return False

    return condition


def kill_postmaster(pid_file: Path, *, timeout: float = 10.0) -> None:
    """Stops the postmaster named by a ``postmaster.pid`` like ``pg_ctl -m immediate``
    (SIGQUIT), then with SIGKILL; only if its command line names that data directory."""
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (OSError, ValueError, IndexError):
        return
    if str(pid_file.parent).encode() not in cmdline:
        return  # the pid was reused by another process
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        with contextlib.suppress(ClusterError):
            wait_until(lambda: not alive(pid), timeout=timeout, what=f"pid {pid} to exit")
            return
    raise ClusterError(f"the postmaster {pid} of {pid_file.parent} survived SIGKILL")


def sweep_stale_clusters() -> list[Path]:
    """Removes the clusters of test runs that died without closing them (SIGKILL).

    A cluster's directory is named after the pid of the process that made it;
    the directories of processes still alive are left alone. Returns the
    directories removed.
    """
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        owner = re.fullmatch(rf"{PREFIX}(\d+)-\w+", path.name)
        if owner is None or int(owner[1]) == os.getpid() or alive(int(owner[1])):
            continue
        for pid_file in path.glob("*/postmaster.pid"):
            kill_postmaster(pid_file)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


@dataclass(frozen=True)
class Host:
    """How the cluster's commands run: which binaries, as which OS user, where."""

    bin_dir: Path
    root: Path
    user: str | None  # when we are root: run through runuser as this user

    def run(self, program: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        binary = self.bin_dir / program if "/" not in program else Path(program)
        argv = [str(binary), *args]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        try:
            return subprocess.run(
                argv,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{program} {' '.join(args)} ran longer than {timeout:g} s") from exc

    def check(self, program: str, *args: str, timeout: float) -> str:
        result = self.run(program, *args, timeout=timeout)
        if result.returncode != 0:
            raise ClusterError(
                f"{program} {' '.join(args)} failed (exit {result.returncode}):\n{result.stdout}"
            )
        return result.stdout

    def write(self, path: Path, text: str) -> None:
        """Writes a file the server's OS user can read."""
        path.write_text(text)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)


def server_user() -> str | None:
    if os.geteuid() != 0:
        return None  # the servers run as whoever runs the tests
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError(
            "running as root, the test servers need the postgres OS user, which does not "
            "exist (installing PostgreSQL creates it: apt-get install postgresql-15)"
        ) from None
    if shutil.which("runuser") is None:
        raise ClusterError("running as root, the test servers need runuser (util-linux)")
    return "postgres"
