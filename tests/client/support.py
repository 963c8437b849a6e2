"""Helpers of the client tests: scripted fake servers, a byte-counting proxy, echo apps.

The fake servers do what well-behaved servers never do (refuse with a body, send a wrong
Sec-WebSocket-Accept, never answer, ignore pings and close frames); they are raw asyncio
streams, with the core's :func:`~stargate.handshake.accept_key` where a valid 101 is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl as ssl_module
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from stargate.connection import Connection
from stargate.events import Event
from stargate.handshake import accept_key
from stargate.protocol import Role
from stargate.server import Routes, WebSocket

#: Upper bound of every wait in these tests: a bug makes a test fail, never hang.
TIMEOUT = 20.0  # a bound (subprocess start-up on a loaded 2-core machine), never a wait

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class FakeServer:
    """A TCP server on 127.0.0.1 that runs ``script`` for each connection."""

    port: int
    requests: list[bytes] = field(default_factory=list)
    #: Bytes received after the handshake, per connection.
    received: list[bytearray] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


@contextlib.asynccontextmanager
async def fake_server(
    script: Script, ssl: ssl_module.SSLContext | None = None
) -> AsyncIterator[FakeServer]:
    """Run ``script(reader, writer)`` for each connection (over TLS with ``ssl``); closes
    everything after."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl)
    port = server.sockets[0].getsockname()[1]
    try:
        yield FakeServer(port)
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


def answering(response: bytes) -> Script:
    """A fake server's script: read the request's head, write ``response``, then hold the
    connection until the client closes it."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(response)
        await reader.read()

    return script


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)


def header(head: bytes, name: str) -> str | None:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def switching(head: bytes, *, accept: str | None = None, extra: str = "") -> bytes:
    """A 101 answering the request ``head`` (with a chosen accept value if given)."""
    key = header(head, "Sec-WebSocket-Key") or ""
    value = accept if accept is not None else accept_key(key)
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {value}\r\n{extra}\r\n"
    ).encode()


def closed_port() -> int:
    """A port of 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def server_events(data: bytes) -> list[Event]:
    """What a server-side core makes of bytes a client sent after the handshake."""
    return Connection(Role.SERVER).receive_data(data)


async def read_until_eof(reader: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await reader.read(65536):
        into += chunk


@dataclass
class Proxy:
    """A TCP proxy that counts the bytes going each way."""

    port: int
    upstream: int = 0  # client to server
    downstream: int = 0  # server to client


@contextlib.asynccontextmanager
async def counting_proxy(target_port: int) -> AsyncIterator[Proxy]:
    proxy = Proxy(0)
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool) -> None:
        try:
            while chunk := await reader.read(65536):
                if up:
                    proxy.upstream += len(chunk)
                else:
                    proxy.downstream += len(chunk)
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        for task in (
            asyncio.create_task(pipe(reader, up_writer, True)),
            asyncio.create_task(pipe(up_reader, writer, False)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await server.wait_closed()


# -- apps of our own server -------------------------------------------------------------------


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def request_info(ws: WebSocket) -> None:
    """Send what the handler saw of the request as one JSON text message, then echo."""
    await ws.send(
        json.dumps(
            {
                "path": ws.path,
                "query": ws.request.query,
                "headers": ws.request.headers.items(),
                "subprotocol": ws.subprotocol,
                "version": ws.version.value,
            }
        )
    )
    await echo(ws)


async def close_with(ws: WebSocket) -> None:
    """Close with the code and reason the client asks for: ``4001 bye``."""
    message = await ws.receive()
    assert isinstance(message, str)
    code, _, reason = message.partition(" ")
    await ws.close(int(code), reason)


def app_routes() -> Routes:
    return Routes(
        {"/echo": echo, "/info": request_info, "/close": close_with},
        default=echo,
        subprotocols=["chat.v2", "chat.v1"],
    )
