"""WebSocket connections of the server (stargate.server.websocket), end to end.

Interoperability is checked with a client nobody here wrote (the ``websockets`` library);
hostile and legacy peers are raw sockets (hixie-76 built on the core's ClientHandshake,
hixie-75 and the draft-76 section 1.3 example written out byte by byte).  Every behaviour is
checked for both handler kinds: ``async def`` on the loop and ``def`` in a worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import json
import os
import random
import socket
import struct
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast
from wsgiref.validate import validator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed as ClientConnectionClosed
from websockets.typing import Origin, Subprotocol

from stargate.endpoint import ANSWER_GRACE
from stargate.errors import ConnectionClosed
from stargate.groups import Group
from stargate.handshake import ClientHandshake, OriginPolicy
from stargate.protocol import Opcode, ProtocolVersion
from stargate.server import (
    ENVIRON_KEY,
    Routes,
    Server,
    ServerConfig,
    SyncWebSocket,
    WebSocket,
    WebSocketOptions,
)
from tests.machine import require_module

from .support import (
    TIMEOUT,
    RawWebSocket,
    StartServer,
    at_eof,
    close_payload,
    encode_frame,
    eventually,
    get,
    open_tcp,
    raw_connect,
    read_response,
    request,
    worker_threads,
    ws_app,
)

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

pytestmark = pytest.mark.asyncio

T = TypeVar("T")


def checked_app(handler: Any, **accept: Any) -> Any:
    """:func:`~.support.ws_app` under ``wsgiref.validate``: every environ the server builds
    and every use of the WSGI protocol by the server is checked by the standard library."""
    # support's StartResponse is a plain Callable; wsgiref's is a Protocol: the same thing.
    return validator(cast("WSGIApplication", ws_app(handler, **accept)))


KINDS = ["async", "sync"]


def info(ws: WebSocket | SyncWebSocket) -> str:
    """What a handler can see of its request, as JSON."""
    return json.dumps(
        {
            "path": ws.path,
            "query": ws.request.query,
            "x-test": ws.request.headers.get("X-Test"),
            "remote": list(ws.remote_address or ()),
            "subprotocol": ws.subprotocol,
            "version": ws.version.value,
        }
    )


def make_handler(kind: str, received: list[str | bytes]) -> Any:
    """An echo handler of ``kind`` with a few commands; records what it receives."""

    async def async_handler(ws: WebSocket) -> None:
        async for message in ws:
            received.append(message)
            if message == "info":
                await ws.send(info(ws))
            elif message == "close":
                await ws.close(4001, "bye now")
                return
            elif message == "ping":
                rtt = await ws.ping()
                await ws.send(f"pong after {type(rtt).__name__}")
            elif message == "boom":
                raise RuntimeError("handler failure")
            else:
                await ws.send(message)

    def sync_handler(ws: SyncWebSocket) -> None:
        for message in ws:
            received.append(message)
            if message == "info":
                ws.send(info(ws))
            elif message == "close":
                ws.close(4001, "bye now")
                return
            elif message == "ping":
                rtt = ws.ping(timeout=TIMEOUT)
                ws.send(f"pong after {type(rtt).__name__}")
            elif message == "boom":
                raise RuntimeError("handler failure")
            else:
                ws.send(message)

    return async_handler if kind == "async" else sync_handler


async def echo_server(
    start_server: StartServer, kind: str, received: list[str | bytes] | None = None, **config: Any
) -> Server:
    handler = make_handler(kind, received if received is not None else [])
    return await start_server(checked_app(handler, subprotocols=["chat.v2", "chat.v1"]), **config)


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


# -- the websockets library as the client ----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_text_is_str_binary_is_bytes(start_server: StartServer, kind: str) -> None:
    received: list[str | bytes] = []
    server = await echo_server(start_server, kind, received)
    async with connect(url(server)) as client:
        await client.send("héllo")
        assert await client.recv() == "héllo"
        await client.send(b"\x00\xffbin")
        reply = await client.recv()
        assert reply == b"\x00\xffbin" and isinstance(reply, bytes)
        await client.send(bytearray(b"ba"))
        assert await client.recv() == b"ba"
        big = "x" * 200_000  # fragmented by nobody, but larger than one read
        await client.send(big)
        assert await client.recv() == big
    assert received[:3] == ["héllo", b"\x00\xffbin", b"ba"]
    assert [type(m) for m in received[:3]] == [str, bytes, bytes]


@pytest.mark.parametrize("kind", KINDS)
async def test_iteration_ends_when_the_client_closes(start_server: StartServer, kind: str) -> None:
    codes: list[int | None] = []
    done = threading.Event()

    async def async_handler(ws: WebSocket) -> None:
        count = 0
        async for _ in ws:
            count += 1
        codes.extend([count, ws.close_code])
        done.set()

    def sync_handler(ws: SyncWebSocket) -> None:
        count = 0
        for _ in ws:
            count += 1
        codes.extend([count, ws.close_code])
        done.set()

    server = await start_server(checked_app(async_handler if kind == "async" else sync_handler))
    async with connect(url(server)) as client:
        for i in range(5):
            await client.send(str(i))
        await client.close(4000, "client done")
    await eventually(done.is_set)
    assert codes == [5, 4000]


@pytest.mark.parametrize("kind", KINDS)
async def test_fragmented_message_from_client(start_server: StartServer, kind: str) -> None:
    server = await echo_server(start_server, kind)
    async with connect(url(server)) as client:
        await client.send(["frag", "mented"])
        assert await client.recv() == "fragmented"


@pytest.mark.parametrize("kind", KINDS)
async def test_ping_both_ways(start_server: StartServer, kind: str) -> None:
    server = await echo_server(start_server, kind)
    async with connect(url(server), ping_interval=None) as client:
        pong = await client.ping(b"client-ping")
        await asyncio.wait_for(pong, TIMEOUT)  # the server answered our ping
        await client.send("ping")  # the handler pings us and waits for our pong
        assert await client.recv() == "pong after float"


@pytest.mark.parametrize("kind", KINDS)
async def test_close_code_and_reason_seen_by_client(start_server: StartServer, kind: str) -> None:
    server = await echo_server(start_server, kind)
    async with connect(url(server)) as client:
        started = time.monotonic()
        await client.send("close")
        with pytest.raises(ClientConnectionClosed):
            await client.recv()
        await client.wait_closed()
        assert client.close_code == 4001
        assert client.close_reason == "bye now"
        assert time.monotonic() - started < 2.0  # the close handshake did not time out
    await eventually(lambda: not server.websockets)


@pytest.mark.parametrize("kind", KINDS)
async def test_handler_returning_closes_with_1000(start_server: StartServer, kind: str) -> None:
    async def async_handler(ws: WebSocket) -> None:
        await ws.send("bye")

    def sync_handler(ws: SyncWebSocket) -> None:
        ws.send("bye")

    server = await start_server(checked_app(async_handler if kind == "async" else sync_handler))
    async with connect(url(server)) as client:
        assert await client.recv() == "bye"
        await client.wait_closed()
        assert client.close_code == 1000


@pytest.mark.parametrize("kind", KINDS)
async def test_subprotocol_negotiation_uses_server_preference(
    start_server: StartServer, kind: str
) -> None:
    server = await echo_server(start_server, kind)
    async with connect(
        url(server), subprotocols=[Subprotocol("chat.v1"), Subprotocol("chat.v2")]
    ) as client:
        assert client.subprotocol == "chat.v2"
        await client.send("info")
        assert json.loads(await client.recv())["subprotocol"] == "chat.v2"
    async with connect(
        url(server), subprotocols=[Subprotocol("chat.v1"), Subprotocol("other")]
    ) as client:
        assert client.subprotocol == "chat.v1"
    async with connect(url(server)) as client:
        assert client.subprotocol is None
        await client.send("info")
        assert json.loads(await client.recv())["subprotocol"] is None


@pytest.mark.parametrize("kind", KINDS)
async def test_handler_sees_path_query_headers_remote_address(
    start_server: StartServer, kind: str
) -> None:
    server = await echo_server(start_server, kind)
    async with connect(
        url(server, "/room/42?user=ann&x=1"), additional_headers={"X-Test": "yes"}
    ) as client:
        await client.send("info")
        seen = json.loads(await client.recv())
        local = client.local_address
    assert seen == {
        "path": "/room/42",
        "query": "user=ann&x=1",
        "x-test": "yes",
        "remote": [local[0], local[1]],
        "subprotocol": None,
        "version": "13",
    }


@pytest.mark.parametrize("kind", KINDS)
async def test_handler_exception_closes_only_its_connection_with_1011(
    start_server: StartServer, kind: str
) -> None:
    server = await echo_server(start_server, kind)
    async with connect(url(server)) as failing, connect(url(server)) as other:
        await failing.send("boom")
        await failing.wait_closed()
        assert failing.close_code == 1011
        assert failing.close_reason == "internal error"
        await other.send("still here")
        assert await other.recv() == "still here"
    assert (await get(server.port, "/page")).status == 200


# -- bad handshakes --------------------------------------------------------------------------


def upgrade_request(
    path: str = "/",
    *,
    key: str = "dGhlIHNhbXBsZSBub25jZQ==",
    version: str = "13",
    origin: str | None = None,
    host: str = "localhost:8000",
) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Version: {version}",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_valid_handshake_bytes_rfc6455(start_server: StartServer) -> None:
    server = await echo_server(start_server, "async")
    response, _, writer = await request(
        server.port, upgrade_request(origin="http://localhost:8000"), head=True
    )
    assert response.status == 101
    # RFC 6455 section 1.3's example key and answer.
    assert response.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    writer.close()


@pytest.mark.parametrize(
    ("raw", "status", "reason_part", "header"),
    [
        (upgrade_request(key="not-a-valid-key"), 400, b"Sec-WebSocket-Key", None),
        (upgrade_request(key="AAAA"), 400, b"does not encode exactly 16 bytes", None),
        (
            upgrade_request(origin="http://evil.example"),
            403,
            b"origin 'http://evil.example' is not allowed",
            None,
        ),
        (
            upgrade_request(version="14"),
            426,
            b"unsupported Sec-WebSocket-Version '14'",
            ("Sec-WebSocket-Version", "13, 8, 7"),
        ),
        (
            upgrade_request().replace(b"GET", b"POST"),
            405,
            b"method 'POST' not allowed",
            ("Allow", "GET"),
        ),
    ],
)
async def test_bad_handshakes_are_refused_with_a_reason(
    start_server: StartServer,
    raw: bytes,
    status: int,
    reason_part: bytes,
    header: tuple[str, str] | None,
) -> None:
    server = await echo_server(start_server, "async")
    response, reader, writer = await request(server.port, raw)
    assert response.status == status
    assert reason_part in response.body
    if header is not None:
        assert response.header(header[0]) == header[1]
    if status == 426:
        assert response.header("Upgrade") == "websocket"  # RFC 7231 section 6.5.15
    assert await at_eof(reader)
    writer.close()


async def test_same_origin_passes_under_the_default_policy(start_server: StartServer) -> None:
    server = await echo_server(start_server, "async")
    host = f"127.0.0.1:{server.port}"
    async with connect(url(server), origin=Origin(f"http://{host}")) as client:
        await client.send("ok")
        assert await client.recv() == "ok"


async def test_upgrade_the_app_does_not_accept_gets_404_or_the_apps_status(
    start_server: StartServer,
) -> None:
    """An error or a redirect (RFC 6455 section 4.1: a handshake may be redirected) is the
    app's own answer, even after the view accepted (a tween overruled it); a page is a 404."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        if path == "/private":
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"members only"]
        if path.startswith("/login"):
            if path == "/login-after-accept":
                environ["stargate.websocket"].accept(make_handler("async", []))
            start_response("302 Found", [("Location", "/login"), ("Content-Type", "text/plain")])
            return [b"see /login"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"a page, not a websocket"]

    server = await start_server(validator(app))
    response, _, writer = await request(server.port, upgrade_request("/page"))
    assert response.status == 404
    assert response.body == (
        b"no WebSocket handler for /page (the application answered 200 without accepting "
        b"the upgrade)\n"
    )
    writer.close()
    response, _, writer = await request(server.port, upgrade_request("/private"))
    assert (response.status, response.body) == (403, b"members only")
    writer.close()
    # Unwrapped, a list body is sent whole (the validator's iterator is written in chunks).
    for each in (server, await start_server(app)):
        for path in ("/login-first", "/login-after-accept"):
            response, reader, writer = await request(each.port, upgrade_request(path))
            assert (response.status, response.header("Location")) == (302, "/login")
            assert response.body == b"see /login"
            assert await at_eof(reader)
            writer.close()
        assert each.running_handlers == 0


