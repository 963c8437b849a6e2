"""Functional tests of a Pyramid app over real sockets: the server in a background thread.

::

    with ServerThread(config.make_wsgi_app()) as server:
        page = requests.get(server.url("/"))                      # any HTTP client
        with websockets.sync.client.connect(server.ws_url("/job-1")) as ws:
            ...

Pyramid's own ``pyramid.testing`` (and WebTest) covers views, predicates and security in
process; this covers what only a socket shows: the handshake, the Origin check, pushes.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ..server import Server, ServerConfig
from ..server.routing import Routes
from ..server.wsgi import WSGIApp

__all__ = ["ServerThread"]


class ServerThread:
    """A :class:`~stargate.server.Server` on its own event loop in a daemon thread.

    ``config`` defaults to ``ServerConfig(port=0)`` (an ephemeral port of 127.0.0.1); extra
    keyword arguments replace its fields.  Use as a context manager, or call :meth:`start`
    and :meth:`stop`.
    """

    def __init__(
        self, app: WSGIApp | Routes, config: ServerConfig | None = None, **overrides: Any
    ) -> None:
        if config is None:
            config = ServerConfig(**{"port": 0, **overrides})
        elif overrides:
            from dataclasses import replace

            config = replace(config, **overrides)
        self.server = Server(app, config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.server.config.ssl_context else "http"
        return f"{scheme}://{self._authority()}{path}"

    def ws_url(self, path: str = "/") -> str:
        scheme = "wss" if self.server.config.ssl_context else "ws"
        return f"{scheme}://{self._authority()}{path}"

    def _authority(self) -> str:
        """Where a client reaches the server: its host (a wildcard's loopback), bracketed
        when IPv6 (RFC 3986 section 3.2.2), and its port."""
        host = self.server.config.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ServerThread:
        """Start serving; returns once the port is bound (raises what the start raised)."""
        self._thread = threading.Thread(target=self._run, name="stargate-test-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("the server did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self.server.wait_stopped()

    def call(self, func: Any, *args: Any) -> None:
        """Run ``func(*args)`` on the server's loop (from the test's thread)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(func, *args)

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful shutdown (WebSockets closed with 1001), then join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self.server.shutdown(timeout), loop)
        try:
            future.result(timeout + 2.0)
        finally:
            thread.join(timeout + 2.0)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
