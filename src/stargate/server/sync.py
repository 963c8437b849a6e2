"""A blocking facade over :class:`~stargate.server.websocket.WebSocket` for ``def`` handlers.

A synchronous handler runs in a worker thread; each call here hands its work to the event
loop and waits for it, so the loop never blocks on the handler and the handler sees the same
object model as an ``async def`` one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterator

from ..errors import ConnectionClosed
from ..handshake import Request
from ..masking import BytesLike
from ..protocol import CloseCode, ProtocolVersion
from .websocket import Message, WebSocket


class SyncWebSocket:
    """The blocking API: ``receive()``, ``send()``, iteration, ``ping()``, ``close()``."""

    def __init__(self, ws: WebSocket, loop: asyncio.AbstractEventLoop) -> None:
        self.ws = ws
        self._loop = loop
        self._cond = ws._sync_cond = threading.Condition()

    @property
    def id(self) -> int:
        return self.ws.id

    @property
    def request(self) -> Request:
        return self.ws.request

    @property
    def path(self) -> str:
        return self.ws.path

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    @property
    def version(self) -> ProtocolVersion:
        return self.ws.version

    @property
    def remote_address(self) -> tuple[str, int] | None:
        return self.ws.remote_address

    @property
    def closed(self) -> bool:
        return self.ws.closed

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str:
        return self.ws.close_reason

    @property
    def on_message(self) -> Callable[[Message], object] | None:
        return self.ws.on_message

    @on_message.setter
    def on_message(self, callback: Callable[[Message], object] | None) -> None:
        self.ws.on_message = callback

    def receive(self, timeout: float | None = None) -> Message:
        """The next message; raises ConnectionClosed when closed, TimeoutError on timeout."""
        ws = self.ws
        with self._cond:
            if not ws._inbox and not ws.closed:
                self._cond.wait_for(lambda: bool(ws._inbox) or ws.closed, timeout)
            if ws._inbox:
                message = ws._inbox.popleft()
            elif ws.closed:
                raise ws._closed_error()
            else:
                raise TimeoutError("no message within the timeout")
        if ws._reading_paused:
            self._loop.call_soon_threadsafe(self._maybe_resume)
        return message

    def _maybe_resume(self) -> None:
        ws = self.ws
        if ws._reading_paused and len(ws._inbox) <= ws._options.max_queue // 2:
            ws._resume_reading()

    def __iter__(self) -> Iterator[Message]:
        while True:
            try:
                yield self.receive()
            except ConnectionClosed:
                return

    def send(self, message: Message | BytesLike) -> None:
        """Send and wait until the transport is below its high-water mark."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self.ws._send_blocking, message, done)
        done.result()

    def ping(self, payload: bytes | None = None, timeout: float | None = None) -> float:
        """Ping and wait for the pong; returns the round trip in seconds."""
        return asyncio.run_coroutine_threadsafe(self.ws.ping(payload), self._loop).result(timeout)

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close and wait until the connection is closed."""
        asyncio.run_coroutine_threadsafe(self.ws.close(code, reason), self._loop).result()

    def add_close_callback(self, callback: Callable[[WebSocket], object]) -> None:
        self._loop.call_soon_threadsafe(self.ws.add_close_callback, callback)

    def __repr__(self) -> str:
        return "<Sync" + repr(self.ws)[1:]  # <SyncWebSocket #1 13 '/path' open>