# -- hixie-76 and hixie-75 -------------------------------------------------------------------

DRAFT76_REQUEST = (
    b"GET /demo HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
    b"Sec-WebSocket-Protocol: sample\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
    b"Origin: http://example.com\r\n"
    b"\r\n"
    b"^n:ds[4U"
)
DRAFT76_RESPONSE = (
    b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Origin: http://example.com\r\n"
    b"Sec-WebSocket-Location: ws://example.com/demo\r\n"
    b"Sec-WebSocket-Protocol: sample\r\n"
    b"\r\n"
    b"8jKS'y:G*Co,Wxa-"
)


async def legacy_server(start_server: StartServer, kind: str, **config: Any) -> Server:
    handler = make_handler(kind, [])
    app = checked_app(
        handler,
        subprotocols=["sample"],
        origin_policy=OriginPolicy(allowed=("http://example.com",), same_origin=False),
    )
    return await start_server(app, **config)


@pytest.mark.parametrize("kind", KINDS)
async def test_hixie76_draft_example_bytes_and_messages(
    start_server: StartServer, kind: str
) -> None:
    server = await legacy_server(start_server, kind)
    reader, writer = await open_tcp(server.port)
    writer.write(DRAFT76_REQUEST)
    response = await asyncio.wait_for(reader.readexactly(len(DRAFT76_RESPONSE)), TIMEOUT)
    assert response == DRAFT76_RESPONSE
    writer.write(b"\x00hello\xff\x00info\xff")
    assert await asyncio.wait_for(reader.readuntil(b"\xff"), TIMEOUT) == b"\x00hello\xff"
    reply = await asyncio.wait_for(reader.readuntil(b"\xff"), TIMEOUT)
    assert reply[0] == 0
    assert json.loads(reply[1:-1])["version"] == "hixie-76"
    writer.write(b"\xff\x00")  # the closing handshake: echoed, then the server closes
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b"\xff\x00"
    writer.close()
    await eventually(lambda: not server.websockets)


@pytest.mark.parametrize("kind", KINDS)
async def test_hixie76_client_handshake_and_close_from_server(
    start_server: StartServer, kind: str
) -> None:
    server = await legacy_server(start_server, kind)
    reader, writer = await open_tcp(server.port)
    handshake = ClientHandshake(
        "example.com",
        "/chat?room=1",
        version=ProtocolVersion.HIXIE_76,
        origin="http://example.com",
        subprotocols=["sample"],
    )
    writer.write(handshake.request_bytes())
    buffer = b""
    result = None
    while result is None:
        data = await asyncio.wait_for(reader.read(1), TIMEOUT)
        assert data
        buffer += data
        result = handshake.receive(data)
    accepted, _ = result
    assert accepted.version is ProtocolVersion.HIXIE_76
    assert accepted.subprotocol == "sample"
    writer.write(b"\x00\xc3\xa9t\xc3\xa9\xff")
    assert (
        await asyncio.wait_for(reader.readuntil(b"\xff"), TIMEOUT) == b"\x00\xc3\xa9t\xc3\xa9\xff"
    )
    writer.write(b"\x00close\xff")  # the handler closes: hixie-76 sends 0xFF 0x00
    assert await asyncio.wait_for(reader.readexactly(2), TIMEOUT) == b"\xff\x00"
    writer.write(b"\xff\x00")
    assert await at_eof(reader)
    writer.close()


HIXIE75_REQUEST = (
    b"GET /demo HTTP/1.1\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Host: example.com\r\n"
    b"Origin: http://example.com\r\n"
    b"WebSocket-Protocol: sample\r\n"
    b"\r\n"
)
HIXIE75_RESPONSE = (
    b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\n"
    b"WebSocket-Origin: http://example.com\r\n"
    b"WebSocket-Location: ws://example.com/demo\r\n"
    b"WebSocket-Protocol: sample\r\n"
    b"\r\n"
)


@pytest.mark.parametrize("kind", KINDS)
async def test_hixie75_handshake_and_messages(start_server: StartServer, kind: str) -> None:
    server = await legacy_server(start_server, kind)
    reader, writer = await open_tcp(server.port)
    writer.write(HIXIE75_REQUEST)
    response = await asyncio.wait_for(reader.readexactly(len(HIXIE75_RESPONSE)), TIMEOUT)
    assert response == HIXIE75_RESPONSE
    writer.write(b"\x00one\xff\x00two\xff")
    assert await asyncio.wait_for(reader.readuntil(b"\xff"), TIMEOUT) == b"\x00one\xff"
    assert await asyncio.wait_for(reader.readuntil(b"\xff"), TIMEOUT) == b"\x00two\xff"
    writer.write(b"\x00close\xff")  # hixie-75 has no closing handshake: TCP just ends
    assert await at_eof(reader)
    writer.close()
    await eventually(lambda: not server.websockets)


async def test_legacy_protocols_can_be_turned_off(start_server: StartServer) -> None:
    server = await legacy_server(start_server, "async", legacy_protocols=False)
    response, _, writer = await request(server.port, DRAFT76_REQUEST)
    assert response.status == 426
    assert b"hixie-76 is disabled" in response.body
    writer.close()
    response, _, writer = await request(server.port, HIXIE75_REQUEST)
    assert response.status == 426
    writer.close()


# -- protocol errors and vanishing clients ----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_unmasked_frame_gets_close_1002(start_server: StartServer, kind: str) -> None:
    server = await echo_server(start_server, kind)
    ws = await raw_connect(server.port)
    await ws.send_text("masked first")
    assert await ws.read_frame() == (True, Opcode.TEXT, b"masked first")
    await ws.send(Opcode.TEXT, b"not masked", mask=False)
    code, _, _ = await ws.read_until_close()
    assert code == 1002
    assert await at_eof(ws.reader)
    await eventually(lambda: not server.websockets)


async def test_invalid_utf8_gets_close_1007(start_server: StartServer) -> None:
    server = await echo_server(start_server, "async")
    ws = await raw_connect(server.port)
    await ws.send(Opcode.TEXT, b"\xff\xfe")
    code, _, _ = await ws.read_until_close()
    assert code == 1007
    assert await at_eof(ws.reader)


async def test_message_over_the_limit_gets_close_1009(start_server: StartServer) -> None:
    from stargate.limits import Limits

    options = WebSocketOptions(limits=Limits(max_message_size=1000, max_frame_size=1000))
    server = await echo_server(start_server, "async", websocket=options)
    ws = await raw_connect(server.port)
    await ws.send(Opcode.BINARY, b"z" * 1001)
    code, _, _ = await ws.read_until_close()
    assert code == 1009


@pytest.mark.parametrize("kind", KINDS)
async def test_client_vanishing_mid_frame_frees_everything(
    start_server: StartServer, kind: str
) -> None:
    threads_before = worker_threads()
    server = await echo_server(start_server, kind, threads=4)
    ws = await raw_connect(server.port)
    await ws.send_text("hello")
    assert (await ws.read_frame())[2] == b"hello"
    assert len(server.websockets) == 1
    frame = struct.pack("!BBH", 0x82, 0x80 | 126, 1000) + b"mask" + b"only part of it"
    ws.writer.write(frame)
    await ws.writer.drain()
    ws.abort()
    await eventually(lambda: not server.websockets)
    await eventually(lambda: not server.running_handlers)  # the handler task or thread finished
    assert (await get(server.port, "/")).status == 200
    await server.shutdown(timeout=2.0)
    await eventually(lambda: worker_threads() <= threads_before)


