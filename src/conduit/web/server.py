"""Serving the application with uvicorn: in the foreground, or in a background thread.

The application's lifespan runs (it opens the store and closes what it
opened). Live tails are never-ending responses: on shutdown the server first
tells them to end (``app.state.stopping``), so that uvicorn can close every
connection instead of cancelling them after its grace period.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import threading
import time
from collections.abc import Generator
from types import FrameType, TracebackType
from typing import Self

import uvicorn
from starlette.applications import Starlette

from conduit.web.stopping import Stopping

__all__ = ["BackgroundServer", "serve", "serve_forever"]


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, stopping: Stopping) -> None:
        super().__init__(config)
        self.stopping = stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopping.set()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Like uvicorn's, without raising the signal again once stopped: Ctrl-C
        # and SIGTERM are the way to stop the server, and it exits with 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _server(app: Starlette, host: str, port: int) -> _Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
        server_header=False,
        # uvicorn would believe X-Forwarded-For and -Proto from 127.0.0.1 by default;
        # the application does, and only when told the proxy is trusted.
        proxy_headers=False,
    )
    return _Server(config, app.state.stopping)


async def serve(app: Starlette, *, host: str, port: int) -> None:
    """Serve ``app`` (made by :func:`conduit.web.create_app`) in the running event loop,
    until SIGINT or SIGTERM (``conduit serve``: the loop its store was opened in)."""
    await _server(app, host, port).serve()


def serve_forever(app: Starlette, *, host: str, port: int) -> None:
    """Serve ``app`` (made by :func:`conduit.web.create_app`) in an event loop of its own,
    until SIGINT or SIGTERM."""
    _server(app, host, port).run()


class BackgroundServer:
    """Serve ``app`` (made by :func:`conduit.web.create_app`) in a daemon thread.

    Use it as a context manager::

        with BackgroundServer(create_app(store)) as server:
            httpx.get(server.url + "/api/log")

    Args:
        app: the application.
        host: the address to listen on (loopback by default).
        port: the port; 0 picks a free one, which :attr:`url` tells.
        start_timeout: seconds to wait for the server to listen.
        loop: an event loop running in another thread to serve in, such as the
            loop of the ``AsyncEventStore`` the application serves
            (:class:`conduit.testing.aio.LoopThread`); by default the server
            runs a loop in a thread of its own.
    """

    def __init__(
        self,
        app: Starlette,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout: float = 10,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.server = _server(app, host, port)
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self._loop = loop
        self._serving: concurrent.futures.Future[None] | None = None
        self._thread = threading.Thread(target=self.server.run, name="conduit-web", daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL, such as ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Start serving; returns once the server listens.

        Raises:
            RuntimeError: the server did not start within ``start_timeout``.
        """
        if self._loop is None:
            self._thread.start()
        else:
            self._serving = asyncio.run_coroutine_threadsafe(self.server.serve(), self._loop)
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self._running() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start on {self.host}")
            time.sleep(0.01)
        sockets = [s for server in self.server.servers for s in server.sockets]
        self.port = sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Stop serving; open live tails end within a fraction of a second."""
        self.server.stopping.set()
        self.server.should_exit = True
        if self._serving is None:
            self._thread.join(10)
        else:
            with contextlib.suppress(concurrent.futures.TimeoutError):
                self._serving.result(10)

    def _running(self) -> bool:
        if self._serving is None:
            return self._thread.is_alive()
        return not self._serving.done()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
