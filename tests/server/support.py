"""Helpers of the server tests: a raw HTTP response reader, a raw WebSocket client built on
the core's :class:`~stargate.handshake.ClientHandshake`, WSGI apps, polling.

The raw client exists to do what well-behaved clients never do (send unmasked frames, never
answer pings, vanish mid-frame, not read); the tests that check interoperability use the
``websockets`` library instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from wsgiref.validate import validator

from stargate.handshake import ClientHandshake
from stargate.protocol import Opcode
from stargate.server import ENVIRON_KEY, Server, Upgrade
from stargate.server.wsgi import StartResponse, WSGIApp

#: Upper bound of every wait in these tests: a bug makes a test fail, never hang.
TIMEOUT = 5.0


class StartServer(Protocol):
    """The ``start_server`` fixture: ``await start_server(app, **ServerConfig fields)``."""

    def __call__(self, app: Any, **config: Any) -> Awaitable[Server]: ...


async def eventually(
    predicate: Callable[[], bool], timeout: float = TIMEOUT, interval: float = 0.01
) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


# -- HTTP ------------------------------------------------------------------------------------


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    #: The chunk sizes of a chunked body, in order (the terminating 0 excluded).
    chunks: list[int] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


async def open_tcp(
    port: int, *, ssl_context: ssl.SSLContext | None = None, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to the server; ``rcvbuf`` shrinks the kernel's receive buffer (set
    before connecting, so the advertised window stays small) to make a slow reader."""
    if rcvbuf is None:
        return await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1",
                port,
                ssl=ssl_context,
                server_hostname="localhost" if ssl_context else None,
            ),
            TIMEOUT,
        )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    # A small stream limit too: the reader must not drain the kernel buffer into userspace.
    return await asyncio.open_connection(sock=sock, limit=rcvbuf)


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> HttpResponse:
    """Read one response: a Content-Length or chunked body, or up to EOF (``head``: none)."""
    line = await asyncio.wait_for(reader.readuntil(b"\r\n"), TIMEOUT)
    version, status, reason = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    assert version in ("HTTP/1.1", "HTTP/1.0"), line
    headers: list[tuple[str, str]] = []
    while True:
        line = await asyncio.wait_for(reader.readuntil(b"\r\n"), TIMEOUT)
        if line == b"\r\n":
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name, value.strip()))
    response = HttpResponse(int(status), reason, headers)
    code = response.status
    if head or code < 200 or code in (204, 304):
        return response
    length = response.header("Content-Length")
    if length is not None:
        response.body = await asyncio.wait_for(reader.readexactly(int(length)), TIMEOUT)
    elif (response.header("Transfer-Encoding") or "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int(await asyncio.wait_for(reader.readuntil(b"\r\n"), TIMEOUT), 16)
            data = await asyncio.wait_for(reader.readexactly(size + 2), TIMEOUT)
            assert data.endswith(b"\r\n")
            if size == 0:
                break
            response.chunks.append(size)
            body += data[:-2]
        response.body = bytes(body)
    else:
        response.body = await asyncio.wait_for(reader.read(), TIMEOUT)
    return response


async def request(
    port: int, raw: bytes, *, head: bool = False, ssl_context: ssl.SSLContext | None = None
) -> tuple[HttpResponse, asyncio.StreamReader, asyncio.StreamWriter]:
    """Send raw request bytes on a new connection and read one response."""
    reader, writer = await open_tcp(port, ssl_context=ssl_context)
    writer.write(raw)
    return await read_response(reader, head=head), reader, writer


async def get(port: int, path: str = "/", headers: Sequence[tuple[str, str]] = ()) -> HttpResponse:
    """One GET on its own connection (closed after)."""
    lines = "".join(f"{n}: {v}\r\n" for n, v in headers)
    raw = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{lines}\r\n"
    response, _, writer = await request(port, raw.encode("latin-1"))
    writer.close()
    return response


async def read_to_eof(reader: asyncio.StreamReader, timeout: float = TIMEOUT) -> bytes:
    """Everything the server still sends until it closes (a reset ends it too); fails if
    the connection is still open after ``timeout``."""
    data = bytearray()
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout):
            data += chunk
    except ConnectionResetError:
        pass
    return bytes(data)


async def at_eof(reader: asyncio.StreamReader, timeout: float = TIMEOUT) -> bool:
    """Whether the server closes the connection (reads to EOF) within ``timeout``."""
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


# -- WebSocket, raw --------------------------------------------------------------------------