@pytest.mark.parametrize("kind", KINDS)
async def test_client_closing_tcp_without_close_frame(start_server: StartServer, kind: str) -> None:
    server = await echo_server(start_server, kind)
    ws = await raw_connect(server.port)
    await ws.send_text("x")
    await ws.read_frame()
    ws.writer.close()
    await eventually(lambda: not server.websockets and not server.running_handlers)


# -- flow control ----------------------------------------------------------------------------


def the_websocket(server: Server) -> WebSocket:
    (ws,) = server.websockets
    return ws


@pytest.mark.parametrize("kind", KINDS)
async def test_handler_not_reading_pauses_reading(start_server: StartServer, kind: str) -> None:
    go = threading.Event()
    count: list[int] = [0]

    async def async_handler(ws: WebSocket) -> None:
        while not go.is_set():
            await asyncio.sleep(0.01)
        async for _ in ws:
            count[0] += 1

    def sync_handler(ws: SyncWebSocket) -> None:
        go.wait(TIMEOUT)
        for _ in ws:
            count[0] += 1

    options = WebSocketOptions(max_queue=4)
    server = await start_server(
        checked_app(async_handler if kind == "async" else sync_handler), websocket=options
    )
    message = b"m" * 32768
    total = 200  # 6.4 MB: far more than the kernel buffers hold
    # No compression: these messages would shrink to nothing and fit in kernel buffers.
    async with connect(url(server), max_queue=None, write_limit=65536, compression=None) as client:

        async def send_all() -> None:
            for _ in range(total):
                await client.send(message)

        sender = asyncio.create_task(send_all())
        ws = await asyncio.wait_for(asyncio.shield(_first(server)), TIMEOUT)
        await eventually(lambda: ws.inbox.paused)
        await asyncio.sleep(0.2)
        assert not sender.done()  # the client is blocked: the server stopped reading
        # max_queue, plus at most what one read of the transport (256 KiB) can hold.
        assert len(ws.inbox) <= 4 + 8
        go.set()
        await asyncio.wait_for(sender, TIMEOUT)
        await eventually(lambda: count[0] == total)


async def _first(server: Server) -> WebSocket:
    while not server.websockets:
        await asyncio.sleep(0.01)
    return the_websocket(server)


@pytest.mark.parametrize("kind", KINDS)
async def test_send_waits_while_the_client_does_not_read(
    start_server: StartServer, kind: str
) -> None:
    sent: list[int] = [0]
    total = 100
    chunk = b"s" * 65536

    async def async_handler(ws: WebSocket) -> None:
        for _ in range(total):
            await ws.send(chunk)
            sent[0] += 1

    def sync_handler(ws: SyncWebSocket) -> None:
        for _ in range(total):
            ws.send(chunk)
            sent[0] += 1

    server = await start_server(checked_app(async_handler if kind == "async" else sync_handler))
    ws = await raw_connect(server.port, rcvbuf=4096)
    server_ws = await _first(server)
    await eventually(lambda: sent[0] > 0)
    await asyncio.sleep(0.3)
    stalled = sent[0]
    await asyncio.sleep(0.3)
    assert sent[0] == stalled < total  # the handler waits in send()
    transport = server_ws._transport
    assert transport is not None
    # Bounded: the high-water mark plus the message that crossed it.
    assert transport.get_write_buffer_size() <= 64 * 1024 + len(chunk) + 16
    frames = 0
    while frames < total:
        _, opcode, payload = await ws.read_frame()
        assert opcode == Opcode.BINARY and payload == chunk
        frames += 1
    assert sent[0] == total


async def test_slow_consumer_closed_with_1008_fast_one_gets_everything(
    start_server: StartServer,
) -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.wait_closed()

    options = WebSocketOptions(max_send_buffer=256 * 1024, close_timeout=5.0)
    server = await start_server(checked_app(handler), websocket=options)
    slow = await raw_connect(server.port, rcvbuf=4096)
    await eventually(lambda: len(server.websockets) == 1)
    (slow_ws,) = server.websockets
    async with connect(url(server), max_size=None) as fast:
        await eventually(lambda: len(server.websockets) == 2)
        (fast_ws,) = server.websockets - {slow_ws}
        message = b"f" * 65536
        total = 128  # 8 MiB: more than loopback buffers absorb for a client that never reads
        for i in range(total):
            for ws in (slow_ws, fast_ws):
                if not ws.closed:
                    ws.send_nowait(message + str(i).encode())
            assert await fast.recv() == message + str(i).encode()
        assert not fast_ws.closed
        code, reason, data = await slow.read_until_close(timeout=TIMEOUT)
        assert code == 1008
        assert reason == "slow consumer: send buffer full"
        assert 0 < len(data) < total
        await slow.send(Opcode.CLOSE, close_payload(1008))
        await fast.send(b"still open")
    await eventually(lambda: not server.websockets)


# -- keepalive -------------------------------------------------------------------------------


async def test_keepalive_client_answering_pongs_stays_connected(start_server: StartServer) -> None:
    options = WebSocketOptions(ping_interval=0.1, ping_timeout=1.0)
    server = await echo_server(start_server, "async", websocket=options)
    async with connect(url(server), ping_interval=None) as client:
        await asyncio.sleep(2.5)  # many pings, each past its timeout if left unanswered
        await client.send("alive")
        assert await client.recv() == "alive"
        assert not the_websocket(server).closed


async def test_keepalive_closes_a_client_that_never_answers(start_server: StartServer) -> None:
    options = WebSocketOptions(ping_interval=0.2, ping_timeout=0.3, close_timeout=1.0)
    server = await echo_server(start_server, "async", websocket=options)
    started = time.monotonic()
    ws = await raw_connect(server.port)
    opcodes = []
    while True:
        _, opcode, payload = await ws.read_frame()
        opcodes.append(opcode)
        if opcode == Opcode.CLOSE:
            break
    elapsed = time.monotonic() - started
    assert opcodes[0] == Opcode.PING
    assert struct.unpack("!H", payload[:2])[0] == 1011
    assert payload[2:] == b"keepalive ping timeout"
    assert 0.4 < elapsed < 2.5  # ping_interval + ping_timeout, and a loaded machine's delay
    assert await at_eof(ws.reader, 2.0)  # no close answer: aborted after close_timeout


# -- answering what came before the peer's close --------------------------------------------


def answering_handler(mode: str) -> Any:
    """An echo of ``mode``: ``async``, ``sync`` or an ``on_message`` callback."""

    async def callback(ws: WebSocket) -> None:
        ws.on_message = ws.send_nowait

    return callback if mode == "on_message" else make_handler(mode, [])


@pytest.mark.usefixtures("long_answer_grace")
@pytest.mark.parametrize("mode", [*KINDS, "on_message"])
async def test_messages_that_came_with_the_close_are_answered_before_it(
    start_server: StartServer, mode: str
) -> None:
    """A ping, messages and the peer's close in one read: the pong goes out at once, the
    handler still reads and answers the messages (the close echo waits for it, see
    ``ANSWER_GRACE``), in every handler mode, as the client role does; then the server
    closes TCP."""
    server = await start_server(checked_app(answering_handler(mode)))
    raw = await raw_connect(server.port)
    raw.writer.write(
        encode_frame(Opcode.PING, b"p")
        + encode_frame(Opcode.TEXT, b"one")
        + encode_frame(Opcode.TEXT, b"two")
        + encode_frame(Opcode.CLOSE, close_payload(4000, "bye"))
    )
    assert await raw.read_frame() == (True, Opcode.PONG, b"p")
    assert await raw.read_frame() == (True, Opcode.TEXT, b"one")
    assert await raw.read_frame() == (True, Opcode.TEXT, b"two")
    _, opcode, payload = await raw.read_frame()
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (Opcode.CLOSE, 4000)
    assert await at_eof(raw.reader)
    raw.writer.close()
    await eventually(lambda: not server.websockets)


async def test_more_messages_than_max_queue_with_the_close_all_reach_the_handler(
    start_server: StartServer,
) -> None:
    """100 messages and the peer's close in one read, to a handler that reads late: it gets
    all 100 (a read's messages are in memory already, and queued whatever ``max_queue``),
    not the first 32."""
    got: list[str] = []
    done = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        await asyncio.sleep(0.2)  # the whole read is in by now
        got.extend([m async for m in ws])  # type: ignore[misc]
        done.set()

    server = await start_server(checked_app(handler))
    raw = await raw_connect(server.port)
    raw.writer.write(
        b"".join(encode_frame(Opcode.TEXT, f"m{i}".encode()) for i in range(100))
        + encode_frame(Opcode.CLOSE, close_payload(1000))
    )
    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert got == [f"m{i}" for i in range(100)]
    raw.writer.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_the_close_waits_at_most_the_answer_grace_for_a_handler_that_does_not_read(
    start_server: StartServer, kind: str
) -> None:
    go = threading.Event()

    async def async_handler(ws: WebSocket) -> None:
        await ws.wait_closed()  # never reads

    def sync_handler(ws: SyncWebSocket) -> None:
        go.wait(TIMEOUT)  # never reads

    server = await start_server(checked_app(async_handler if kind == "async" else sync_handler))
    raw = await raw_connect(server.port)
    raw.writer.write(
        encode_frame(Opcode.TEXT, b"unread") + encode_frame(Opcode.CLOSE, close_payload(1000))
    )
    started = time.monotonic()
    _, opcode, _ = await raw.read_frame()
    held = time.monotonic() - started
    assert opcode == Opcode.CLOSE
    assert ANSWER_GRACE * 0.8 < held < TIMEOUT
    assert await at_eof(raw.reader)
    go.set()
    raw.writer.close()
    await eventually(lambda: not server.websockets and not server.running_handlers)


