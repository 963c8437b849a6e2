"""The HTTP/1.1 side of the server (stargate.server.http): a WSGI app on the loop's port.

Keep-alive, pipelining, chunked bodies both ways, HEAD, HTTP/1.0, errors, 100-continue, and
what a hostile client can do (garbage, huge heads, slowloris).
"""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stargate.server.wsgi import StartResponse

from .support import (
    TIMEOUT,
    StartServer,
    at_eof,
    eventually,
    get,
    open_tcp,
    page_app,
    read_response,
    request,
)

pytestmark = pytest.mark.asyncio


def echo_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """Answers ``METHOD PATH?QUERY body=<request body> port=<client port>``."""
    if environ["PATH_INFO"] == "/slow":
        time.sleep(0.2)
    body = environ["wsgi.input"].read()
    text = (
        f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}?{environ['QUERY_STRING']} "
        f"port={environ['REMOTE_PORT']} body="
    ).encode() + body
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [text]


def http_get(port: int, paths: list[str]) -> list[tuple[int, bytes]]:
    """Blocking: GET each path on one http.client connection (keep-alive)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        results = []
        for path in paths:
            conn.request("GET", path)
            response = conn.getresponse()
            results.append((response.status, response.read()))
        return results
    finally:
        conn.close()


async def test_keep_alive_two_requests_on_one_connection(start_server: StartServer) -> None:
    server = await start_server(echo_app)
    results = await asyncio.to_thread(http_get, server.port, ["/one?a=1", "/two"])
    assert [status for status, _ in results] == [200, 200]
    first, second = (body for _, body in results)
    assert first.startswith(b"GET /one?a=1 port=")
    assert second.startswith(b"GET /two? port=")
    # One TCP connection served both: same client port.
    assert first.split(b"port=")[1].split(b" ")[0] == second.split(b"port=")[1].split(b" ")[0]


async def test_pipelined_requests_answered_in_order(start_server: StartServer) -> None:
    server = await start_server(echo_app)
    reader, writer = await open_tcp(server.port)
    writer.write(
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /third?q HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    bodies = [(await read_response(reader)).body for _ in range(3)]
    assert bodies[0].startswith(b"GET /slow? ")
    assert bodies[1].startswith(b"POST /post? ") and bodies[1].endswith(b"body=abc")
    assert bodies[2].startswith(b"GET /third?q ")
    writer.close()


async def test_chunked_request_body_reaches_wsgi_input(start_server: StartServer) -> None:
    server = await start_server(echo_app)
    response, _, writer = await request(
        server.port,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
    )
    assert response.status == 200
    assert response.body.endswith(b"body=hello, world")
    writer.close()


async def test_streaming_response_is_chunked_and_closed(start_server: StartServer) -> None:
    closed = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"first"
            yield b""  # an empty chunk must not end the chunked body
            yield b"second!"

        def close(self) -> None:
            closed.set()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    server = await start_server(app)
    response, reader, writer = await request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.header("Transfer-Encoding") == "chunked"
    assert response.header("Content-Length") is None
    assert response.chunks == [5, 7]
    assert response.body == b"firstsecond!"
    await eventually(closed.is_set)
    # The connection stays usable after a chunked response.
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader)).body == b"firstsecond!"
    writer.close()


async def test_head_has_no_body(start_server: StartServer) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"streamed body"

    server = await start_server(page_app(b"0123456789"))
    reader, writer = await open_tcp(server.port)
    writer.write(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await read_response(reader, head=True)
    assert head.status == 200
    assert head.header("Content-Length") == "10"
    # If HEAD had sent a body, it would be read here as the next status line.
    after = await read_response(reader)
    assert (after.status, after.body) == (200, b"0123456789")
    writer.close()

    streaming = await start_server(app)
    reader, writer = await open_tcp(streaming.port)
    writer.write(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await read_response(reader, head=True)
    assert head.status == 200
    after = await read_response(reader)
    assert (after.status, after.body) == (200, b"streamed body")
    writer.close()


async def test_http10_without_content_length_closes(start_server: StartServer) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"no "
        yield b"length"

    server = await start_server(app)
    response, _, writer = await request(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert response.header("Transfer-Encoding") is None  # HTTP/1.0 knows no chunked
    assert response.header("Content-Length") is None
    assert response.header("Connection") == "close"
    assert response.body == b"no length"  # read up to EOF: the server closed
    writer.close()


async def test_http10_with_content_length_keeps_alive_on_request(start_server: StartServer) -> None:
    server = await start_server(page_app(b"abc"))
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    first = await read_response(reader)
    assert (first.body, first.header("Connection")) == (b"abc", "keep-alive")
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    second = await read_response(reader)
    assert (second.body, second.header("Connection")) == (b"abc", "close")
    assert await at_eof(reader)
    writer.close()


async def test_app_exception_gives_500_and_server_survives(start_server: StartServer) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        start_response("200 OK", [])
        return [b"fine"]

    server = await start_server(app)
    response, reader, writer = await request(server.port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 500
    assert response.reason == "Internal Server Error"
    assert response.body == b"Internal Server Error\n"
    assert response.header("Connection") == "close"
    assert await at_eof(reader)
    writer.close()
    assert (await get(server.port, "/")).body == b"fine"


async def test_exception_inside_the_iterable_before_the_head_gives_500(
    start_server: StartServer,
) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        raise RuntimeError("late")
        yield b""  # a generator: the error comes on the first iteration

    server = await start_server(app)
    assert (await get(server.port, "/")).status == 500


async def test_expect_100_continue(start_server: StartServer) -> None:
    server = await start_server(echo_app)
    reader, writer = await open_tcp(server.port)
    writer.write(
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"data")
    response = await read_response(reader)
    assert response.status == 200
    assert response.body.endswith(b"body=data")
    writer.close()


async def test_garbage_request_line_gets_400_and_close(start_server: StartServer) -> None:
    server = await start_server(echo_app)
    response, reader, writer = await request(server.port, b"\x16\x03\x01 hello there\r\n\r\n")
    assert response.status == 400
    assert response.reason == "Bad Request"
    assert response.body.startswith(b"bad request")
    assert response.header("Connection") == "close"
    assert await at_eof(reader)
    writer.close()


async def test_huge_header_block_gets_431(start_server: StartServer) -> None:
    server = await start_server(echo_app)
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for i in range(100):
        writer.write(b"X-Filler-%03d: %s\r\n" % (i, b"a" * 1000))  # 100 KiB of headers
    writer.write(b"\r\n")
    response = await read_response(reader)
    assert response.status == 431
    assert response.reason == "Request Header Fields Too Large"
    assert await at_eof(reader)
    writer.close()


async def test_endless_header_line_gets_431(start_server: StartServer) -> None:
    """A header line that never ends must not grow the parser's buffer without bound."""
    server = await start_server(echo_app, max_header_size=4096)
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET / HTTP/1.1\r\nX-Long: ")
    try:
        for _ in range(20):
            writer.write(b"a" * 1024)
            await writer.drain()
            await asyncio.sleep(0.01)
    except ConnectionResetError:
        pass
    response = await read_response(reader)
    assert response.status == 431
    writer.close()


