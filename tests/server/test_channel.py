"""The HTTP/1.1 side of the server (stargate.server.channel, dispatch, wsgi, response):
a WSGI app or a route table on the loop's port, over raw sockets that read the bytes on
the wire.

Keep-alive, pipelining, chunked bodies both ways, HEAD, HTTP/1.0, errors, 100-continue; and
what an attacker (or a careless app) can do: split a response, write past or short of its
Content-Length, refuse an upgrade after accepting it, stall a body, never read, upload
large bodies at once, pipeline thousands of requests, send odd targets and heads.  The
transport-sensitive tests run on uvloop too (``both_loops``), the loop ``stargate serve``
uses; the WSGI apps are behind wsgiref's validator wherever they are valid on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import logging
import os
import socket
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stargate.server import ENVIRON_KEY, Routes, WebSocket
from stargate.server.wsgi import StartResponse

from .support import (
    TIMEOUT,
    HttpResponse,
    StartServer,
    at_eof,
    eventually,
    get,
    open_tcp,
    page_app,
    raw_connect,
    read_response,
    read_to_eof,
    request,
    validated,
    ws_app,
)

pytestmark = pytest.mark.asyncio


def _echo_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """Answers ``METHOD PATH?QUERY port=<client port> body=<request body>``."""
    if environ["PATH_INFO"] == "/slow":
        time.sleep(0.2)
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    text = (
        f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}?{environ['QUERY_STRING']} "
        f"port={environ['REMOTE_PORT']} body="
    ).encode() + body
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [text]


echo_app = validated(_echo_app)


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

    server = await start_server(validated(app))
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

    server = await start_server(validated(page_app(b"0123456789")))
    reader, writer = await open_tcp(server.port)
    writer.write(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await read_response(reader, head=True)
    assert head.status == 200
    assert head.header("Content-Length") == "10"
    # If HEAD had sent a body, it would be read here as the next status line.
    after = await read_response(reader)
    assert (after.status, after.body) == (200, b"0123456789")
    writer.close()

    streaming = await start_server(validated(app))
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

    server = await start_server(validated(app))
    response, _, writer = await request(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert response.header("Transfer-Encoding") is None  # HTTP/1.0 knows no chunked
    assert response.header("Content-Length") is None
    assert response.header("Connection") == "close"
    assert response.body == b"no length"  # read up to EOF: the server closed
    writer.close()


async def test_http10_with_content_length_keeps_alive_on_request(start_server: StartServer) -> None:
    server = await start_server(validated(page_app(b"abc")))
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
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fine"]

    server = await start_server(validated(app))
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
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise RuntimeError("late")
        yield b""  # a generator: the error comes on the first iteration

    server = await start_server(validated(app))
    assert (await get(server.port, "/")).status == 500


@pytest.mark.both_loops
async def test_a_body_cut_short_by_the_app_ends_with_a_reset(start_server: StartServer) -> None:
    """HTTP/1.0: the body ends with the connection, so a clean FIN after a failure would
    pass a truncated body for a whole one (RFC 9112 section 6.3).  The client sees a reset;
    the server goes on."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/fails":
            yield b"the first half"
            raise RuntimeError("half way")
        yield b"whole"

    server = await start_server(app)
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET /fails HTTP/1.0\r\n\r\n")
    with pytest.raises(ConnectionResetError):
        while await asyncio.wait_for(reader.read(65536), TIMEOUT):
            pass
    writer.close()
    response, reader, writer = await request(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert response.body == b"whole" and await at_eof(reader)  # a whole one ends cleanly
    writer.close()


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


async def test_http2_prior_knowledge_gets_400_with_its_reason(start_server: StartServer) -> None:
    """A client that speaks HTTP/2 without asking (RFC 9113 section 3.3) sends the
    connection preface, which llhttp reads past the head's empty line: refused at once,
    saying why, however the preface is cut."""
    server = await start_server(echo_app)
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    for cut in (len(preface), 18, 20):
        reader, writer = await open_tcp(server.port)
        writer.write(preface[:cut])
        await writer.drain()
        await asyncio.sleep(0.05)
        with contextlib.suppress(ConnectionError):
            writer.write(preface[cut:])
        response = await read_response(reader)
        assert response.status == 400
        assert response.body == b"an HTTP/2 connection preface: this server speaks HTTP/1.1\n"
        assert await at_eof(reader)
        writer.close()


@pytest.mark.both_loops
async def test_requests_pipelined_before_a_bad_one_are_answered_first(
    start_server: StartServer,
) -> None:
    """Requests parsed before a parse error get their responses, in order, and the 400
    comes after them: never in their place, never in the middle of one."""
    server = await start_server(echo_app)
    reader, writer = await open_tcp(server.port)
    writer.write(
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
        b"\x16\x03\x01 not http\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    first, second, refusal = [await read_response(reader) for _ in range(3)]
    assert first.body.startswith(b"GET /slow?")
    assert second.body.startswith(b"GET /second?")
    assert (refusal.status, refusal.header("Connection")) == (400, "close")
    assert await read_to_eof(reader) == b""  # /never is not answered
    writer.close()


async def test_nothing_follows_a_connection_close_response(start_server: StartServer) -> None:
    """RFC 9112 section 9.6: after a response with ``Connection: close`` the server sends
    nothing more, not even the refusal of garbage the client pipelined behind it."""
    server = await start_server(echo_app)
    reader, writer = await open_tcp(server.port)
    writer.write(
        b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\x16\x03 garbage\r\n\r\n"
    )
    response = await read_response(reader)
    assert (response.status, response.header("Connection")) == (200, "close")
    assert await read_to_eof(reader) == b""
    writer.close()


def padded_head(size: int) -> bytes:
    """A complete request head of exactly ``size`` bytes (request line, fields, CRLFs)."""
    start = b"GET /padded HTTP/1.1\r\nHost: x\r\nX-Pad: "
    return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"


@pytest.mark.parametrize("cut", [0, 1, 30, 300, 511, 512], ids=lambda cut: f"cut-{cut}")
async def test_head_limit_is_exact_however_the_head_is_cut(
    start_server: StartServer, cut: int
) -> None:
    """``max_header_size`` counts the head as received (request line, fields, line ends):
    a head of exactly the limit is served, one byte more is refused, whether it arrives in
    one read or in two.  It used to count only the target and the fields in one read, and
    everything after the first read: 526 bytes passed a 512 limit in one read."""
    server = await start_server(validated(environ_app), max_header_size=512)
    for size, status in ((512, 200), (513, 431), (526, 431)):
        head = padded_head(size)
        assert len(head) == size
        reader, writer = await open_tcp(server.port)
        if cut:
            writer.write(head[:cut])
            await writer.drain()
            await asyncio.sleep(0.05)  # the server reads the first piece on its own
        writer.write(head[cut:])
        response = await read_response(reader)
        assert response.status == status, (size, cut)
        writer.close()


async def test_incomplete_head_over_the_limit_in_one_read_gets_431(
    start_server: StartServer,
) -> None:
    """An oversized head is refused as soon as it passes the limit, complete or not, also
    when its first read already holds all of it: that read used to be counted by no one,
    and the connection was closed at header_timeout without a response."""
    server = await start_server(validated(environ_app), max_header_size=512, header_timeout=60)
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 600)
    response = await read_response(reader)
    assert (response.status, response.header("Connection")) == (431, "close")
    assert await at_eof(reader)
    writer.close()


async def test_request_line_over_the_limit_gets_414_before_it_ends(
    start_server: StartServer,
) -> None:
    """A request line that alone passes the limit is a target too long (RFC 9112 section
    3: 414), refused before its end comes; a long target in a head that fits is served."""
    server = await start_server(validated(environ_app), max_header_size=1024, header_timeout=60)
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET /" + b"t" * 2000)
    response = await read_response(reader)
    assert (response.status, response.body) == (414, b"request-target too long\n")
    assert await at_eof(reader)
    writer.close()
    response, _, writer = await request(
        server.port, b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % (b"t" * 900)
    )
    assert response.status == 200
    writer.close()


async def test_a_refusal_never_sent_is_never_counted(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The refusal of garbage behind a ``Connection: close`` response is never sent (see
    above), so neither the access log nor the metrics may count it: a refusal is recorded
    when it is sent, not when the parser decides it."""
    caplog.set_level(logging.INFO, "stargate.access")
    server = await start_server(echo_app, access_log=True)
    reader, writer = await open_tcp(server.port)
    writer.write(
        b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\x16\x03 garbage\r\n\r\n"
    )
    response = await read_response(reader)
    assert (response.status, response.header("Connection")) == (200, "close")
    assert await read_to_eof(reader) == b""
    writer.close()

    def access_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "stargate.access"]

    await eventually(lambda: any('"GET /slow HTTP/1.1" 200' in line for line in access_lines()))
    await asyncio.sleep(0.1)  # a refusal recorded late would be there by now
    assert not any(" refused " in line for line in access_lines()), access_lines()
    assert dict(server.state.metrics.http_responses) == {200: 1}
    # The control: a refusal that is sent is counted, once.
    response, reader, writer = await request(server.port, b"\x16\x03 garbage\r\n\r\n")
    assert response.status == 400
    writer.close()
    await eventually(lambda: any(" refused 400 " in line for line in access_lines()))
    assert dict(server.state.metrics.http_responses) == {200: 1, 400: 1}


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
        # Blocked by them, these would wait for the first of the slow heads: 108 s away.
        response = await asyncio.wait_for(get(server.port, "/normal"), TIMEOUT)
        assert response.status == 200
        results = await asyncio.wait_for(asyncio.to_thread(http_get, server.port, ["/x"]), TIMEOUT)
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
    server = await start_server(validated(page_app()), keepalive_timeout=0.2)
    response, reader, writer = await request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 200
    assert await at_eof(reader, 1.0)
    writer.close()


async def test_a_keepalive_timeout_of_0_says_connection_close(start_server: StartServer) -> None:
    """No keep-alive at all: the response says it closes (RFC 9112 section 9.6); it used to
    say nothing and be cut at once, so a client's next request on it failed."""
    server = await start_server(validated(page_app()), keepalive_timeout=0)
    response, reader, writer = await request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (response.status, response.header("Connection")) == (200, "close")
    assert await at_eof(reader, 1.0)
    writer.close()


async def test_http_served_during_open_websockets(start_server: StartServer) -> None:
    from websockets.asyncio.client import connect

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


@pytest.mark.both_loops
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


async def test_an_upgrade_request_with_a_body_smuggles_nothing(start_server: StartServer) -> None:
    """httptools reads no body after an upgrade request's head: served as plain HTTP, an
    ``Upgrade: h2c`` POST's body was parsed as a request of its own, one the app served
    (one request in another's body, past any proxy that forwards Upgrade).  It is a 400
    and the connection closes; the app sees neither request."""
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        seen.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"served"]

    server = await start_server(app)
    reader, writer = await open_tcp(server.port)
    writer.write(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    response = await read_response(reader)
    assert response.status == 400 and b"upgrade request with a body" in response.body
    assert await read_to_eof(reader) == b""
    writer.close()
    assert seen == []


# -- what the app hands over: validated before it reaches the wire ----------------------------
#
# These apps are not behind ``validated``: they hand over an invalid response on purpose, and
# wsgiref's validator would refuse it before the server's own check could be seen.

#: A second response, as an app could smuggle it onto a keep-alive connection.
FORGED = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nSet-Cookie: session=forged\r\n\r\nforged"

SPLITTING = {
    "CRLF in a value": ("200 OK", [("X-Echo", "a\r\nSet-Cookie: session=forged")]),
    "LF in a value": ("200 OK", [("X-Echo", "a\nSet-Cookie: session=forged")]),
    "CR in a value": ("200 OK", [("X-Echo", "a\rSet-Cookie: session=forged")]),
    "NUL in a value": ("200 OK", [("X-Echo", "a\0Set-Cookie: session=forged")]),
    "a second response in a value": (
        "200 OK",
        [("X-Echo", "a\r\nContent-Length: 0\r\n\r\n" + FORGED.decode())],
    ),
    "non-latin-1 value": ("200 OK", [("X-Echo", "\u20ac Set-Cookie: session=forged")]),
    "CRLF in a name": ("200 OK", [("X-Echo\r\nSet-Cookie", "session=forged")]),
    "colon in a name": ("200 OK", [("Set-Cookie: session=forged\r\nX", "y")]),
    "space in a name": ("200 OK", [("Set-Cookie session", "forged")]),
    "non-latin-1 name": ("200 OK", [("X-\u20ac", "Set-Cookie: session=forged")]),
    "CRLF in the status": ("200 OK\r\nSet-Cookie: session=forged", []),
    "LF in the status": ("200 OK\nSet-Cookie: session=forged", []),
    "NUL in the status": ("200 OK\0Set-Cookie: session=forged", []),
    "non-latin-1 status": ("200 \u2713 Set-Cookie: session=forged", []),
    "1xx status": ("101 Switching Protocols", []),
}


@pytest.mark.parametrize("case", SPLITTING)
async def test_response_splitting_gives_a_logged_500_and_nothing_injected(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    """A status or header with CR, LF, NUL or what latin-1 cannot carry is a 500 that closes
    the connection: no injected header, no second response, the pipelined request behind
    it unanswered (its client cannot tell it apart from the forged one)."""
    status, headers = SPLITTING[case]

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/next":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"next"]
        start_response(status, [("Content-Type", "text/plain"), *headers])
        return [b"body"]

    server = await start_server(app)
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET /evil HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    response = await read_response(reader)
    rest = await read_to_eof(reader)
    writer.close()
    assert (response.status, response.body) == (500, b"Internal Server Error\n")
    assert response.header("Connection") == "close"
    assert response.header("Set-Cookie") is None and response.header("X-Echo") is None
    assert rest == b""  # no forged response, and /next is not answered
    errors = [r for r in caplog.records if r.name == "stargate.wsgi" and r.levelname == "ERROR"]
    assert errors, "the app's invalid response must be logged"


async def test_invalid_header_after_a_valid_start_response_with_exc_info(
    start_server: StartServer,
) -> None:
    """An app's error handler (start_response with exc_info) is checked like any other."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("late")
        except KeyError:
            start_response("500 Oops\r\nX-Injected: 1", [], sys.exc_info())
        return [b"x"]

    server = await start_server(app)
    response = await get(server.port, "/")
    assert response.status == 500
    assert response.header("X-Injected") is None


BODIES: dict[str, Callable[[], Iterable[bytes]]] = {
    "list": lambda: [b"hello", FORGED],
    "single item": lambda: [b"hello" + FORGED],
    "generator": lambda: iter([b"he", b"llo" + FORGED, FORGED]),
}


@pytest.mark.both_loops
@pytest.mark.parametrize("kind", BODIES)
async def test_body_beyond_content_length_is_cut_never_a_second_response(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """RFC 9112 section 6.3: the Content-Length frames the body; what an app writes past it
    would be read by a keep-alive client as the next response.  It is cut and logged."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/next":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
            return [b"next"]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return BODIES[kind]()

    server = await start_server(validated(app))
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET /long HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await read_response(reader)
    second = await read_response(reader)
    assert (first.status, first.body) == (200, b"hello")
    assert (second.status, second.body, second.header("Set-Cookie")) == (200, b"next", None)
    writer.write(b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    third = await read_response(reader)
    assert third.body == b"next"
    assert b"forged" not in await read_to_eof(reader)  # the connection stayed in sync
    writer.close()
    assert any("more than its Content-Length" in r.getMessage() for r in caplog.records)


async def test_write_callable_beyond_content_length_is_cut(start_server: StartServer) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        write(b"abc")
        write(FORGED)
        return []

    server = await start_server(validated(app))
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [(await read_response(reader)).body for _ in range(2)] == [b"abc", b"abc"]
    writer.close()


async def test_write_after_the_response_is_complete_never_reaches_the_wire(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An app that keeps PEP 3333's ``write`` and calls it after its response is complete
    (from another thread, a timer ...) must not append to the connection: the bytes would be
    read as the next response (desync)."""
    late: list[BaseException] = []
    wrote = threading.Event()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/first":

            def later() -> None:
                time.sleep(0.1)
                try:
                    write(FORGED)
                except BaseException as exc:
                    late.append(exc)
                wrote.set()

            threading.Thread(target=later).start()
        yield environ["PATH_INFO"].encode()  # chunked: no Content-Length to cut at

    server = await start_server(app)
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader)).body == b"/first"
    await asyncio.wait_for(asyncio.to_thread(wrote.wait, TIMEOUT), TIMEOUT)
    writer.write(b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    second = await read_response(reader)
    assert (second.status, second.body) == (200, b"/second")
    assert b"forged" not in await read_to_eof(reader)
    writer.close()
    assert late, "the late write must raise in the app's thread"


@pytest.mark.both_loops
@pytest.mark.parametrize("kind", ["list", "generator", "write"])
async def test_body_short_of_content_length_closes_the_connection(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """A body shorter than its Content-Length: the client would read the next response as
    the rest of this body, so the connection is closed after what was written."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        if kind == "write":
            write(b"short")
            return []
        return [b"short"] if kind == "list" else iter([b"sh", b"ort"])

    server = await start_server(validated(app))
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    response = await read_response(reader, head=True)
    assert response.header("Content-Length") == "10"
    assert await read_to_eof(reader) == b"short"  # then closed: /next is not answered
    writer.close()
    assert any("closing the connection" in r.getMessage() for r in caplog.records)


HOP_BY_HOP = [
    ("Transfer-Encoding", "chunked"),
    ("Transfer-Encoding", "identity"),
    ("Connection", "keep-alive"),
    ("Connection", "Upgrade"),
    ("Keep-Alive", "timeout=300"),
    ("TE", "trailers"),
    ("Trailer", "X-Checksum"),
    ("Upgrade", "websocket"),
    ("Proxy-Authenticate", "Basic"),
]


@pytest.mark.parametrize(("name", "value"), HOP_BY_HOP)
async def test_app_hop_by_hop_headers_are_a_500_as_in_waitress(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, name: str, value: str
) -> None:
    """PEP 3333: hop-by-hop headers are the server's.  An app that frames its body itself
    (``Transfer-Encoding: chunked`` and pre-chunked bytes) would otherwise be chunked twice;
    waitress answers such an app with a 500, and so does this server."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), (name, value)])
        yield b"5\r\nhello\r\n"
        yield b"0\r\n\r\n"

    server = await start_server(app)
    response, reader, writer = await request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (response.status, response.body) == (500, b"Internal Server Error\n")
    assert response.header("Transfer-Encoding") is None  # one framing: Content-Length
    assert await read_to_eof(reader) == b""
    writer.close()
    assert any("hop-by-hop" in (r.exc_text or "") for r in caplog.records)


async def test_app_connection_close_is_honoured(start_server: StartServer) -> None:
    """``Connection: close`` is the one hop-by-hop header an app may set: it is obeyed."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        return [b"bye"]

    server = await start_server(validated(app))
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    response = await read_response(reader)
    assert (response.body, response.header("Connection")) == (b"bye", "close")
    assert await read_to_eof(reader) == b""  # the pipelined request is not answered
    writer.close()


async def test_app_426_may_name_the_upgrade(start_server: StartServer) -> None:
    """RFC 9110 section 15.5.22: a 426 MUST send Upgrade, so an app may set it there."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response(
            "426 Upgrade Required", [("Content-Type", "text/plain"), ("Upgrade", "websocket")]
        )
        return [b"use a WebSocket"]

    server = await start_server(validated(app))
    response = await get(server.port, "/")
    assert (response.status, response.header("Upgrade")) == (426, "websocket")
    # RFC 9110 section 7.8: who sends Upgrade sends the "upgrade" connection option too.
    options = response.header("Connection") or ""
    assert "upgrade" in [option.strip() for option in options.split(",")]


# -- the upgrade happens only if the app's answer stands ------------------------------------

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def accepting(then: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> Any:
    """An app that accepts the upgrade with a handler that records it ran, then does
    ``then`` (answers, raises ...) as a view behind a tween or an exception view would."""
    ran = threading.Event()

    async def handler(ws: Any) -> None:
        ran.set()
        await ws.send("the handler runs")

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        environ[ENVIRON_KEY].accept(handler)
        return then(environ, start_response)

    app.ran = ran  # type: ignore[attr-defined]
    return app


def forbidden(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("403 Forbidden", [("Content-Type", "text/plain")])
    return [b"not you"]


def raising(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    raise PermissionError("the view failed after accepting")


def exception_view(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """A framework's exception view: the view raised, the framework answers for it."""
    try:
        raising(environ, start_response)
    except PermissionError:
        start_response("403 Forbidden", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"exception view"]
    raise AssertionError("unreachable")


def streamed_refusal(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    start_response("401 Unauthorized", [("Content-Type", "text/plain")])
    yield b"log "
    yield b"in"


def redirected(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("303 See Other", [("Location", "/login"), ("Content-Type", "text/plain")])
    return [b"log in first"]


REFUSALS = {
    "redirect after accept": (redirected, 303, b"log in first"),
    "403 after accept": (forbidden, 403, b"not you"),
    "exception after accept": (raising, 500, b"Internal Server Error\n"),
    "exception view 403": (exception_view, 403, b"exception view"),
    "streamed 401": (streamed_refusal, 401, b"log in"),
}


@pytest.mark.both_loops
@pytest.mark.parametrize("case", REFUSALS)
async def test_upgrade_refused_after_accept_gets_the_apps_answer_and_no_101(
    start_server: StartServer, case: str
) -> None:
    """Issue 10: an app (or a tween, or an exception view) that accepts and then answers
    403 or raises used to get ``101 Switching Protocols`` and a running handler.  The
    server closes after the app's answer, and its head says so (RFC 9112 section 9.6)."""
    then, status, body = REFUSALS[case]
    app = accepting(then)
    server = await start_server(validated(app))
    reader, writer = await open_tcp(server.port)
    writer.write(UPGRADE)
    response = await read_response(reader)
    assert (response.status, response.body) == (status, body)
    assert response.header("Connection") == "close"
    assert b"101" not in await read_to_eof(reader)
    writer.close()
    await asyncio.sleep(0.1)  # a handler started with the decision would have run by now
    assert not app.ran.is_set()
    assert not server.websockets


async def test_upgrade_refused_without_accept_says_connection_close(
    start_server: StartServer,
) -> None:
    """An app that answers an upgrade request itself (a 403 of its own auth) is refused as
    well: the server closes after the answer, and the answer says so."""
    server = await start_server(validated(forbidden))
    response, reader, writer = await request(server.port, UPGRADE)
    assert (response.status, response.header("Connection")) == (403, "close")
    assert await read_to_eof(reader) == b""
    writer.close()


async def test_upgrade_accepted_and_answered_200_stands(start_server: StartServer) -> None:
    """The control: an accepting app whose answer is not an error gets its WebSocket."""

    def ok(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ignored"]

    app = accepting(ok)
    server = await start_server(validated(app))
    reader, writer = await open_tcp(server.port)
    writer.write(UPGRADE)
    response = await read_response(reader, head=True)
    assert response.status == 101
    await asyncio.wait_for(asyncio.to_thread(app.ran.wait, TIMEOUT), TIMEOUT)
    assert app.ran.is_set()
    writer.close()


async def test_an_upgrade_decision_slower_than_header_timeout_is_cut(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An app still deciding an upgrade in its thread at ``header_timeout`` loses the
    connection, with a 503 that says why (it used to be closed without a word, unlogged):
    no 101 comes later, and no handler runs."""

    def slow(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        time.sleep(3.0)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return []

    app = accepting(slow)
    server = await start_server(
        validated(app), header_timeout=0.3, access_log=True, trusted_proxies=("127.0.0.1",)
    )
    reader, writer = await open_tcp(server.port)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="stargate.access"):
        writer.write(UPGRADE.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"))
        response = await read_response(reader)
    assert response.status == 503 and b"did not decide on the upgrade" in response.body
    assert server.state.metrics.handshakes["503"] == 1  # counted, and logged beside it
    (line,) = [r.getMessage() for r in caplog.records if r.name == "stargate.access"]
    assert line.startswith("203.0.113.7:0 ") and " refused 503 " in line  # the proxy's word
    assert await read_to_eof(reader) == b""
    assert time.monotonic() - started < 2.5  # cut at the deadline, not when the app returned
    writer.close()
    await asyncio.sleep(3.0)  # the app has answered by now
    assert not app.ran.is_set()
    assert not server.websockets


@pytest.mark.parametrize(
    ("head", "split"),
    [
        (UPGRADE, False),
        (UPGRADE, True),
        # An absolute-form target is not the fast path's: llhttp reads it, in one read too.
        (UPGRADE.replace(b"GET /ws ", b"GET http://127.0.0.1/ws "), False),
    ],
    ids=["one read", "head apart", "one read through the reader"],
)
async def test_early_frames_past_max_header_size_pause_reading_and_are_all_answered(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch, head: bytes, split: bool
) -> None:
    """Frames sent right behind the head wait for the app's decision, held to
    ``max_header_size`` as later reads are: the read that passes it pauses reading, the
    first one too (it did not, on the short way and through the reader), and once the
    upgrade stands every one of them is answered."""
    from stargate.server.channel import HttpChannel

    paused_at: list[int] = []
    pause = HttpChannel._pause_reading

    def recording(self: HttpChannel) -> None:
        upgrade = self._upgrade
        paused_at.append(len(upgrade.trailing) if upgrade is not None else -1)
        pause(self)

    monkeypatch.setattr(HttpChannel, "_pause_reading", recording)
    decide = threading.Event()

    async def echo(ws: Any) -> None:
        ws.on_message = ws.send_nowait

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        decide.wait(TIMEOUT)  # the decision takes a while: the early frames wait
        environ[ENVIRON_KEY].accept(echo)
        return []

    server = await start_server(app, max_header_size=1024)
    reader, writer = await open_tcp(server.port)
    frames = b"".join(masked_text(f"m{i:03}".encode() * 100) for i in range(20))
    if split:
        writer.write(head)
        await writer.drain()
        await asyncio.sleep(0.05)
    writer.write(frames if split else head + frames)
    await eventually(lambda: bool(paused_at))
    assert paused_at[0] > 1024  # the read that passed the limit: reading stopped there
    decide.set()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101 ")
    for i in range(20):
        header = await asyncio.wait_for(reader.readexactly(4), TIMEOUT)
        assert header == bytes([0x81, 126, 1, 144])  # 400 bytes of text
        assert await reader.readexactly(400) == f"m{i:03}".encode() * 100
    writer.write(masked_text(b"after" * 100))  # reading resumed with the upgrade
    assert await asyncio.wait_for(reader.readexactly(504), TIMEOUT) == (
        bytes([0x81, 126, 1, 244]) + b"after" * 100
    )
    writer.close()


def masked_text(payload: bytes) -> bytes:
    """A client's text frame of 126 to 65,535 bytes, masked with a zero key."""
    return bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + bytes(4) + payload


async def test_an_upgrade_undecided_at_the_shutdowns_deadline_has_its_line(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The app still deciding an upgrade when the shutdown's deadline passes: the
    connection is dropped, and the refusal is logged and counted then, once (the line was
    to be written by the decision, after the loop was gone)."""
    entered, go = threading.Event(), threading.Event()

    def slow(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        entered.set()
        go.wait(TIMEOUT)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return []

    app = accepting(slow)
    server = await start_server(validated(app), header_timeout=60, access_log=True)
    reader, writer = await open_tcp(server.port)
    with caplog.at_level(logging.INFO, logger="stargate.access"):
        writer.write(UPGRADE)
        await eventually(entered.is_set)  # the decision is in the app's thread
        await server.shutdown(0.3)
        assert await read_to_eof(reader) == b""
        go.set()
        await asyncio.sleep(0.2)  # the decision comes back: nothing more is written
    (line,) = [r.getMessage() for r in caplog.records if r.name == "stargate.access"]
    assert " refused 503 " in line and "stopped before the app decided" in line
    assert server.state.metrics.handshakes["503"] == 1
    assert not app.ran.is_set()
    writer.close()


async def test_upgrade_refusal_too_large_to_hold_is_a_500(start_server: StartServer) -> None:
    """The app's answer to an upgrade is held until it is known whether it stands; a 2 MiB
    error page is no refusal but a misuse, and becomes a 500, not a silent close."""

    def huge(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"x" * (2 << 20)]

    app = accepting(huge)
    server = await start_server(app)
    response, reader, writer = await request(server.port, UPGRADE)
    assert (response.status, response.body) == (500, b"Internal Server Error\n")
    assert await read_to_eof(reader) == b""
    writer.close()
    assert not app.ran.is_set()


# -- deadlines -------------------------------------------------------------------------------
@pytest.mark.both_loops
async def test_stalled_body_is_dropped_after_body_timeout(start_server: StartServer) -> None:
    """Issue 10: once the head was complete no deadline applied, and a body that stalled
    kept its connection forever."""
    called = threading.Event()

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        called.set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"never"]

    server = await start_server(validated(app), body_timeout=0.3, header_timeout=30.0)
    for head in (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",  # not one byte
    ):
        reader, writer = await open_tcp(server.port)
        writer.write(head)
        assert await read_to_eof(reader, TIMEOUT) == b""  # dropped, well before TIMEOUT
        writer.close()
    assert not called.is_set()


async def test_slow_but_steady_body_is_not_cut(start_server: StartServer) -> None:
    """``body_timeout`` bounds the silence between bytes, not the whole upload."""
    server = await start_server(echo_app, body_timeout=1.0)
    reader, writer = await open_tcp(server.port)
    writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n")
    for byte in b"0123456789abcde":  # 1.5 s in all, a byte every 0.1 s
        await asyncio.sleep(0.1)
        writer.write(bytes([byte]))
    response = await read_response(reader)
    assert response.body.endswith(b"body=0123456789abcde")
    writer.close()


async def test_pipelined_body_keeps_body_timeout_after_the_previous_response(
    start_server: StartServer,
) -> None:
    server = await start_server(echo_app, body_timeout=3.0, keepalive_timeout=0.3)
    reader, writer = await open_tcp(server.port)
    writer.write(
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nda"
    )
    first = await read_response(reader)  # /slow takes 0.2 s
    assert first.body.startswith(b"GET /slow?")
    await asyncio.sleep(0.8)  # past keepalive_timeout, well within body_timeout
    writer.write(b"ta")
    second = await read_response(reader)
    assert second.body.endswith(b"body=data")
    writer.close()


@pytest.mark.both_loops
async def test_client_gone_stops_an_endless_stream(start_server: StartServer) -> None:
    """An app streaming without end to a client that left stops at its next write (its
    iterable closed), instead of producing for nobody until the disk fills."""
    closed = threading.Event()

    class Endless:
        def __iter__(self) -> Iterator[bytes]:
            while True:
                yield BIG_CHUNK

        def close(self) -> None:
            closed.set()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Endless() if environ["PATH_INFO"] == "/endless" else [b"page"]

    server = await start_server(validated(app))
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader, head=True)).status == 200
    await asyncio.wait_for(reader.readexactly(100_000), TIMEOUT)
    writer.transport.abort()  # gone, with a reset
    await asyncio.wait_for(asyncio.to_thread(closed.wait, TIMEOUT), TIMEOUT)
    assert closed.is_set()
    assert (await get(server.port, "/")).body == b"page"  # and the server goes on


# -- slow readers: worker threads never wait on a client ---------------------------------------

#: A streamed response larger than what the kernel's socket buffers can hold for a client
#: that does not read (a few hundred KiB with a small receive window).
BIG_CHUNK = b"b" * (64 * 1024)
BIG_CHUNKS = 128
BIG_SIZE = BIG_CHUNKS * len(BIG_CHUNK)  # 8 MiB


def big_app(finished: list[str]) -> Any:
    """Streams 8 MiB at ``/big`` (recording when its iterable is done: the worker thread is
    free), a short page elsewhere."""

    class Stream:
        def __init__(self, path: str) -> None:
            self.path = path

        def __iter__(self) -> Iterator[bytes]:
            for _ in range(BIG_CHUNKS):
                yield BIG_CHUNK

        def close(self) -> None:
            finished.append(self.path)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        upgrade = environ.get(ENVIRON_KEY)
        if upgrade is not None:

            async def handler(ws: Any) -> None:
                await ws.send("upgraded")

            upgrade.accept(handler)
            return []
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        if environ["PATH_INFO"].startswith("/big"):
            return Stream(environ["PATH_INFO"])
        return [b"small"]

    return app


def spooled_files(directory: Path) -> int:
    """Open files of this process in ``directory`` (unlinked temporary files included)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(directory)):
                count += 1
    return count


@pytest.mark.both_loops
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
async def test_slow_readers_do_not_hold_worker_threads(
    start_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10: with ``threads=4``, four clients that ask for a large streamed response and
    never read blocked every other request and every upgrade decision.  Now each thread
    hands its output to the connection's buffer (memory, then a temporary file) and is free
    as soon as the app's iterable is done."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the output spills
    finished: list[str] = []
    server = await start_server(
        validated(big_app(finished)), threads=4, output_buffer_memory=256 * 1024
    )
    tracemalloc.start()
    try:
        stalled = []
        for i in range(4):
            reader, writer = await open_tcp(server.port, rcvbuf=4096)
            writer.write(b"GET /big/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            stalled.append((reader, writer))
        # Every app's iterable ran to its end although no client read: the threads are free.
        await eventually(lambda: len(finished) == 4)
        assert spooled_files(tmp_path) >= 4  # each response waits in a temporary file
        # A fifth client and an upgrade decision are answered at once.
        response = await asyncio.wait_for(get(server.port, "/small"), TIMEOUT)
        assert (response.status, response.body) == (200, b"small")
        ws = await raw_connect(server.port, "/ws")
        assert (await ws.read_frame())[2] == b"upgraded"
        ws.abort()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 32 MiB were produced for clients that took almost none of it; kept in memory it would
    # cost that much.  Spilled, each connection holds output_buffer_memory (256 KiB), the
    # transport's buffer and a write chunk: about 2 MiB in all, so 12 MiB is a wide bound.
    assert peak < 12 << 20, f"peak {peak / 2**20:.1f} MiB"
    # The output is intact, only waiting: a client that reads after all gets all of it.
    reader, writer = stalled[0]
    head = await read_response(reader, head=True)
    assert head.header("Transfer-Encoding") == "chunked"
    size = 0
    while True:
        line = await asyncio.wait_for(reader.readuntil(b"\r\n"), TIMEOUT)
        chunk = int(line, 16)
        size += len(await asyncio.wait_for(reader.readexactly(chunk + 2), TIMEOUT)) - 2
        if chunk == 0:
            break
    assert size == BIG_SIZE
    for _, writer in stalled:
        writer.close()


@pytest.mark.both_loops
async def test_client_that_never_reads_is_aborted_after_write_timeout(
    start_server: StartServer,
) -> None:
    """Issue 10: a client that never read its response was never aborted, and counted
    against ``max_connections`` forever.  Past ``write_timeout`` without taking any output,
    it is aborted and its slot is free again."""
    finished: list[str] = []
    # write_timeout leaves room for the refused client's check before the abort.
    server = await start_server(validated(big_app(finished)), max_connections=1, write_timeout=2.0)
    reader, writer = await open_tcp(server.port, rcvbuf=4096)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    await eventually(lambda: finished == ["/big"])
    # The one slot is taken: another client is refused at once.
    refused_reader, refused_writer = await open_tcp(server.port)
    refused_writer.write(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await read_to_eof(refused_reader) == b""
    refused_writer.close()

    # After write_timeout the stalled client is aborted: the slot serves others again.
    async def served() -> bool:
        try:
            return (await get(server.port, "/small")).body == b"small"
        except (ConnectionError, asyncio.IncompleteReadError):
            return False

    deadline = asyncio.get_running_loop().time() + 2 * TIMEOUT
    while not await served():
        assert asyncio.get_running_loop().time() < deadline, "the stalled client kept its slot"
        await asyncio.sleep(0.1)
    # What the stalled client gets is what the kernel held, then a reset: not the response.
    received = await read_to_eof(reader)
    assert len(received) < BIG_SIZE
    writer.close()


async def test_slow_but_steady_reader_is_not_cut_by_write_timeout(
    start_server: StartServer,
) -> None:
    finished: list[str] = []
    server = await start_server(validated(big_app(finished)), write_timeout=1.0)
    reader, writer = await open_tcp(server.port, rcvbuf=4096)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await read_response(reader, head=True)
    assert head.status == 200
    received = await read_slowly(reader, 3.0)  # three write_timeouts of steady reading
    received += await read_to_eof_or_end(reader)
    size = len(dechunk(bytes(received)))
    assert size == BIG_SIZE  # all of it: not cut while it was read
    writer.close()


async def test_a_slow_reader_gets_all_of_a_kept_alive_response_past_keepalive_timeout(
    start_server: StartServer,
) -> None:
    """A connection whose response is still being written is not idle: the keep-alive
    deadline starts once the response is out.  (Found by an attacker's probe: it started
    once the app had handed its response over, and the last megabytes of a download to a
    slow client were cut at keepalive_timeout + linger_timeout.)"""
    finished: list[str] = []
    server = await start_server(
        validated(big_app(finished)), keepalive_timeout=0.3, linger_timeout=0.2
    )
    reader, writer = await open_tcp(server.port, rcvbuf=4096)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await read_response(reader, head=True)
    assert head.status == 200
    received = await read_slowly(reader, 1.5)  # five keepalive_timeouts of slow reading
    assert finished == ["/big"]  # the app was done long before
    received += await read_to_eof_or_end(reader)
    assert len(dechunk(bytes(received))) == BIG_SIZE
    # Still kept alive: the next request is answered, and then the idle deadline holds.
    writer.write(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader)).status == 200
    assert await at_eof(reader, 2.0)
    writer.close()


async def test_a_close_once_a_paused_response_is_out_logs_no_loop_error(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``Connection: close`` response that a slow reader paused is all out in the call
    that resumes writing: the close waits a loop pass.  Closing in that call made asyncio's
    selector transport call ``connection_lost`` twice (its write callback does once the
    buffer is empty and it is closing, and ``close`` schedules another), which logged an
    "Exception in callback" traceback for a response that went well."""
    finished: list[str] = []
    server = await start_server(validated(big_app(finished)))
    reader, writer = await open_tcp(server.port, rcvbuf=65536)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await asyncio.sleep(0.5)  # the output pauses: the client reads nothing yet
    received = await read_to_eof(reader)
    assert len(dechunk(received.partition(b"\r\n\r\n")[2])) == BIG_SIZE
    writer.close()
    await eventually(lambda: not server.state.channels)
    assert "Exception in callback" not in caplog.text


async def test_an_upgrade_handed_over_once_a_paused_response_is_out_logs_no_loop_error(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The same for an upgrade pipelined behind the response, with the client's close
    frame: the handover and the WebSocket's close come from the flush that resuming
    writes starts (found by a review: the WebSocket closed inside the write callback)."""

    async def handler(ws: WebSocket) -> None:
        await asyncio.sleep(TIMEOUT)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        upgrade = environ.get(ENVIRON_KEY)
        if upgrade is not None:
            upgrade.accept(handler)
            start_response("200 OK", [])
            return []
        start_response("200 OK", [("Content-Length", str(BIG_SIZE))])
        return (BIG_CHUNK for _ in range(BIG_CHUNKS))

    server = await start_server(app, upgrade_on_loop=True)
    reader, writer = await open_tcp(server.port, rcvbuf=65536)
    mask = b"\x01\x02\x03\x04"
    close = b"\x88\x82" + mask + bytes(b ^ mask[i] for i, b in enumerate(b"\x03\xe8"))
    writer.write(
        b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" + close
    )
    await asyncio.sleep(0.5)  # the output pauses: the client reads nothing yet
    received = await read_to_eof(reader)
    assert b"HTTP/1.1 101 Switching Protocols\r\n" in received
    assert received.endswith(b"\x88\x02\x03\xe8")  # the close echoed, then the end
    writer.close()
    await eventually(lambda: not server.state.channels and not server.state.websockets)
    assert "Exception in callback" not in caplog.text


async def read_slowly(reader: asyncio.StreamReader, seconds: float) -> bytearray:
    """Read 4 KiB every 50 ms for ``seconds``: a slow but steady client."""
    received = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        received += await asyncio.wait_for(reader.read(4096), TIMEOUT)
        await asyncio.sleep(0.05)
    return received


async def read_to_eof_or_end(reader: asyncio.StreamReader) -> bytes:
    """The rest of a chunked body, read fast, up to its last chunk (or the connection's
    end: a reset counts as an end)."""
    data = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while not data.endswith(b"\r\n0\r\n\r\n"):
            chunk = await asyncio.wait_for(reader.read(1 << 20), TIMEOUT)
            if not chunk:
                break
            data += chunk
    return bytes(data)


def dechunk(data: bytes) -> bytes:
    """The payload of a chunked body (as much of it as is complete)."""
    body = bytearray()
    while True:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            return bytes(body)
        size = int(line, 16)
        if size == 0 or len(rest) < size + 2:
            return bytes(body)
        body += rest[:size]
        data = rest[size + 2 :]


# -- request bodies: spooled to disk past body_spool_size --------------------------------------

UPLOAD_BLOCK = os.urandom(64 * 1024)
UPLOAD_BLOCKS = 229  # 15,007,744 bytes: about 15 MB, under the default max_body_size


def digest_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """Reads the body in pieces (as a real upload handler does) and answers its digest."""
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    size = 0
    while piece := stream.read(64 * 1024):
        digest.update(piece)
        size += len(piece)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{size} {digest.hexdigest()}".encode()]


@pytest.mark.both_loops
async def test_concurrent_large_uploads_are_spooled_not_held_in_memory(
    start_server: StartServer,
) -> None:
    """Issue 10: ten concurrent 15 MB uploads must not cost ~150 MB of RAM.  Past
    ``body_spool_size`` (512 KiB by default) a body goes to a temporary file."""
    server = await start_server(validated(digest_app), threads=10)
    expected = hashlib.sha256(UPLOAD_BLOCK * UPLOAD_BLOCKS).hexdigest()
    length = len(UPLOAD_BLOCK) * UPLOAD_BLOCKS

    async def upload() -> bytes:
        reader, writer = await open_tcp(server.port)
        writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length)
        for _ in range(UPLOAD_BLOCKS):  # one block object, sent again and again
            writer.write(UPLOAD_BLOCK)
            await writer.drain()
        response = await read_response(reader)
        writer.close()
        assert response.status == 200
        return response.body

    tracemalloc.start()
    try:
        bodies = await asyncio.wait_for(asyncio.gather(*(upload() for _ in range(10))), 60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(bodies) == {f"{length} {expected}".encode()}
    # Held in memory, the bodies would cost 150 MB.  Spooled, each upload keeps at most
    # body_spool_size (512 KiB) in memory before moving it to its file, plus the parser's
    # and the transports' buffers (a few 64 KiB pieces per connection): some 10 MiB for
    # ten.  40 MiB leaves a wide margin and stays far below 150 MB.
    assert peak < 40 << 20, f"peak {peak / 2**20:.1f} MiB"


async def test_pipelined_bodies_behind_a_busy_request_are_spooled_too(
    start_server: StartServer,
) -> None:
    """The bound of the spooling is per connection: bodies queued behind a request still
    being answered do not each get ``body_spool_size`` of memory."""
    gate = threading.Event()

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/busy":
            gate.wait(TIMEOUT)
        size = b"%d" % len(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(size)))]
        )
        return [size]

    server = await start_server(validated(app))
    body = b"z" * (500 * 1024)  # under body_spool_size (512 KiB): kept in memory
    data = b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n" + b"".join(
        b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (i, len(body), body)
        for i in range(16)
    )
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
    tracemalloc.start()
    try:
        sender.start()  # from a thread, straight from ``data``: no copy on our side
        await asyncio.sleep(1.0)  # the server reads what it will while /busy is answered
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        gate.set()
    stream = sock.makefile("rb")
    sizes = [(await asyncio.to_thread(read_response_sync, stream)) for _ in range(17)]
    assert sizes == [(200, b"0")] + [(200, b"%d" % len(body))] * 16
    sender.join(TIMEOUT)
    sock.close()
    # 16 bodies of 500 KiB are 8 MiB; spooled (or left unread) past body_spool_size, the
    # server holds some 512 KiB of them plus a read or two.
    assert held < 3 << 20, f"{held / 2**20:.1f} MiB held"


async def test_small_body_and_spooled_body_read_alike(start_server: StartServer) -> None:
    """``wsgi.input`` reads the same whether the body stayed in memory or was spooled:
    read(n), readline, iteration, to its end."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        stream = environ["wsgi.input"]
        first = stream.readline()
        rest = b"".join(stream)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d %d %d" % (len(first), len(rest), len(stream.read(10)))]

    server = await start_server(validated(app), body_spool_size=1024)
    for size in (100, 1024, 1025, 200_000):
        body = (b"x" * 99 + b"\n") * (size // 100) + b"y" * (size % 100)
        response, _, writer = await request(
            server.port,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        )
        writer.close()
        assert response.body == b"100 %d 0" % (len(body) - 100), size


# -- pipelining: a loop, never recursion; bounded memory ----------------------------------------


def read_response_sync(stream: Any) -> tuple[int, bytes]:
    """One response from a blocking file: ``(status, body)``; Content-Length bodies only."""
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    length = 0
    while (line := stream.readline()) != b"\r\n":
        assert line, "connection closed inside a response head"
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return int(status_line.split()[1]), stream.read(length)


def pipeline(port: int, data: bytes, expected: list[bytes], *, read_after: float = 0.0) -> None:
    """Blocking: send ``data`` (many requests) on one connection from one thread while this
    one reads a response for each ``expected`` body (after ``read_after`` seconds), in
    order; an error status reads as ``b"<status> <body>"``.  Nothing read is kept, so the
    memory measured is the server's."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive window: what the server sends and we do not read yet stays mostly on
    # its side, where a server that ignored backpressure would have to buffer it.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    failures: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(data)
        except BaseException as exc:  # reported by the reading thread
            failures.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(read_after)
        stream = sock.makefile("rb")
        for i, body in enumerate(expected):
            status, received = read_response_sync(stream)
            if status >= 400:
                received = b"%d %s" % (status, received)
            assert received == body, f"response {i}: {received[:100]!r} != {body[:100]!r}"
    finally:
        sender.join(TIMEOUT)
        sock.close()
        assert not failures, failures


#: Each pipelined request carries some header bytes, so that a server that kept every
#: parsed request (instead of pausing at max_pipelined) would show in memory.
FILLER = b"X-Filler: " + b"f" * 500 + b"\r\n"


async def measured(call: Callable[[], None], traced_for: float | None = None) -> int:
    """Run ``call()`` in a thread while the server runs on this loop; the process's peak
    traced allocation meanwhile (or during its first ``traced_for`` seconds only: tracing
    makes every allocation several times slower)."""
    tracemalloc.start()
    try:
        task = asyncio.ensure_future(asyncio.wait_for(asyncio.to_thread(call), 60))
        if traced_for is not None:
            await asyncio.sleep(traced_for)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        await task
        if traced_for is None:
            peak = tracemalloc.get_traced_memory()[1]
        return peak
    finally:
        tracemalloc.stop()


#: The peak traced allocation while pipelined requests are served.  The server parses at
#: most ``max_pipelined`` requests ahead (plus what one read holds) and stops answering while
#: the client does not take its output, so it holds about 1 MiB here.  A server that parsed
#: every request it was sent measured 13 MiB for the WSGI test (``max_pipelined`` raised to
#: 100,000); 8 MiB sits between the two with a margin of 6 on the bounded side.
PIPELINE_BOUND = 8 << 20


def path_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """Answers the request's path, with a Content-Length."""
    body = environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.mark.both_loops
async def test_10000_pipelined_gets_wsgi(start_server: StartServer) -> None:
    server = await start_server(validated(path_app))
    count = 10_000
    data = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n%s\r\n" % (i, FILLER) for i in range(count))
    # Traced while the reader is stalled: a server that parsed every request it was sent
    # (10,000 in some milliseconds), or produced answers nobody reads, shows there.
    expected = [b"/%d" % i for i in range(count)]  # all answered, in order
    peak = await measured(
        lambda: pipeline(server.port, data, expected, read_after=1.0), traced_for=1.0
    )
    assert peak < PIPELINE_BOUND, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.both_loops
async def test_10000_pipelined_gets_routes(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10: ~2,000 pipelined GETs in Routes mode ended in RecursionError (answers on the
    loop called back into the next one) and no answers at all."""

    async def chat(ws: Any) -> None:
        await ws.send("hi")

    server = await start_server(Routes({"/chat": chat}))
    count = 10_000
    # Long paths make long 404 bodies: output a server produced regardless of a client
    # that does not read would show in memory too.
    padding = b"p" * 1000
    data = b"".join(
        b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % (b"chat" if i % 2 else b"%d%s" % (i, padding))
        for i in range(count)
    )
    expected = [
        b"426 this URL serves WebSocket connections only: a handshake sends "
        b"Connection: Upgrade and Upgrade: websocket\n"
        if i % 2
        else b"404 no route for /%d%s\n" % (i, padding)
        for i in range(count)
    ]
    peak = await measured(lambda: pipeline(server.port, data, expected, read_after=0.5))
    assert peak < PIPELINE_BOUND, f"peak {peak / 2**20:.1f} MiB"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.both_loops
async def test_2000_pipelined_h2c_upgrades(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10: ~1,500 pipelined ``Upgrade: h2c`` requests (each ignored, RFC 9110 section
    7.8, and parsed on by a fresh parser) ended in RecursionError."""
    server = await start_server(validated(path_app))
    count = 2_000
    data = b"".join(
        b"GET /%d HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n" % i
        for i in range(count)
    )
    expected = [b"/%d" % i for i in range(count)]
    peak = await measured(lambda: pipeline(server.port, data, expected))
    assert peak < PIPELINE_BOUND, f"peak {peak / 2**20:.1f} MiB"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# -- the request head: target forms, limits, Expect ----------------------------------------------


def environ_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """Answers the environ keys a request head decides, one ``KEY=value`` per line."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    keys = ["REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "HTTP_HOST", "CONTENT_LENGTH"]
    keys += ["CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_X_T"]
    lines = [f"{key}={environ[key]}" for key in keys if key in environ]
    lines.append(f"body={body.decode('latin-1')}")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["\n".join(lines).encode("latin-1")]


def fields(response: HttpResponse) -> dict[str, str]:
    return dict(line.split("=", 1) for line in response.body.decode("latin-1").split("\n"))


async def test_absolute_form_target(start_server: StartServer) -> None:
    """RFC 9112 section 3.2.2: ``GET http://host/x`` is the path ``/x``, and the target's
    authority stands for the Host header (issue 10: PATH_INFO was ``http://host/x``)."""
    server = await start_server(validated(environ_app))
    response, _, writer = await request(
        server.port,
        b"GET http://example.com:8080/x%20y?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
    )
    writer.close()
    assert response.status == 200
    env = fields(response)
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/x y", "q=1")
    assert env["HTTP_HOST"] == "example.com:8080"


async def test_fragment_is_dropped_from_the_target(start_server: StartServer) -> None:
    server = await start_server(validated(environ_app))
    response, _, writer = await request(server.port, b"GET /x?a=1#frag HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.close()
    env = fields(response)
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/x", "a=1")


async def test_asterisk_form_only_for_options(start_server: StartServer) -> None:
    """RFC 9112 section 3.2.4: ``OPTIONS *`` asks about the server; ``*`` is no target for
    any other method (400).  PATH_INFO is empty for it (``*`` is no path, and PEP 3333's
    PATH_INFO starts with "/" or is empty, as wsgiref's validator checks)."""
    server = await start_server(validated(environ_app))
    response, _, writer = await request(server.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.close()
    assert response.status == 200
    env = fields(response)
    assert (env["REQUEST_METHOD"], env["PATH_INFO"]) == ("OPTIONS", "")
    response, reader, writer = await request(server.port, b"GET * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 400
    assert await at_eof(reader)
    writer.close()


@pytest.mark.parametrize("target", [b"/demo?", b"/demo?x=1", b"/demo"])
async def test_hixie75_location_keeps_the_query_as_sent(
    start_server: StartServer, target: bytes
) -> None:
    """A hixie-75 client compares the WebSocket-Location it gets with the URL it opened:
    an empty query is still a query (``/demo?`` is not ``/demo``, RFC 3986 section 6.2.3)."""

    async def handler(ws: Any) -> None:
        await ws.send("hi")

    server = await start_server(validated(ws_app(handler)))
    reader, writer = await open_tcp(server.port)
    writer.write(
        b"GET %s HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
        b"Host: example.com\r\nOrigin: http://example.com\r\n\r\n" % target
    )
    response = await read_response(reader, head=True)
    assert response.status == 101
    assert response.header("WebSocket-Location") == "ws://example.com/" + target[1:].decode()
    assert await asyncio.wait_for(reader.readuntil(b"\xff"), TIMEOUT) == b"\x00hi\xff"
    writer.close()


async def test_connect_is_refused(start_server: StartServer) -> None:
    """CONNECT asks for a tunnel; this server is no proxy: 405, the app is never called,
    the connection closed."""
    called = threading.Event()

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        called.set()
        return environ_app(environ, start_response)

    server = await start_server(validated(app))
    response, reader, writer = await request(
        server.port,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01",
    )
    assert response.status == 405
    assert await at_eof(reader)
    writer.close()
    assert not called.is_set()


@pytest.mark.parametrize(
    "target",
    [b"example.com:80", b"http://user:pw@example.com/", b"ftp://example.com/x", b"http:///x"],
)
async def test_other_target_forms_get_400(start_server: StartServer, target: bytes) -> None:
    server = await start_server(validated(environ_app))
    response, reader, writer = await request(
        server.port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target
    )
    assert response.status == 400
    assert await at_eof(reader)
    writer.close()


async def test_absolute_form_reaches_the_route_table(start_server: StartServer) -> None:
    async def chat(ws: Any) -> None:
        await ws.send("hi")

    server = await start_server(Routes({"/chat": chat}))
    response, _, writer = await request(
        server.port, b"GET http://example.com/chat HTTP/1.1\r\nHost: example.com\r\n\r\n"
    )
    writer.close()
    assert response.status == 426  # the route /chat, not "http://example.com/chat"


async def test_absolute_form_authority_is_the_host_of_the_origin_check(
    start_server: StartServer,
) -> None:
    async def chat(ws: Any) -> None:
        await ws.send("hi")

    server = await start_server(Routes({"/chat": chat}))
    response, _, writer = await request(
        server.port,
        b"GET http://app.example/chat HTTP/1.1\r\nHost: other.example\r\n"
        b"Origin: http://app.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        head=True,
    )
    writer.close()
    assert response.status == 101


@pytest.mark.parametrize(
    "chunk_line", [b"3;ext=" + b"e" * 65536, b"0" * 65536 + b"3"], ids=["extension", "zeros"]
)
async def test_endless_chunk_line_is_refused(start_server: StartServer, chunk_line: bytes) -> None:
    server = await start_server(validated(environ_app))
    reader, writer = await open_tcp(server.port)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        for start in range(0, len(chunk_line), 4096):
            writer.write(chunk_line[start : start + 4096])
            await writer.drain()
        writer.write(b"\r\nabc\r\n0\r\n\r\n")
    response = await read_response(reader)
    assert 400 <= response.status < 500
    writer.close()


async def test_chunk_extensions_within_the_limit_are_served(start_server: StartServer) -> None:
    """The control: extensions and leading zeros that stay within max_header_size per chunk
    line pass, however many chunks carry them."""
    server = await start_server(validated(environ_app), max_header_size=1024)
    line = b"%s3;ext=%s\r\nabc\r\n" % (b"0" * 400, b"e" * 500)
    response, _, writer = await request(
        server.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + line * 20
        + b"0;last=1\r\nX-Trailer: t\r\n\r\n",
    )
    writer.close()
    assert response.status == 200
    assert fields(response)["body"] == "abc" * 20


async def test_trailer_section_over_the_limit_gets_431(start_server: StartServer) -> None:
    """Trailer fields are fields: their section is held to max_header_size too."""
    server = await start_server(validated(environ_app), max_header_size=1024)
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 100) for i in range(20))
    response, reader, writer = await request(
        server.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n" + trailers + b"\r\n",
    )
    assert (response.status, response.body) == (431, b"trailer section too large\n")
    assert await at_eof(reader)
    writer.close()


async def test_too_long_target_gets_414(start_server: StartServer) -> None:
    server = await start_server(validated(environ_app), max_header_size=4096)
    response, reader, writer = await request(
        server.port, b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % (b"a" * 8000)
    )
    assert response.status == 414
    assert await at_eof(reader)
    writer.close()


async def test_max_headers(start_server: StartServer) -> None:
    """Issue 10: 2,700 header fields were accepted.  ``max_headers`` (100 by default, as
    gunicorn) fields are served; one more is a 431."""
    server = await start_server(validated(environ_app))
    for count, status in ((100, 200), (101, 431), (2_700, 431)):
        filler = b"".join(b"X-F%d: v\r\n" % i for i in range(count - 1))
        response, reader, writer = await request(
            server.port, b"GET / HTTP/1.1\r\nHost: x\r\n%s\r\n" % filler
        )
        assert response.status == status, count
        if status == 431:
            assert response.body == b"more than 100 header fields\n"
            assert await at_eof(reader)
        writer.close()
    small = await start_server(validated(environ_app), max_headers=3)
    response, _, writer = await request(
        small.port, b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
    )
    writer.close()
    assert response.status == 431


async def test_underscore_twins_of_content_headers_are_never_used(
    start_server: StartServer,
) -> None:
    """Issue 10: ``Content_Length`` and ``Content_Type`` overrode CONTENT_LENGTH and
    CONTENT_TYPE, so a request framed one way was seen by the app another (smuggling)."""
    server = await start_server(validated(environ_app))
    response, _, writer = await request(
        server.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n"
        b"Content_Length: 1\r\nContent_Type: application/evil\r\n\r\nhello",
    )
    writer.close()
    env = fields(response)
    assert (env["CONTENT_LENGTH"], env["CONTENT_TYPE"], env["body"]) == ("5", "text/plain", "hello")
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env
    # Alone, an underscore twin is no Content-Type either.
    response, _, writer = await request(
        server.port, b"GET / HTTP/1.1\r\nHost: x\r\nContent_Type: application/evil\r\n\r\n"
    )
    writer.close()
    assert "CONTENT_TYPE" not in fields(response)


async def test_expect_100_continue_refused_up_front_when_the_body_would_be(
    start_server: StartServer,
) -> None:
    """Issue 10: a body over ``max_body_size`` got ``100 Continue`` (the client sent it all
    to be refused after).  The refusal comes instead of the 100, before any body byte."""
    server = await start_server(validated(environ_app), max_body_size=1000)
    response, reader, writer = await request(
        server.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    )
    assert response.status == 413  # the first thing on the wire: no 100 before it
    assert await at_eof(reader)
    writer.close()
    # An expectation other than 100-continue is refused (RFC 9110 section 10.1.1).
    response, reader, writer = await request(
        server.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 200-maybe\r\n\r\nhello",
    )
    assert response.status == 417
    assert await at_eof(reader)
    writer.close()


@pytest.mark.both_loops
async def test_expect_is_ignored_on_http10(start_server: StartServer) -> None:
    """RFC 9110 section 10.1.1: a server MUST ignore 100-continue in an HTTP/1.0 request; a
    1.0 client knows no 1xx responses and would read ``100 Continue`` as the answer."""
    server = await start_server(validated(environ_app))
    reader, writer = await open_tcp(server.port)
    writer.write(b"POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    with pytest.raises(TimeoutError):  # nothing is sent before the body
        await asyncio.wait_for(reader.read(1), 0.3)
    writer.write(b"hello")
    response = await read_response(reader)
    assert (response.status, fields(response)["body"]) == (200, "hello")
    writer.close()


async def test_100_continue_only_once_the_request_is_the_current_one(
    start_server: StartServer,
) -> None:
    """A pipelined request that expects 100-continue behind a slow one gets its 100 after
    the first response, never in the middle of it."""
    server = await start_server(echo_app)
    reader, writer = await open_tcp(server.port)
    writer.write(
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    first = await read_response(reader)
    assert first.body.startswith(b"GET /slow?")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"data")
    assert (await read_response(reader)).body.endswith(b"body=data")
    writer.close()


# -- what a parser must refuse (RFC 9112) ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        # Both framings: the classic request smuggling (RFC 9112 section 6.3).
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\nabc",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",  # white space before the colon
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
        # Content-Type is a single value: a proxy reading the first, an app the last.
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Content-Type: multipart/form-data; boundary=z\r\nContent-Length: 1\r\n\r\nz",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello: no method at all
    ],
)
async def test_ambiguous_heads_get_400(start_server: StartServer, raw: bytes) -> None:
    server = await start_server(validated(environ_app))
    response, reader, writer = await request(server.port, raw)
    assert response.status == 400
    assert await at_eof(reader)
    writer.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    ],
)
async def test_http11_request_needs_exactly_one_host(start_server: StartServer, raw: bytes) -> None:
    server = await start_server(validated(environ_app))
    response, _, writer = await request(server.port, raw)
    writer.close()
    assert response.status == 400


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        # RFC 9110 section 15.6.2: a method the server does not know (llhttp knows a list).
        (b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501, b"this request method is not"),
        (b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 501, b"this request method is not"),
        # RFC 9110 section 15.6.6: a version llhttp reads but this server does not speak.
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, b"HTTP/2.0 is not supported"),
        (b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505, b"HTTP/0.9 is not supported"),
    ],
)
async def test_unknown_methods_and_versions_say_so(
    start_server: StartServer, raw: bytes, status: int, reason: bytes
) -> None:
    server = await start_server(validated(environ_app))
    response, reader, writer = await request(server.port, raw)
    assert response.status == status and response.body.startswith(reason)
    assert response.header("Connection") == "close"
    assert await at_eof(reader)
    writer.close()


@pytest.mark.parametrize("raw", [b"BREW /pot HTTP/1.1\r\n", b"GETX / HTTP/1.1\r\n"])
async def test_an_unknown_method_is_501_however_the_bytes_are_cut(
    start_server: StartServer, raw: bytes
) -> None:
    """llhttp refuses at the first byte no method it knows has there ("BR", "GETX"), before
    the method's end: the answer must not depend on where the reads were cut."""
    server = await start_server(validated(environ_app))
    for cut in (1, 2, 3, len(raw)):
        reader, writer = await open_tcp(server.port)
        writer.write(raw[:cut])
        await writer.drain()
        await asyncio.sleep(0.05)
        with contextlib.suppress(ConnectionError):
            writer.write(raw[cut:] + b"Host: x\r\n\r\n")
        response = await read_response(reader)
        assert response.status == 501, (cut, response)
        writer.close()


async def test_trailer_fields_are_not_merged_into_the_head(start_server: StartServer) -> None:
    server = await start_server(validated(environ_app))
    response, _, writer = await request(
        server.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-T: smuggled\r\nContent-Type: application/evil\r\n\r\n",
    )
    writer.close()
    env = fields(response)
    assert env["body"] == "abc"
    assert "HTTP_X_T" not in env and "CONTENT_TYPE" not in env


async def test_unknown_transfer_coding_gets_501(start_server: StartServer) -> None:
    server = await start_server(validated(environ_app))
    response, _, writer = await request(
        server.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
    )
    writer.close()
    assert response.status == 501