# -- what groups use of a connection -------------------------------------------------------


async def test_a_held_connection_outlives_its_handler_until_released(
    start_server: StartServer,
) -> None:
    """``hold``/``release`` (a group's membership) and the pre-encoded send a broadcast
    uses."""
    held: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        ws.hold()
        held.append(ws)

    server = await start_server(checked_app(handler))
    async with connect(url(server)) as client:
        await eventually(lambda: bool(held) and not server.running_handlers)  # it returned
        (ws,) = held
        assert ws.loop is asyncio.get_running_loop()
        ws.send_encoded(ws.encode_shared("still open"))
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "still open"
        ws.release()
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        assert client.close_code == 1000


# -- callbacks (on_message) ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_on_message_sees_messages_sent_before_it_was_set(
    start_server: StartServer, kind: str
) -> None:
    """A handler that installs ``on_message`` and returns must not lose what the client sent
    in between (the connection stays open for the callback)."""
    started = threading.Event()

    async def async_handler(ws: WebSocket) -> None:
        started.set()
        await asyncio.sleep(0.2)
        ws.on_message = ws.send_nowait

    def sync_handler(ws: SyncWebSocket) -> None:
        started.set()
        time.sleep(0.2)
        ws.on_message = ws.ws.send_nowait

    server = await start_server(checked_app(async_handler if kind == "async" else sync_handler))
    async with connect(url(server)) as client:
        await eventually(started.is_set)
        await client.send("early")
        await asyncio.sleep(0.4)
        await client.send("late")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "early"
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "late"


@pytest.mark.parametrize("kind", KINDS)
async def test_close_while_reading_is_paused_completes_quickly(
    start_server: StartServer, kind: str
) -> None:
    """A handler that stopped reading (queue full) and then closes still completes the
    closing handshake: it must not wait for the close timeout."""
    closed_in: list[float] = []

    async def async_handler(ws: WebSocket) -> None:
        while not ws.inbox.paused:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await ws.close(4002, "enough")
        closed_in.append(time.monotonic() - started)

    def sync_handler(ws: SyncWebSocket) -> None:
        while not ws.ws.inbox.paused:
            time.sleep(0.01)
        started = time.monotonic()
        ws.close(4002, "enough")
        closed_in.append(time.monotonic() - started)

    options = WebSocketOptions(max_queue=2, close_timeout=3.0)
    server = await start_server(
        checked_app(async_handler if kind == "async" else sync_handler), websocket=options
    )
    async with connect(url(server)) as client:
        for i in range(10):
            await client.send(f"m{i}")
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        assert client.close_code == 4002
    await eventually(lambda: bool(closed_in))
    assert closed_in[0] < 1.0


async def test_client_sees_messages_on_the_callback_api(start_server: StartServer) -> None:
    seen: list[str | bytes] = []

    async def handler(ws: WebSocket) -> None:
        ws.on_message = seen.append

    server = await start_server(checked_app(handler))
    async with connect(url(server)) as client:
        await client.send("a")
        await client.send(b"b")
        await eventually(lambda: len(seen) == 2)
    assert seen == ["a", b"b"]


async def test_hixie76_key3_arriving_after_the_head(start_server: StartServer) -> None:
    """key3 has no length header: the server waits for its 8 bytes, however they arrive."""
    server = await legacy_server(start_server, "async")
    reader, writer = await open_tcp(server.port)
    head, key3 = DRAFT76_REQUEST[:-8], DRAFT76_REQUEST[-8:]
    writer.write(head)
    await writer.drain()
    await asyncio.sleep(0.1)  # the app has accepted by now; the handshake waits for key3
    for i in range(0, 8, 3):
        writer.write(key3[i : i + 3])
        await writer.drain()
        await asyncio.sleep(0.02)
    writer.write(b"\x00after split\xff")
    response = await asyncio.wait_for(reader.readexactly(len(DRAFT76_RESPONSE)), TIMEOUT)
    assert response == DRAFT76_RESPONSE
    assert await asyncio.wait_for(reader.readuntil(b"\xff"), TIMEOUT) == b"\x00after split\xff"
    writer.close()


async def test_hixie76_without_key3_times_out_with_its_reason(start_server: StartServer) -> None:
    """The refusal is told and counted: it used to be a close without a word or a log line."""
    server = await legacy_server(start_server, "async", header_timeout=0.3)
    reader, writer = await open_tcp(server.port)
    writer.write(DRAFT76_REQUEST[:-3])
    response = await read_response(reader)
    assert response.status == 400
    assert b"key3 must be 8 bytes, got 5 within header_timeout" in response.body
    assert await at_eof(reader, 2.0)
    assert not server.websockets
    assert server.state.metrics.handshakes["400"] == 1
    writer.close()


async def test_hixie76_key3_cut_by_the_clients_end_is_refused_at_once(
    start_server: StartServer,
) -> None:
    server = await legacy_server(start_server, "async", header_timeout=30.0)
    reader, writer = await open_tcp(server.port)
    writer.write(DRAFT76_REQUEST[:-5])
    await asyncio.sleep(0.1)  # the head is read, key3 awaited
    writer.write_eof()
    response = await read_response(reader)
    assert response.status == 400
    assert b"key3 must be 8 bytes, got 3 before the client ended its side" in response.body
    assert await at_eof(reader, 2.0)
    assert not server.websockets
    writer.close()


async def test_hixie76_with_one_key_is_refused_without_waiting_for_key3(
    start_server: StartServer,
) -> None:
    """A hixie-76 head with one of its two keys is refused at once with its reason: it used
    to wait for a key3 a broken client may never send, then close without a word."""
    server = await legacy_server(start_server, "async", header_timeout=30.0)
    reader, writer = await open_tcp(server.port)
    writer.write(DRAFT76_REQUEST[:-8].replace(b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n", b""))
    response = await read_response(reader)
    assert response.status == 400 and b"Sec-WebSocket-Key1" in response.body
    assert not server.websockets
    writer.close()


# -- memory bounds: a peer that sends and never reads -----------------------------------------
#
# Every reply the server owes (a pong per ping, an echo per message, the close echo) is
# written to the transport's buffer, in user space, which grows as long as the peer does not
# read.  The server bounds it by not reading while the transport is above its high-water
# mark, in every handler mode; ``send`` additionally waits.  These tests flood a real server
# from a raw socket that never reads, and measure the server-side transport's buffered bytes
# (``transport.get_write_buffer_size()``) against:
#
#     write_high_water + max_read + one message frame
#
# * ``write_high_water``: reading goes on until the buffer crosses it;
# * ``max_read``: the most bytes one read of the transport hands the server (asyncio's
#   socket transport reads at most ``max_size`` = 256 KiB at a time, uvloop's 256,000
#   bytes).  The replies to one read are smaller than the read itself (a reply frame is the
#   frame it answers without its 4-byte mask key), and once the buffer is past the mark no
#   further read happens;
# * one message frame: a handler that was not waiting writes one more message before its
#   ``send`` waits.
#
# Without the pause (commit a8e8d4e~1) the buffer of an ``async for`` handler grew by the
# full flood (~16 MiB/s), so each of these tests fails there.

#: Pings of the largest control payload (RFC 6455 section 5.5: 125 bytes), masked.
PING = encode_frame(Opcode.PING, b"p" * 125)
#: Small text messages, as a chat client would send them.
SMALL = encode_frame(Opcode.TEXT, b"m" * 100)
#: What the flood sends at most (the server's buffer would hold most of it without a bound).
FLOOD_BYTES = 32 * 1024 * 1024
#: The flood has stalled (the server stopped reading) when a write waits this long.
STALL = 1.0


#: uvloop reads into one buffer of this size (UV_STREAM_RECV_BUF_SIZE, includes/consts.pxi).
UVLOOP_READ = 256_000


def max_read(transport: Any) -> int:
    """The most bytes one read of ``transport`` can carry."""
    if type(transport).__module__.startswith("uvloop"):
        return UVLOOP_READ
    size = getattr(transport, "max_size", None)  # asyncio's socket transport
    assert isinstance(size, int), f"unknown read size of {transport!r}"
    return size


def reply_bound(options: WebSocketOptions, transport: Any, message: bytes) -> int:
    """See the section comment: the high-water mark, one read's replies, one message."""
    return options.write_high_water + max_read(transport) + len(message)


@contextlib.asynccontextmanager
async def serving(
    start_server: StartServer, loop_kind: str, app: Any, **config: Any
) -> AsyncIterator[tuple[Server, asyncio.AbstractEventLoop]]:
    """A server on the test's loop (``asyncio``), or on a uvloop loop of its own thread, as
    ``stargate serve`` runs it (``uvloop``); yields it and its loop."""
    if loop_kind == "asyncio":
        yield await start_server(app, **config), asyncio.get_running_loop()
        return
    loop = require_module("uvloop").new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="uvloop-server", daemon=True)
    thread.start()
    server = Server(app, ServerConfig(port=0, **config))
    try:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(server.start(), loop))
        yield server, loop
    finally:
        await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(server.shutdown(timeout=2.0), loop)
        )
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


async def on_loop(loop: asyncio.AbstractEventLoop, func: Callable[[], T]) -> T:
    """``func()`` run on ``loop`` (a transport is looked at on its own loop's thread)."""
    if loop is asyncio.get_running_loop():
        return func()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    loop.call_soon_threadsafe(lambda: done.set_result(func()))
    return await asyncio.wrap_future(done)


async def non_reader(port: int, path: str = "/") -> RawWebSocket:
    """A raw WebSocket whose kernel buffers are small both ways: it never reads, and what it
    writes stops as soon as the server stops reading."""
    raw = await raw_connect(port, path, rcvbuf=4096)
    sock = raw.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return raw