async def test_large_head_under_the_limit_split_across_reads_is_served(
    start_server: StartServer,
) -> None:
    """A 12 KiB head (limit 16 KiB) that arrives in several reads is not refused."""
    server = await start_server(echo_app)
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n")
    for i in range(12):
        writer.write(b"X-Part-%02d: %s\r\n" % (i, b"b" * 1000))
        await writer.drain()
        await asyncio.sleep(0.01)  # separate reads on the server
    writer.write(b"\r\n")
    response = await read_response(reader)
    assert response.status == 200
    writer.close()


async def test_body_over_max_body_size_gets_413(start_server: StartServer) -> None:
    server = await start_server(echo_app, max_body_size=1000)
    response, _, writer = await request(
        server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"z" * 2000
    )
    assert response.status == 413
    writer.close()


async def test_slowloris_connections_do_not_stop_a_normal_client(
    start_server: StartServer,
) -> None:
    server = await start_server(echo_app)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100
    connections = [await open_tcp(server.port) for _ in range(200)]

    async def trickle(writer: asyncio.StreamWriter) -> None:
        for i in range(len(head)):
            writer.write(head[i : i + 1])
            await asyncio.sleep(1.0)

    trickles = [asyncio.create_task(trickle(w)) for _, w in connections]
    try:
        await asyncio.sleep(1.2)  # every slow client is in the middle of its head
        started = time.monotonic()
        response = await asyncio.wait_for(get(server.port, "/normal"), 1.0)
        assert response.status == 200
        assert time.monotonic() - started < 1.0
        results = await asyncio.wait_for(asyncio.to_thread(http_get, server.port, ["/x"]), 1.0)
        assert results[0][0] == 200
    finally:
        for task in trickles:
            task.cancel()
        for _, writer in connections:
            writer.close()


