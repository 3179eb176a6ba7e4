"""A three-node NATS JetStream cluster of the tests' own, on free local ports.

``NatsCluster`` starts ``nats-server`` three times with JetStream, a cluster
name, server names and routes to each other (127.0.0.1 only), each with its
store in a temporary directory; it kills and restarts nodes, and stops them
all at the end. Waits are bounded.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class NatsCluster:
    """Three JetStream servers in one cluster; ``servers`` are their client URLs."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        if shutil.which("nats-server") is None:
            raise RuntimeError("nats-server is not installed (Debian: apt-get install nats-server)")
        self.directory = directory
        self.ports = [free_port() for _ in range(size)]
        self.routes = [free_port() for _ in range(size)]
        self.names = [f"n{i}" for i in range(size)]
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * size

    @property
    def servers(self) -> list[str]:
        return [f"nats://127.0.0.1:{port}" for port in self.ports]

    def start(self, node: int) -> None:
        routes = ",".join(f"nats://127.0.0.1:{p}" for i, p in enumerate(self.routes) if i != node)
        store = self.directory / self.names[node]
        store.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / f"{self.names[node]}.log", "ab")  # noqa: SIM115
        self.processes[node] = subprocess.Popen(
            [
                "nats-server",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.ports[node]),
                "-n",
                self.names[node],
                "-js",
                "-sd",
                str(store),
                "--cluster_name",
                "conduit-test",
                "--cluster",
                f"nats://127.0.0.1:{self.routes[node]}",
                "--routes",
                routes,
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 20
        while not answers(self.ports[node]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server {self.names[node]} did not start")
            time.sleep(0.05)

    def kill(self, node: int) -> None:
        process = self.processes[node]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        self.processes[node] = None

    def __enter__(self) -> Self:
        for node in range(len(self.ports)):
            self.start(node)
        asyncio.run(self.wait_for_jetstream())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for node in range(len(self.ports)):
            self.kill(node)

    async def wait_for_jetstream(self, timeout: float = 30.0) -> None:
        """Until the cluster's JetStream answers (it has elected its meta leader)."""
        import nats

        deadline = time.monotonic() + timeout
        while True:
            try:
                nc = await nats.connect(servers=self.live_servers(), connect_timeout=2)
                try:
                    await nc.jetstream(timeout=2).account_info()
                    return
                finally:
                    await nc.close()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def live_servers(self) -> list[str]:
        return [
            url
            for url, process in zip(self.servers, self.processes, strict=True)
            if process is not None
        ]

    async def stream_leader(self, stream: str, timeout: float = 30.0) -> int:
        """The node that leads ``stream`` (once it has a leader)."""
        import nats

        deadline = time.monotonic() + timeout
        while True:
            try:
                nc = await nats.connect(servers=self.live_servers(), connect_timeout=2)
                try:
                    info = await nc.jetstream(timeout=2).stream_info(stream)
                finally:
                    await nc.close()
                if info.cluster is not None and info.cluster.leader in self.names:
                    return self.names.index(info.cluster.leader)
            except Exception:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"stream {stream} has no leader")
            await asyncio.sleep(0.2)