async def flood(
    raw: RawWebSocket,
    frame: bytes,
    sample: Callable[[], Awaitable[None]],
    blocked: Callable[[], bool],
) -> int:
    """Write ``frame`` over and over (never reading) until ``FLOOD_BYTES`` are sent or the
    server stops reading them with ``blocked()`` true; ``sample`` is called after each
    write.  Returns the bytes sent.  A pause with ``blocked()`` false is waited out (up to
    ``TIMEOUT``): a handler thread that fell behind (a busy machine) pauses reading with a
    full inbox before the writes back up, and that is not the stall a test is after."""
    chunk = frame * (65536 // len(frame))
    sent = 0
    loop = asyncio.get_running_loop()
    patience: float | None = None  # set at the first pause
    while sent < FLOOD_BYTES:
        raw.writer.write(chunk)
        while True:
            try:
                await asyncio.wait_for(raw.writer.drain(), STALL)
                break
            except TimeoutError:
                await sample()
                patience = patience if patience is not None else loop.time() + TIMEOUT
                if blocked() or loop.time() > patience:
                    return sent
        sent += len(chunk)
        await sample()
    return sent


def flood_app(mode: str, group: Group) -> Any:
    """``/flood``: a handler of ``mode``; any other path: an ``async for`` echo (for the
    bystanders); plain requests get a page.  Checked by ``wsgiref.validate``."""

    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    def sync_echo(ws: SyncWebSocket) -> None:
        for message in ws:
            ws.send(message)

    async def callback(ws: WebSocket) -> None:
        ws.on_message = ws.send_nowait  # an echo without a task: nothing waits in send

    async def member(ws: WebSocket) -> None:
        group.add(ws)  # returns at once; the membership keeps the connection open

    def sync_member(ws: SyncWebSocket) -> None:
        group.add(ws)

    handlers: dict[str, Any] = {
        "async for": echo,
        "def": sync_echo,
        "on_message": callback,
        "group member (async)": member,
        "group member (def)": sync_member,
    }

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        upgrade = environ.get(ENVIRON_KEY)
        if upgrade is not None:
            upgrade.accept(handlers[mode] if environ["PATH_INFO"] == "/flood" else echo)
            return []
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"page"]

    return validator(app)


async def bystanders_served(server: Server) -> None:
    """Other connections are served while the flood stands: a page, and an echo."""
    response = await get(server.port, "/page")
    assert (response.status, response.body) == (200, b"page")
    async with connect(url(server, "/echo")) as client:
        await client.send("still served")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "still served"


MODES = ["async for", "def", "on_message", "group member (async)", "group member (def)"]
ECHO_MODES = ["async for", "def", "on_message"]


@pytest.mark.parametrize(
    ("loop_kind", "mode", "frame"),
    [("asyncio", mode, PING) for mode in MODES]
    + [("asyncio", mode, SMALL) for mode in ECHO_MODES]
    + [("uvloop", mode, PING) for mode in MODES],
    ids=[f"pings-{mode}" for mode in MODES]
    + [f"messages-{mode}" for mode in ECHO_MODES]
    + [f"uvloop-pings-{mode}" for mode in MODES],
)
async def test_a_peer_that_never_reads_costs_a_bounded_write_buffer(
    start_server: StartServer, loop_kind: str, mode: str, frame: bytes
) -> None:
    group = Group()
    options = WebSocketOptions()  # the defaults: the bound is the shipped one
    async with serving(start_server, loop_kind, flood_app(mode, group), websocket=options) as (
        server,
        loop,
    ):
        raw = await non_reader(server.port, "/flood")
        ws = await _first(server)
        if mode.startswith("group member"):
            await eventually(lambda: len(group) == 1 and ws._handler_done)
        transport = ws._transport
        assert transport is not None
        bound = reply_bound(options, transport, frame)
        peak = [0]

        async def sample() -> None:
            size = await on_loop(loop, transport.get_write_buffer_size)
            peak[0] = max(peak[0], size)

        sent = await flood(raw, frame, sample, lambda: peak[0] >= options.write_high_water)
        assert peak[0] <= bound, f"{peak[0]} bytes buffered for a peer that never reads"
        # The flood stalled because the server stopped reading, not by its own limit.
        assert sent < FLOOD_BYTES
        assert not await on_loop(loop, transport.is_reading)
        assert peak[0] >= options.write_high_water  # the bound was reached, not just obeyed
        await bystanders_served(server)
        await sample()
        assert peak[0] <= bound
        assert not ws.closed  # bounded, not dropped: the peer may still read one day
        raw.abort()
        raw.writer.close()
        await eventually(lambda: not server.websockets)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_sending_handler_waits_for_a_slow_reader_others_are_served(
    start_server: StartServer, kind: str
) -> None:
    """A handler that only sends (a feed) to a peer that reads slowly waits in ``send``: the
    buffer holds at most the high-water mark plus the message that crossed it."""
    chunk = b"s" * 65536
    total = 64
    sent = [0]

    async def async_feed(ws: WebSocket) -> None:
        for _ in range(total):
            await ws.send(chunk)
            sent[0] += 1

    def sync_feed(ws: SyncWebSocket) -> None:
        for _ in range(total):
            ws.send(chunk)
            sent[0] += 1

    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    feed = async_feed if kind == "async" else sync_feed

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        upgrade = environ.get(ENVIRON_KEY)
        if upgrade is not None:
            upgrade.accept(feed if environ["PATH_INFO"] == "/feed" else echo)
            return []
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"page"]

    options = WebSocketOptions()
    server = await start_server(validator(app), websocket=options)
    raw = await non_reader(server.port, "/feed")
    ws = await _first(server)
    transport = ws._transport
    assert transport is not None
    bound = options.write_high_water + len(chunk) + 16  # 16: the frame header, generously
    await eventually(lambda: sent[0] > 0)
    stalled = -1
    while stalled != sent[0]:  # until the handler stops making progress
        stalled = sent[0]
        await asyncio.sleep(0.3)
        assert transport.get_write_buffer_size() <= bound
    assert stalled < total
    await bystanders_served(server)
    assert sent[0] == stalled  # still waiting in send()
    assert transport.get_write_buffer_size() <= bound
    for _ in range(total):  # reading now: every message arrives, whole and in order
        _, opcode, payload = await raw.read_frame()
        assert (opcode, payload) == (Opcode.BINARY, chunk)
    await eventually(lambda: sent[0] == total)
    raw.writer.close()


async def a_room_with_a_non_reader(
    start_server: StartServer,
) -> tuple[Group, Server, RawWebSocket, WebSocket]:
    """A server whose handler adds every connection to a room (``max_send_buffer`` 256 KiB),
    with one member that never reads: the room, the server, that member's raw socket and
    its server-side connection."""
    room = Group()

    async def handler(ws: WebSocket) -> None:
        room.add(ws)

    options = WebSocketOptions(max_send_buffer=256 * 1024, close_timeout=2.0)
    server = await start_server(checked_app(handler), websocket=options)
    slow = await non_reader(server.port)
    await eventually(lambda: len(room) == 1)
    (slow_ws,) = server.websockets
    return room, server, slow, slow_ws


async def test_a_broadcast_closes_the_member_that_does_not_read_with_1008_alone(
    start_server: StartServer,
) -> None:
    """A group send cannot wait for one member: past ``max_send_buffer`` that member alone is
    closed with 1008 (slow consumer); the others receive every message and stay open."""
    room, server, slow, slow_ws = await a_room_with_a_non_reader(start_server)
    options = slow_ws._options
    transport = slow_ws._transport
    assert transport is not None
    message = b"b" * 16384
    # The check comes before each write: at most one frame past the limit.
    bound = options.max_send_buffer + len(message) + 16
    async with (
        connect(url(server), max_size=None, compression=None) as fast,
        connect(url(server), max_size=None) as other,
    ):
        await eventually(lambda: len(room) == 3)
        total = 1024  # 16 MiB: far more than the kernel buffers absorb for the slow member
        for i in range(total):
            room.send(message + b"%d" % i)
            if not slow_ws.closed:
                assert transport.get_write_buffer_size() <= bound
            for client in (fast, other):
                assert await asyncio.wait_for(client.recv(), TIMEOUT) == message + b"%d" % i
        code, reason, data = await slow.read_until_close()
        assert (code, reason) == (1008, "slow consumer: send buffer full")
        assert 0 < len(data) < total
        await slow.send(Opcode.CLOSE, close_payload(1008))
        await eventually(lambda: slow_ws.closed and len(room) == 2)
        room.send("after")  # the group goes on without it
        assert await asyncio.wait_for(fast.recv(), TIMEOUT) == "after"
        assert await asyncio.wait_for(other.recv(), TIMEOUT) == "after"
    await eventually(lambda: not server.websockets)
    slow.writer.close()


async def test_a_burst_in_one_loop_pass_counts_what_it_corked(start_server: StartServer) -> None:
    """Frames corked for the end of a loop pass count against ``max_send_buffer`` too: a
    burst sent in one pass to a member that does not read used to pile up tens of times
    the limit in its transport before the next pass's check closed it."""
    room, server, slow, slow_ws = await a_room_with_a_non_reader(start_server)
    options = slow_ws._options
    transport = slow_ws._transport
    assert transport is not None
    message = b"b" * 65536
    for i in range(64):  # 4 MiB, no await between the sends: one loop pass
        room.send(message + b"%d" % i)
    assert slow_ws.slow_consumer
    await asyncio.sleep(0)  # the pass's corked frames are written at its end
    assert transport.get_write_buffer_size() <= options.max_send_buffer + 2 * len(message)
    code, _, _ = await slow.read_until_close()
    assert code == 1008
    await slow.send(Opcode.CLOSE, close_payload(1008))
    await eventually(lambda: not server.websockets)
    slow.writer.close()


# -- corked broadcasts -------------------------------------------------------------------------