async def test_header_timeout_closes_a_slowloris_connection(start_server: StartServer) -> None:
    server = await start_server(echo_app, header_timeout=0.3)
    reader, writer = await open_tcp(server.port)
    started = time.monotonic()
    closed = False
    for byte in b"GET / HTTP/1.1\r\nHost: slow\r\n":
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        await asyncio.sleep(0.05)
        if reader.at_eof():
            closed = True
            break
    assert closed or await at_eof(reader, 1.0)
    assert time.monotonic() - started < 1.5
    writer.close()
    # A connection that sends nothing at all is closed too.
    reader, writer = await open_tcp(server.port)
    assert await at_eof(reader, 1.0)
    writer.close()


async def test_idle_keep_alive_connection_is_closed(start_server: StartServer) -> None:
    server = await start_server(page_app(), keepalive_timeout=0.2)
    response, reader, writer = await request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 200
    assert await at_eof(reader, 1.0)
    writer.close()


async def test_http_served_during_open_websockets(start_server: StartServer) -> None:
    from websockets.asyncio.client import connect

    from .support import ws_app

    async def handler(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    def sync_handler(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    async_server = await start_server(ws_app(handler))
    sync_server = await start_server(ws_app(sync_handler))
    for server in (async_server, sync_server):
        assert (await get(server.port, "/before")).body == b"page /before"
        clients = [await connect(f"ws://127.0.0.1:{server.port}/ws") for _ in range(3)]
        for client in clients:
            await client.send("hi")
            assert await client.recv() == "hi"
        results = await asyncio.to_thread(http_get, server.port, ["/during", "/again"])
        assert results == [(200, b"page /during"), (200, b"page /again")]
        for client in clients:
            await client.send("still")
            assert await client.recv() == "still"
            await client.close()


async def test_client_half_close_still_gets_its_response(start_server: StartServer) -> None:
    """A client that shuts down its sending side after the request (``nc -N``, some HTTP/1.0
    clients) still reads the answer."""
    server = await start_server(echo_app)
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.write_eof()
    first = await read_response(reader)
    second = await read_response(reader)
    assert first.body.startswith(b"GET /slow? ")
    assert second.body.startswith(b"GET /second? ")
    assert await at_eof(reader, 1.0)
    writer.close()


async def test_upgrade_to_another_protocol_is_served_as_plain_http(
    start_server: StartServer,
) -> None:
    """``curl --http2`` asks for ``Upgrade: h2c``: the page is served over HTTP/1.1 (RFC 7230
    section 6.7 lets a server ignore Upgrade), and the connection goes on."""
    server = await start_server(echo_app)
    reader, writer = await open_tcp(server.port)
    writer.write(
        b"GET /page HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    first = await read_response(reader)
    assert first.status == 200 and first.body.startswith(b"GET /page? ")
    second = await read_response(reader)
    assert second.status == 200 and second.body.startswith(b"GET /next? ")
    writer.close()
