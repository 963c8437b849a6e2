"""The blocking facade of ``def`` handlers (stargate.server.sync), from a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any, cast
from wsgiref.validate import validator

import pytest
from websockets.asyncio.client import connect

from stargate.errors import ConnectionClosed
from stargate.server import SyncWebSocket

from .support import TIMEOUT, StartServer, eventually, raw_connect, ws_app

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

pytestmark = pytest.mark.asyncio


def checked_app(handler: Any, **accept: Any) -> Any:
    """:func:`~.support.ws_app` under ``wsgiref.validate``: every environ the server builds
    and every use of the WSGI protocol by the server is checked by the standard library."""
    # support's StartResponse is a plain Callable; wsgiref's is a Protocol: the same thing.
    return validator(cast("WSGIApplication", ws_app(handler, **accept)))


async def test_receive_timeout_then_message(start_server: StartServer) -> None:
    events: list[str] = []

    def handler(ws: SyncWebSocket) -> None:
        assert threading.current_thread().name.startswith("stargate-websocket")
        try:
            ws.receive(timeout=0.1)
        except TimeoutError:
            events.append("timeout")
        ws.send("ready")
        events.append(str(ws.receive(timeout=TIMEOUT)))

    server = await start_server(checked_app(handler))
    async with connect(f"ws://127.0.0.1:{server.port}/") as client:
        assert await client.recv() == "ready"
        await client.send("hello")
        await client.wait_closed()
        assert client.close_code == 1000
    assert events == ["timeout", "hello"]


async def test_a_ping_that_timed_out_may_be_sent_again(start_server: StartServer) -> None:
    """A ping given up on (``timeout``) takes its pong waiter along: the same payload may be
    pinged again, and unanswered pings leave no waiters behind."""
    seen: list[str] = []

    def handler(ws: SyncWebSocket) -> None:
        for _ in range(2):
            try:
                ws.ping(b"abcd", timeout=0.2)
            except TimeoutError:
                seen.append("timeout")
        ws.send("done")
        with contextlib.suppress(ConnectionClosed):
            ws.receive()

    server = await start_server(checked_app(handler))
    client = await raw_connect(server.port)  # reads nothing it is not asked to: no pongs
    for _ in range(2):
        _, opcode, payload = await client.read_frame()
        assert (opcode, payload) == (0x9, b"abcd")
    _, opcode, payload = await client.read_frame()
    assert (opcode, payload) == (0x1, b"done")
    assert seen == ["timeout", "timeout"]  # not "a ping with this payload is waiting"
    (ws,) = server.websockets
    await eventually(lambda: not ws._pong_waiters)  # the cancel reaches the loop soon after
    client.abort()


async def test_receive_after_close_raises_connection_closed(start_server: StartServer) -> None:
    seen: list[Any] = []

    def handler(ws: SyncWebSocket) -> None:
        seen.append(ws.receive())
        try:
            ws.receive()
        except ConnectionClosed as exc:
            seen.append((exc.code, exc.reason, ws.closed, ws.close_code, ws.close_reason))
        try:
            ws.send("too late")
        except ConnectionClosed:
            seen.append("send refused")

    server = await start_server(checked_app(handler))
    async with connect(f"ws://127.0.0.1:{server.port}/") as client:
        await client.send(b"last")
        await client.close(4005, "gone")
    await eventually(lambda: len(seen) == 3)
    assert seen == [b"last", (4005, "gone", True, 4005, "gone"), "send refused"]


async def test_messages_received_before_close_are_still_read(start_server: StartServer) -> None:
    seen: list[str | bytes] = []
    go = threading.Event()

    def handler(ws: SyncWebSocket) -> None:
        go.wait(TIMEOUT)
        seen.extend(ws)  # iteration ends at the close, after every queued message

    server = await start_server(checked_app(handler))
    async with connect(f"ws://127.0.0.1:{server.port}/") as client:
        for i in range(3):
            await client.send(str(i))
    await eventually(lambda: not server.websockets)
    go.set()
    await eventually(lambda: not server.running_handlers)
    assert seen == ["0", "1", "2"]


async def test_attributes_and_close_callback(start_server: StartServer) -> None:
    seen: dict[str, Any] = {}
    called = threading.Event()

    def handler(ws: SyncWebSocket) -> None:
        seen.update(
            id=ws.id,
            path=ws.path,
            version=ws.version.value,
            closed=ws.closed,
            code=ws.close_code,
            repr=repr(ws),
        )
        ws.add_close_callback(lambda _: called.set())
        ws.close()

    server = await start_server(checked_app(handler))
    async with connect(f"ws://127.0.0.1:{server.port}/sync") as client:
        await client.wait_closed()
    await eventually(called.is_set)
    assert seen["path"] == "/sync"
    assert seen["version"] == "13"
    assert (seen["closed"], seen["code"]) == (False, None)
    assert seen["repr"].startswith("<SyncWebSocket #")


async def test_remove_close_callback(start_server: StartServer) -> None:
    """A callback removed from a thread is not called; one added after it still is (the
    close callbacks run in the order they were added, so the removed one would have run
    first)."""
    calls: list[str] = []
    done = threading.Event()

    def removed(_: object) -> None:
        calls.append("removed")

    def kept(_: object) -> None:
        calls.append("kept")
        done.set()

    def handler(ws: SyncWebSocket) -> None:
        ws.add_close_callback(removed)
        ws.add_close_callback(kept)
        ws.remove_close_callback(removed)
        ws.close()

    server = await start_server(checked_app(handler))
    async with connect(f"ws://127.0.0.1:{server.port}/") as client:
        await client.wait_closed()
    await eventually(done.is_set)
    assert calls == ["kept"]


async def test_many_sync_handlers_each_in_their_thread(start_server: StartServer) -> None:
    """Handlers block in receive() concurrently; each gets its own messages."""

    def handler(ws: SyncWebSocket) -> None:
        name = ws.receive()
        time.sleep(0.05)
        ws.send(f"hello {name!s}")

    server = await start_server(checked_app(handler), threads=8)
    clients = [await connect(f"ws://127.0.0.1:{server.port}/") for _ in range(6)]
    for i, client in enumerate(clients):
        await client.send(str(i))
    for i, client in enumerate(clients):
        assert await client.recv() == f"hello {i}"
        await client.close()


async def test_open_sync_handlers_do_not_starve_http(start_server: StartServer) -> None:
    """Each ``def`` handler holds a thread while its connection is open; the WSGI app must
    still be served when there are more of them than WSGI worker threads."""
    from .support import get

    def handler(ws: SyncWebSocket) -> None:
        for message in ws:
            ws.send(message)

    server = await start_server(checked_app(handler), threads=2)
    clients = [await connect(f"ws://127.0.0.1:{server.port}/") for _ in range(4)]
    for client in clients:
        await client.send("x")
        assert await client.recv() == "x"
    response = await asyncio.wait_for(get(server.port, "/page"), 2.0)
    assert (response.status, response.body) == (200, b"page /page")
    for client in clients:
        await client.close()


async def test_a_coroutine_reads_the_connection_of_a_def_handler(start_server: StartServer) -> None:
    """A ``def`` handler may leave reading to a coroutine on the loop (``ws.ws.receive()``):
    it wakes for each message like any reader (bug: once the blocking facade existed, a
    message woke only threads, and the coroutine waited until the connection closed)."""
    got: list[Any] = []

    def handler(ws: SyncWebSocket) -> None:
        ws.send("ready")
        for _ in range(2):
            future = asyncio.run_coroutine_threadsafe(ws.ws.receive(), ws.ws.loop)
            got.append(future.result(TIMEOUT))
            ws.send(f"got {got[-1]!r}")

    server = await start_server(checked_app(handler))
    async with connect(f"ws://127.0.0.1:{server.port}/") as client:
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "ready"
        await asyncio.sleep(0.1)  # the coroutine waits before the message comes
        await client.send("one")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "got 'one'"
        await client.send(b"two")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "got b'two'"
    assert got == ["one", b"two"]