class WriteLog(asyncio.Transport):
    """A transport that records each write call (a list of buffers per call)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[bytes]] = []

    def write(self, data: Any) -> None:
        self.calls.append([bytes(data)])

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append([bytes(data) for data in list_of_data])

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


async def test_a_broadcast_burst_costs_each_member_two_writes_in_order() -> None:
    """The first frame a connection gets from a broadcast in one loop pass goes out at once;
    the rest of the pass is corked into one write, and a direct send made meanwhile keeps
    its place behind them."""
    from stargate.connection import Connection
    from stargate.protocol import Role

    transport = WriteLog()
    ws = attached(transport)
    frames = [ws.encode_shared(f"m{i}") for i in range(16)]
    for frame in frames:
        ws.send_encoded(frame)
    await ws.send("direct")
    assert len(transport.calls) == 1  # m0 only, so far
    await asyncio.sleep(0)  # the end of the pass
    assert [len(call) for call in transport.calls] == [1, 16]
    wire = b"".join(b"".join(call) for call in transport.calls)
    client = Connection(Role.CLIENT)
    got = [event.data for event in client.receive_data(wire)]  # type: ignore[union-attr]
    assert got == [f"m{i}" for i in range(16)] + ["direct"]
    ws.send_encoded(ws.encode_shared("next pass"))  # a new pass: at once again
    assert len(transport.calls) == 3
    assert ws.messages_out == 18


class BufferedLog(WriteLog):
    """A write log whose transport says it holds ``size`` bytes the peer has not taken."""

    def __init__(self, size: int = 0) -> None:
        super().__init__()
        self.size = size

    def get_write_buffer_size(self) -> int:
        return self.size

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def attached(transport: asyncio.Transport, connection: Any = None, **options: Any) -> WebSocket:
    """A server WebSocket on ``transport``, as the handshake leaves it (over
    ``connection``: a given version and extensions; by default plain RFC 6455)."""
    from stargate.connection import Connection
    from stargate.handshake import Request
    from stargate.headers import Headers
    from stargate.protocol import Role

    ws = WebSocket(
        Connection(Role.SERVER) if connection is None else connection,
        Request("GET", "/", Headers([("Host", "localhost")])),
        loop=asyncio.get_running_loop(),
        options=WebSocketOptions(ping_interval=None, **options),
    )
    ws.attach(transport)
    return ws


async def test_send_encoded_each_writes_at_once_then_corks_and_counts() -> None:
    """A broadcast's inner loop does what ``send_encoded`` does for each member: the
    pass's first frame at once, the next ones corked to its end, every byte and message
    counted."""
    logs = [WriteLog() for _ in range(3)]
    members = [attached(log) for log in logs]
    first, second = members[0].encode_shared("one"), members[0].encode_shared(b"two")
    WebSocket.send_encoded_each(members, first, 1)
    WebSocket.send_encoded_each(members, second, 1)
    assert all(log.calls == [[first]] for log in logs)
    await asyncio.sleep(0)  # the end of the pass
    assert all(log.calls == [[first], [second]] for log in logs)
    assert all(ws.messages_out == 2 for ws in members)
    assert all(ws.bytes_out == len(first) + len(second) for ws in members)
    WebSocket.send_encoded_each(members, first, 1)  # a new pass: at once again
    assert all(len(log.calls) == 3 for log in logs)


async def test_a_broadcast_from_a_callback_keeps_its_place_behind_a_direct_answer() -> None:
    """An ``on_message`` callback answers, then broadcasts: while a read is handled its
    answers are corked, and the broadcast goes behind them (it used to be written at once,
    ahead of the answer and of the read's pong)."""
    from stargate.connection import Connection
    from stargate.events import Pong, TextMessage
    from stargate.protocol import Role

    log = WriteLog()
    ws = attached(log)

    def on_message(message: str | bytes) -> None:
        ws.send_nowait(f"ack {message!s}")
        WebSocket.send_encoded_each([ws], ws.encode_shared(f"all {message!s}"), 1)

    ws.on_message = on_message
    client = Connection(Role.CLIENT)
    client.send_ping(b"p")
    ws.feed_data(client.data_to_send() + client.encode_message("1"))
    ws.feed_data(client.encode_message("2"))  # the same loop pass: corked behind, in order
    await asyncio.sleep(0)  # the pass's end
    wire = b"".join(b"".join(call) for call in log.calls)
    assert Connection(Role.CLIENT).receive_data(wire) == [
        Pong(b"p"),
        TextMessage("ack 1"),
        TextMessage("all 1"),
        TextMessage("ack 2"),
        TextMessage("all 2"),
    ]


async def test_a_loop_that_served_websockets_is_not_kept_alive() -> None:
    """The per-loop flusher of corked frames must not keep its loop (and what the loop
    holds) alive once the loop is closed and dropped: a test suite or an app that starts
    servers again and again would keep every one of them."""
    import gc

    async def broadcast() -> None:
        members = [attached(WriteLog()) for _ in range(3)]
        for text in ("one", "two"):
            WebSocket.send_encoded_each(members, members[0].encode_shared(text), 1)
        await asyncio.sleep(0)

    def serve_once() -> weakref.ref[asyncio.AbstractEventLoop]:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(broadcast())
        loop.close()
        return weakref.ref(loop)

    gone = await asyncio.to_thread(serve_once)  # another loop, in a thread of its own
    gc.collect()
    assert gone() is None


async def test_send_encoded_each_leaves_the_policy_to_a_paused_member() -> None:
    """A member above its high-water mark (its transport paused our writing) is asked
    through ``send_encoded``: past ``max_send_buffer`` it alone is closed with 1008."""
    slow_log, fine_log = BufferedLog(size=300_000), WriteLog()
    slow = attached(slow_log, max_send_buffer=256 * 1024)
    fine = attached(fine_log, max_send_buffer=256 * 1024)
    slow.pause_writing()
    frame = fine.encode_shared("news")
    WebSocket.send_encoded_each([slow, fine], frame, 1)
    assert slow.slow_consumer and fine_log.calls == [[frame]]
    assert frame not in [data for call in slow_log.calls for data in call]


async def test_send_encoded_each_asks_the_transport_when_the_high_water_mark_is_higher() -> None:
    """With ``write_high_water`` above ``max_send_buffer``, a transport that is not paused
    may still hold more than the limit: the policy must see its size."""
    log = BufferedLog(size=100_000)  # below the high-water mark, above the limit
    ws = attached(log, write_high_water=1 << 20, max_send_buffer=64 * 1024)
    WebSocket.send_encoded_each([ws], ws.encode_shared("news"), 1)
    assert ws.slow_consumer


@pytest.mark.parametrize("kind", ["plain", "deflate", "hixie-76"])
async def test_send_nowait_frames_as_the_connection_would(kind: str) -> None:
    """``send_nowait`` frames the common message itself: only where the connection's own
    framing is one plain frame.  A compressed connection still compresses, a hixie one
    still writes hixie frames, a large message goes out as header and payload, and every
    message and byte is counted."""
    from stargate.connection import Connection
    from stargate.extensions.permessage_deflate import PerMessageDeflate
    from stargate.protocol import ProtocolVersion, Role

    def connection(role: Role) -> Connection:
        if kind == "deflate":
            return Connection(role, extensions=[PerMessageDeflate()])
        if kind == "hixie-76":
            return Connection(role, ProtocolVersion.HIXIE_76)
        return Connection(role)

    log = WriteLog()
    ws = attached(log, connection(Role.SERVER))
    messages: list[str | bytes | bytearray | memoryview] = ["text " * 200, "é", "x" * 20_000]
    if kind != "hixie-76":  # hixie carries text only
        messages += [
            b"\x00" * 300,
            bytearray(b"ba"),
            memoryview(b"mv"),
            os.urandom(70_000),
        ]
    for message in messages:
        ws.send_nowait(message)
    wire = b"".join(b"".join(call) for call in log.calls)
    client = connection(Role.CLIENT)
    got = [event.data for event in client.receive_data(wire)]  # type: ignore[union-attr]
    assert got == [m if isinstance(m, str) else bytes(m) for m in messages]
    assert ws.messages_out == len(messages) and ws.bytes_out == len(wire)
    if kind == "deflate":
        assert wire[0] & 0x40, "a compressible message went out uncompressed"
    if kind != "hixie-76":
        assert [len(call) for call in log.calls][-1] == 2  # header and payload apart


async def test_send_nowait_on_a_closing_connection_raises_and_writes_nothing() -> None:
    """Once our close frame is out, a data frame after it would break RFC 6455 section
    5.5.1: the inline path must leave that case to the checks."""
    log = WriteLog()
    ws = attached(log)
    ws.start_close(1000, "bye")
    written = list(log.calls)
    with pytest.raises(ConnectionClosed):
        ws.send_nowait("late")
    assert log.calls == written


async def test_send_nowait_past_max_send_buffer_closes_the_slow_consumer() -> None:
    """The inline path counts what the transport holds and what is corked: a send that
    would pass ``max_send_buffer`` closes with 1008 instead of growing the buffer."""
    log = BufferedLog(size=300_000)
    ws = attached(log, max_send_buffer=256 * 1024)
    ws.send_nowait("one too many")
    assert ws.slow_consumer and ws.messages_out == 0
    assert all(b"one too many" not in data for call in log.calls for data in call)
    invalid = attached(BufferedLog(size=300_000), max_send_buffer=256 * 1024)
    invalid.send_nowait(5)  # type: ignore[arg-type]  # the policy first, as before the inline path
    assert invalid.slow_consumer
    corked = attached(BufferedLog(size=200_000), max_send_buffer=256 * 1024)
    corked._corked = 100_000  # frames of this pass's broadcast, not in the transport yet
    corked.send_nowait("one too many")
    assert corked.slow_consumer


async def test_a_callback_installed_late_gets_what_came_before_first() -> None:
    """A message that arrived before ``on_message`` was set (a thread's handler sets it
    late) reaches the callback before the ones after it, and at once, not when the
    handler returns."""
    from stargate.connection import Connection
    from stargate.protocol import Role

    ws = attached(BufferedLog())
    client = Connection(Role.CLIENT)
    ws.feed_data(client.encode_message("m1"))  # nobody listens yet: the inbox keeps it
    got: list[str | bytes] = []
    ws.on_message = got.append
    ws.feed_data(client.encode_message("m2") + client.encode_message("m3"))
    assert got == ["m1", "m2", "m3"]
    ws.on_message = None
    ws.feed_data(client.encode_message("m4"))
    assert await asyncio.wait_for(ws.receive(), TIMEOUT) == "m4"  # the inbox still serves


class ClosingLog(WriteLog):
    """A write log that notes how many writes came before the transport was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed_after: int | None = None

    def close(self) -> None:
        if self.closed_after is None:
            self.closed_after = len(self.calls)


async def test_a_callback_closing_during_the_peers_close_writes_everything_first() -> None:
    """A callback that calls ``start_close`` while the read that holds the peer's close is
    handled: the pong, the answers to that read's other messages and the close echo are
    all written, in order, before the transport is closed (not handed to it after)."""
    from stargate.connection import Connection
    from stargate.events import CloseReceived, Pong, TextMessage
    from stargate.protocol import Role

    log = ClosingLog()
    ws = attached(log)

    def on_message(message: str | bytes) -> None:
        if message == "stop":
            ws.start_close(4000, "stop")
        else:
            ws.send_nowait(message)

    ws.on_message = on_message
    client = Connection(Role.CLIENT)
    client.send_ping(b"p")
    wire = client.data_to_send() + b"".join(map(client.encode_message, ["a", "stop", "c"]))
    client.send_close(1000)
    ws.feed_data(wire + client.data_to_send())
    assert log.closed_after == len(log.calls)
    written = b"".join(b"".join(call) for call in log.calls)
    assert Connection(Role.CLIENT).receive_data(written) == [
        Pong(b"p"),
        TextMessage("a"),
        TextMessage("c"),
        CloseReceived(1000, ""),
    ]


async def test_send_encoded_each_skips_a_closing_member_and_goes_on() -> None:
    """A member whose close has begun gets no data frame after its close frame, and the
    members after it still get theirs."""
    closing_log, fine_log = WriteLog(), WriteLog()
    closing, fine = attached(closing_log), attached(fine_log)
    closing.start_close(1000, "bye")
    written = len(closing_log.calls)
    frame = fine.encode_shared("news")
    WebSocket.send_encoded_each([closing, fine], frame, 1)
    assert len(closing_log.calls) == written and fine_log.calls == [[frame]]


# -- callbacks, close callbacks, sends from threads, and what follows our close ---------------


async def test_an_on_message_callback_that_raises_closes_with_1011(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback that raises on a message closes that connection with 1011 and logs the
    traceback: an application bug is told to the peer, not swallowed."""

    def echo_or_fail(ws: WebSocket) -> Callable[[str | bytes], None]:
        def on_message(message: str | bytes) -> None:
            if message == "boom":
                raise RuntimeError("the app's callback is broken")
            ws.send_nowait(message)

        return on_message

    async def handler(ws: WebSocket) -> None:
        ws.on_message = echo_or_fail(ws)

    server = await start_server(checked_app(handler))
    async with connect(url(server)) as client:
        await client.send("fine")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "fine"
        await client.send("boom")
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
    assert (client.close_code, client.close_reason) == (1011, "internal error")
    assert any("on_message callback failed" in r.getMessage() for r in caplog.records)


async def test_a_late_callback_that_raises_on_an_early_message_closes_with_1011(
    start_server: StartServer,
) -> None:
    """Messages that came before the callback was installed are handed to it when the
    handler returns; if it raises on one, the connection closes with 1011 too."""
    arrived = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        await arrived.wait()
        await eventually(lambda: len(ws.inbox) == 1)

        def on_message(message: str | bytes) -> None:
            raise RuntimeError(f"cannot take {message!r}")

        ws.on_message = on_message

    server = await start_server(checked_app(handler))
    async with connect(url(server)) as client:
        await client.send("early")
        arrived.set()
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
    assert client.close_code == 1011


async def test_pongs_for_pings_in_the_same_read_go_before_the_answer(
    start_server: StartServer,
) -> None:
    """A ping and a message in one read, answered by an ``on_message`` echo: the pong goes
    out first, as the ping came first; an unsolicited pong (RFC 6455 5.5.3) is ignored."""

    async def handler(ws: WebSocket) -> None:
        ws.on_message = ws.send_nowait

    server = await start_server(checked_app(handler))
    raw = await raw_connect(server.port)
    raw.writer.write(encode_frame(Opcode.PING, b"p1") + encode_frame(Opcode.TEXT, b"after"))
    assert await raw.read_frame() == (True, Opcode.PONG, b"p1")
    assert await raw.read_frame() == (True, Opcode.TEXT, b"after")
    await raw.send(Opcode.PONG, b"nobody asked")
    await raw.send_text("still open")
    assert await raw.read_frame() == (True, Opcode.TEXT, b"still open")
    raw.abort()


async def test_close_callbacks_run_once_even_past_a_failing_one(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Close callbacks run when the connection ends: one that raises is logged and the
    next still runs; one added after the end runs at once (soon, on the loop)."""
    calls: list[str] = []
    connections: list[WebSocket] = []

    def failing(ws: WebSocket) -> None:
        calls.append("failing")
        raise RuntimeError("cleanup failed")

    async def handler(ws: WebSocket) -> None:
        ws.add_close_callback(failing)
        ws.add_close_callback(lambda ws: calls.append(f"closed {ws.close_code}"))
        connections.append(ws)
        await ws.receive()

    server = await start_server(checked_app(handler))
    async with connect(url(server)) as client:
        await eventually(lambda: bool(connections))
        await client.close(4005)
    await eventually(lambda: len(calls) == 2)
    assert calls == ["failing", "closed 4005"]
    assert any("close callback failed" in r.getMessage() for r in caplog.records)
    connections[0].add_close_callback(lambda ws: calls.append("late"))
    await eventually(lambda: calls[-1:] == ["late"])
    assert calls == ["failing", "closed 4005", "late"]


async def test_send_threadsafe_from_another_thread(start_server: StartServer) -> None:
    """``send_threadsafe`` sends from any thread; once the connection is closed it drops
    the message without an error."""
    connections: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        connections.append(ws)
        await ws.wait_closed()

    server = await start_server(checked_app(handler))
    async with connect(url(server)) as client:
        await eventually(lambda: bool(connections))
        (ws,) = connections
        await asyncio.to_thread(ws.send_threadsafe, "from a thread")
        await asyncio.to_thread(ws.send_threadsafe, b"\x00bytes")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "from a thread"
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == b"\x00bytes"
    await eventually(lambda: ws.closed)
    await asyncio.to_thread(ws.send_threadsafe, "too late")  # no exception, nothing sent
    await asyncio.sleep(0)


async def test_no_broadcast_follows_our_close_frame(start_server: StartServer) -> None:
    """RFC 6455 5.5.1: after its close frame a server sends no more data frames.  A group
    member whose handler closed (the peer has not answered yet) is skipped by the next
    broadcast; the other members get it."""
    group = Group()
    closing = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        group.add(ws)
        if ws.path == "/closer":
            await ws.send("member")
            await closing.wait()
            await ws.close(4000, "leaving")
        else:
            await ws.wait_closed()

    server = await start_server(checked_app(handler), websocket=WebSocketOptions(close_timeout=2))
    async with connect(url(server, "/other")) as other:
        raw = await raw_connect(server.port, "/closer")
        assert await raw.read_frame() == (True, Opcode.TEXT, b"member")
        await eventually(lambda: len(group) == 2)
        closing.set()
        _, opcode, payload = await raw.read_frame()
        assert (opcode, payload) == (Opcode.CLOSE, close_payload(4000, "leaving"))
        group.send("after the close")  # the raw peer never answers the close
        assert await asyncio.wait_for(other.recv(), TIMEOUT) == "after the close"
        assert await raw.reader.read() == b""  # nothing more, then the close timeout's abort
        raw.writer.close()


async def test_broadcast_frames_of_one_pass_go_before_a_close_in_that_pass(
    start_server: StartServer,
) -> None:
    """Two broadcasts and a close in one pass of the loop: the second broadcast, corked to
    the end of the pass, is written before the close frame (nothing after it, RFC 6455
    5.5.1), so the member gets both messages, then the close."""
    group = Group()

    async def handler(ws: WebSocket) -> None:
        group.add(ws)
        await ws.receive()
        group.send("first")
        group.send("second")
        await ws.close(4000, "after two")

    server = await start_server(checked_app(handler))
    raw = await raw_connect(server.port)
    await raw.send_text("go")
    assert await raw.read_frame() == (True, Opcode.TEXT, b"first")
    assert await raw.read_frame() == (True, Opcode.TEXT, b"second")
    assert await raw.read_frame() == (True, Opcode.CLOSE, close_payload(4000, "after two"))
    await raw.send(Opcode.CLOSE, close_payload(4000))
    assert await at_eof(raw.reader)
    raw.writer.close()


@pytest.mark.usefixtures("long_answer_grace")
async def test_a_close_while_the_peers_close_is_held_answers_with_the_echo(
    start_server: StartServer,
) -> None:
    """Messages and the peer's close in one read hold our close echo until the handler
    reads them; a handler that closes instead of reading on, or returns, sends that echo
    (RFC 6455 5.5.1: the code received), not a close of its own."""

    async def handler(ws: WebSocket) -> None:
        await ws.send(str(await ws.receive()))
        if ws.path == "/close":
            await ws.close(4001, "ignored: the peer closed first")

    server = await start_server(checked_app(handler))
    for path in ("/close", "/return"):
        raw = await raw_connect(server.port, path)
        raw.writer.write(
            encode_frame(Opcode.TEXT, b"one")
            + encode_frame(Opcode.TEXT, b"two")
            + encode_frame(Opcode.CLOSE, close_payload(4000, "bye"))
        )
        assert await raw.read_frame() == (True, Opcode.TEXT, b"one")
        _, opcode, payload = await raw.read_frame()
        assert (opcode, payload[:2]) == (Opcode.CLOSE, struct.pack("!H", 4000))
        assert await at_eof(raw.reader)
        raw.writer.close()


async def test_a_callbacks_answers_to_one_read_keep_their_order_large_or_small(
    start_server: StartServer,
) -> None:
    """An ``on_message`` echo answering small and large messages of one read: the answers
    are batched into one write, the large one's payload beside its header, all in order;
    removing a close callback never added is harmless."""

    async def handler(ws: WebSocket) -> None:
        ws.remove_close_callback(print)
        ws.on_message = ws.send_nowait

    server = await start_server(checked_app(handler))
    raw = await raw_connect(server.port)
    large = os.urandom(256 * 1024)
    raw.writer.write(
        encode_frame(Opcode.TEXT, b"before")
        + encode_frame(Opcode.BINARY, large)
        + encode_frame(Opcode.TEXT, b"after")
    )
    assert await raw.read_frame() == (True, Opcode.TEXT, b"before")
    assert await raw.read_frame() == (True, Opcode.BINARY, large)
    assert await raw.read_frame() == (True, Opcode.TEXT, b"after")
    raw.abort()


# -- no reference cycles: a connection's objects go when it does --------------------------


@pytest.mark.both_loops
async def test_a_finished_connection_leaves_nothing_to_the_cycle_collector(
    start_server: StartServer, cyclic_garbage: Callable[[Callable[[object], bool]], list[str]]
) -> None:
    """The channel, its reader and parser, the WebSocket and its inbox are freed by
    reference counting when their connection ends; the cycle collector's passes over what
    they would leave otherwise cost a fifth of a handshake's CPU (bench_handshake.py).
    The handler keeps a reference to itself (``ws.on_message = ws.send_nowait``), as the
    documented callback style does."""

    async def echo(ws: WebSocket) -> None:
        ws.on_message = ws.send_nowait

    server = await start_server(Routes(default=echo))
    assert (await get(server.port)).status == 426  # a plain request's channel, too
    for _ in range(3):
        ws = await raw_connect(server.port)
        await ws.send_text("ping")
        assert (await ws.read_frame())[2] == b"ping"
        await ws.send(Opcode.CLOSE, close_payload(1000))
        assert (await ws.read_until_close())[0] == 1000
        assert await at_eof(ws.reader)
        ws.writer.close()
    await eventually(lambda: not server.websockets and not server.state.channels)
    await asyncio.sleep(0.05)  # the transports' connection_lost calls have run
    ours = ("stargate.", "httptools.")
    assert cyclic_garbage(lambda o: type(o).__module__.startswith(ours)) == []


async def test_a_protocol_error_with_output_unsent_is_aborted_after_close_timeout(
    start_server: StartServer,
) -> None:
    """A peer that stops reading, then sends a frame the server must fail (1002): the close
    waited for output the peer never takes, so the connection, its file descriptor and
    its max_connections slot were held until the peer left.  ``close_timeout`` bounds it."""

    async def echo(ws: WebSocket) -> None:
        ws.on_message = ws.send_nowait

    big = WebSocketOptions(
        close_timeout=0.5, ping_interval=None, write_high_water=64 << 20, max_send_buffer=64 << 20
    )
    server = await start_server(Routes({"/": echo}), websocket=big)
    client = await raw_connect(server.port, "/", rcvbuf=4096)
    try:
        for _ in range(1024):  # 8 MiB echoed to a client that reads none of it
            client.writer.write(encode_frame(Opcode.BINARY, b"x" * 8192))
        await client.writer.drain()
        client.writer.write(encode_frame(0x3, b""))  # a reserved opcode: 1002
        await client.writer.drain()
        await eventually(lambda: not server.websockets, timeout=5.0)
    finally:
        client.abort()


async def test_compressed_messages_are_held_to_max_queue_within_one_read(
    start_server: StartServer,
) -> None:
    """1 MiB of zeros deflates to about 1 KiB: one read held dozens of such messages, all
    inflated and queued before reading could pause, so a handler that lags held ~100 MiB
    per connection past the documented max_queue x max_message_size.  Now what follows
    the message that filled the inbox stays compressed until there is room, and nothing
    is lost."""
    go = asyncio.Event()
    received: list[bytes] = []
    server_ws: list[WebSocket] = []

    async def laggard(ws: WebSocket) -> None:
        server_ws.append(ws)
        await go.wait()
        async for message in ws:
            assert isinstance(message, bytes)
            received.append(message)

    options = WebSocketOptions(max_queue=4, ping_interval=None)
    server = await start_server(Routes({"/": laggard}), websocket=options)
    messages = [bytes([n]) * (1 << 20) for n in range(64)]
    async with connect(url(server), compression="deflate", max_size=None) as client:
        for message in messages:
            await client.send(message)
        await eventually(lambda: bool(server_ws) and server_ws[0].inbox.paused)
        await asyncio.sleep(0.2)  # what else was read stays compressed
        # A slice holds at most a few 1 KiB messages past the one that filled the inbox.
        assert len(server_ws[0].inbox) <= 4 + 4
        go.set()
        await eventually(lambda: len(received) == len(messages), timeout=TIMEOUT)
    assert received == messages  # all of them, in order


async def test_what_was_kept_compressed_goes_with_the_connection(
    start_server: StartServer,
) -> None:
    server_ws: list[WebSocket] = []

    async def deaf(ws: WebSocket) -> None:
        server_ws.append(ws)
        await ws.wait_closed()

    server = await start_server(
        Routes({"/": deaf}), websocket=WebSocketOptions(max_queue=2, ping_interval=None)
    )
    async with connect(url(server), compression="deflate", max_size=None) as client:
        for n in range(32):
            await client.send(bytes([n]) * (1 << 20))
        await eventually(lambda: bool(server_ws) and server_ws[0].inbox.paused)
        await eventually(lambda: bool(server_ws[0]._unread))  # what came next, compressed
        server_ws[0].abort()  # the connection ends without a closing handshake
        await asyncio.wait_for(server_ws[0].wait_closed(), TIMEOUT)
        assert server_ws[0]._unread == b""


# -- reads land in one buffer per thread ---------------------------------------------------------


async def test_each_thread_reads_into_a_buffer_of_its_own() -> None:
    from stargate.server.websocket import READ_BUFFER_SIZE, WebSocketProtocol, read_buffer

    assert issubclass(WebSocketProtocol, asyncio.BufferedProtocol)
    here = read_buffer()
    assert here is read_buffer() and len(here) == READ_BUFFER_SIZE and not here.readonly
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        there = pool.submit(read_buffer).result()
    assert there.obj is not here.obj  # event loops in two threads never share one


@pytest.mark.both_loops
async def test_interleaved_reads_of_many_connections_through_one_buffer(
    start_server: StartServer,
) -> None:
    """Every read of every connection lands in the same buffer, which the next read
    overwrites: partial frames, a text message split inside a UTF-8 sequence, large
    payloads and control frames, sent by four clients in small interleaved pieces, must
    all come back intact (whatever the core keeps between reads, it must have copied)."""

    async def echo(ws: WebSocket) -> None:
        ws.on_message = ws.send_nowait

    server = await start_server(Routes(default=echo))
    rng = random.Random(1)
    clients = [await raw_connect(server.port) for _ in range(4)]
    streams, expected = [], []
    for n, _ in enumerate(clients):
        text = f"client {n}: ünïcødé ✓ " * 50
        encoded = text.encode()
        big = rng.randbytes(150_000 + n)
        # Many small frames: a read often ends inside a frame's header.
        small = [bytes([n]) + rng.randbytes(rng.randrange(0, 40)) for _ in range(400)]
        stream = (
            encode_frame(Opcode.TEXT, encoded[:7], fin=False)  # splits "ü" after one byte
            + encode_frame(Opcode.CONTINUATION, encoded[7:500], fin=False)
            + encode_frame(Opcode.PING, b"mid-message")
            + encode_frame(Opcode.CONTINUATION, encoded[500:])
            + encode_frame(Opcode.BINARY, big)
            + b"".join(encode_frame(Opcode.BINARY, payload) for payload in small)
        )
        streams.append(stream)
        expected.append([b"mid-message", encoded, big, *small])
    positions = [0] * len(clients)
    while any(pos < len(s) for pos, s in zip(positions, streams, strict=True)):
        for n, client in enumerate(clients):
            size = rng.randrange(1, 9000)
            piece = streams[n][positions[n] : positions[n] + size]
            positions[n] += size
            if piece:
                client.writer.write(piece)
                await client.writer.drain()
                await asyncio.sleep(0)  # the server reads this piece before the next one
    for n, client in enumerate(clients):
        got = [(await client.read_frame())[2] for _ in expected[n]]
        assert got == expected[n], f"client {n}"
        client.abort()


@pytest.mark.both_loops
async def test_an_upgraded_connection_holds_no_http_channel(start_server: StartServer) -> None:
    """The HTTP channel's work ends with the upgrade, and so must its memory: uvloop keeps
    the last ``data_received`` it was given until a new protocol has one, so a protocol
    that only read into buffers left each WebSocket holding its channel (5 kB each)."""
    from stargate.server.channel import HttpChannel

    async def wait(ws: WebSocket) -> None:
        await ws.receive()

    server = await start_server(Routes(default=wait))
    clients = [await raw_connect(server.port) for _ in range(3)]
    await eventually(lambda: len(server.websockets) == 3)
    gc.collect()
    assert [o for o in gc.get_objects() if isinstance(o, HttpChannel)] == []
    for client in clients:
        client.abort()


async def test_a_loop_that_cannot_read_into_buffers_is_served_by_data_received() -> None:
    from stargate.connection import Connection
    from stargate.protocol import Role
    from stargate.server.websocket import WebSocketProtocol

    ws = attached(WriteLog())
    WebSocketProtocol(ws).data_received(Connection(Role.CLIENT).encode_message("plain"))
    assert await asyncio.wait_for(ws.receive(), TIMEOUT) == "plain"