def encode_frame(
    opcode: int, payload: bytes, *, mask: bool = True, fin: bool = True, rsv: int = 0
) -> bytes:
    """A client frame (RFC 6455 section 5.2), written here rather than by the core under test."""
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode("utf-8")


class RawWebSocket:
    """A minimal RFC 6455 client on asyncio streams, for misbehaving on purpose."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(
        self, opcode: int, payload: bytes, *, mask: bool = True, fin: bool = True
    ) -> None:
        self.writer.write(encode_frame(opcode, payload, mask=mask, fin=fin))
        await self.writer.drain()

    async def send_text(self, text: str) -> None:
        await self.send(Opcode.TEXT, text.encode("utf-8"))

    async def read_frame(self, timeout: float = TIMEOUT) -> tuple[bool, int, bytes]:
        """``(fin, opcode, payload)`` of the next server frame (which must be unmasked)."""

        async def read() -> tuple[bool, int, bytes]:
            first, second = await self.reader.readexactly(2)
            assert not second & 0x80, "a server frame must not be masked (RFC 6455 5.1)"
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(length)
            return bool(first & 0x80), first & 0x0F, payload

        return await asyncio.wait_for(read(), timeout)

    async def read_until_close(self, timeout: float = TIMEOUT) -> tuple[int, str, list[bytes]]:
        """Skip data frames (returned) and pings until a close frame: ``(code, reason, data)``."""
        data: list[bytes] = []
        while True:
            _, opcode, payload = await self.read_frame(timeout)
            if opcode == Opcode.CLOSE:
                (code,) = struct.unpack("!H", payload[:2])
                return code, payload[2:].decode("utf-8"), data
            if opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION):
                data.append(payload)

    def abort(self) -> None:
        transport = self.writer.transport
        transport.abort()


async def raw_connect(
    port: int,
    path: str = "/",
    *,
    headers: Sequence[tuple[str, str]] = (),
    rcvbuf: int | None = None,
) -> RawWebSocket:
    """Open a WebSocket with the core's client handshake over a raw connection."""
    reader, writer = await open_tcp(port, rcvbuf=rcvbuf)
    handshake = ClientHandshake(f"127.0.0.1:{port}", path, extra_headers=headers)
    writer.write(handshake.request_bytes())
    while True:
        data = await asyncio.wait_for(reader.read(1), TIMEOUT)
        assert data, "connection closed during the handshake"
        result = handshake.receive(data)
        if result is not None:
            return RawWebSocket(reader, writer)


# -- apps ------------------------------------------------------------------------------------

#: The iterators :func:`validated` apps returned during the current test; the conftest checks
#: that the server closed every one (PEP 3333), which ``wsgiref.validate`` can only print.
validated_iterators: list[Any] = []


def validated(app: Any) -> WSGIApp:
    """``app`` behind ``wsgiref.validate.validator``: every environ the server builds and
    every call it makes on the app's response is checked by the standard library.  What the
    validator finds fails the test (see the conftest), even when the server turned it into a
    500 the test did not look at.

    Apps that hand over an invalid response on purpose (to see the server refuse it) cannot
    be wrapped: the validator would refuse it first, and the server's check go untested.
    """
    lint = validator(app)

    def checked(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        iterator: Iterable[bytes] = lint(environ, start_response)
        validated_iterators.append(iterator)
        return iterator

    return checked


def page_app(body: bytes = b"page") -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI app that serves ``body`` at every path, with its Content-Length (as most
    frameworks do: the framing does not depend on the server seeing a list)."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


def ws_app(
    handler: Any, **accept: Any
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI app that accepts every upgrade with ``handler`` (``accept`` goes to
    :meth:`Upgrade.accept`) and answers plain requests with ``page <path>``."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        upgrade: Upgrade | None = environ.get(ENVIRON_KEY)
        if upgrade is not None:
            upgrade.accept(handler, **accept)
            return []
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"page " + environ["PATH_INFO"].encode("latin-1")]

    return app


def worker_threads() -> int:
    """Live threads of stargate servers (WSGI workers, ``def`` handlers) in this process."""
    return sum(1 for t in threading.enumerate() if t.name.startswith("stargate-"))


class ClosingBody:
    """An app's iterable whose ``close`` fails (a framework's teardown hook), with a fresh
    exception each time: one kept in a test's parameters would hold, through its
    traceback, the server's objects for the rest of the session."""

    def __init__(self, chunks: list[bytes], error: type[BaseException]) -> None:
        self.chunks = chunks
        self.error = error

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        raise self.error("teardown failed")
