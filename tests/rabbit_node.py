"""A RabbitMQ node of the tests' own, with the stream plugin, on free local ports.

The machine's RabbitMQ (5672, streams on 5552) is shared by every test, so a test
that kills the broker starts its own: ``RabbitNode`` runs Debian's
``rabbitmq-server`` under another node name, with its data, logs, cookie and
enabled plugins in a temporary directory, AMQP, stream and distribution ports
picked free on 127.0.0.1. It is killed with SIGKILL (the whole process group:
the start script and the Erlang VM) and started again on the same data. Waits
are bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

from nats_cluster import answers, free_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class RabbitNode:
    """One RabbitMQ node; ``stream_port`` takes RabbitMQ Streams clients (guest/guest)."""

    def __init__(self, directory: Path) -> None:
        if not SERVER.exists():
            raise RuntimeError(f"{SERVER} is missing (Debian: apt-get install rabbitmq-server)")
        self.directory = directory
        self.amqp_port, self.stream_port, self.dist_port = (free_port() for _ in range(3))
        self.name = f"conduittest{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}\n"
            f"stream.listeners.tcp.1 = 127.0.0.1:{self.stream_port}\n"
            "stream.advertised_host = 127.0.0.1\n"
            f"stream.advertised_port = {self.stream_port}\n"
            # the shared node's guest may log in from loopback only; so may this one's
            "loopback_users.guest = true\n"
        )
        (directory / "enabled_plugins").write_text("[rabbitmq_stream].\n")
        (directory / "rabbitmq-env.conf").write_text("")  # not /etc's NODENAME

    def _env(self) -> dict[str, str]:
        d = self.directory
        return {
            **os.environ,
            "HOME": str(d),  # its own Erlang cookie
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self, timeout: float = 90.0) -> None:
        log = open(self.directory / "server.out", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(SERVER)],
            env=self._env(),
            cwd=self.directory,  # where the VM would drop a crash dump
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.time() + timeout
        while not answers(self.stream_port):
            if self.process.poll() is not None:
                tail = (self.directory / "server.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"rabbitmq-server exited while starting:\n{tail}")
            if time.time() > deadline:
                raise RuntimeError(f"rabbitmq-server not listening after {timeout:.0f}s")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM the node: the VM shuts RabbitMQ down in order, as a restart does."""
        self._signal(signal.SIGTERM, wait=60)

    def kill(self) -> None:
        """SIGKILL the node (script and VM), as a crash would; its data stays."""
        self._signal(signal.SIGKILL, wait=20)

    def _signal(self, signum: int, wait: float) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
        try:
            self.process.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(20)
        self.process = None
        deadline = time.time() + 20
        while answers(self.stream_port) and time.time() < deadline:
            time.sleep(0.1)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
