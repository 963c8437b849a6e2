"""TLS run by the server itself (stargate.server.tls): a connection counts against
``max_connections`` from its accept, before its handshake; one that fails or is given up no
longer counts; plain HTTP on the TLS port is told so; nothing a client sends around the
handshake is lost."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stargate.server import Server
from stargate.server.metrics import exposition
from stargate.server.tls import PLAIN_HTTP_REASON, TlsHandshake
from stargate.server.wsgi import StartResponse
from tests.machine import make_certificate

from .support import TIMEOUT, StartServer, at_eof, eventually, open_tcp, read_response, request

pytestmark = [pytest.mark.asyncio, pytest.mark.both_loops]

GET = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["wsgi.url_scheme"].encode()]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    cert, key = make_certificate(tmp_path_factory.mktemp("tls"))
    yield cert, key


@pytest.fixture
def contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The server's context and a client's that trusts it."""
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    return server_context, ssl.create_default_context(cafile=str(cert))


async def served(server: Server, client_context: ssl.SSLContext) -> bool:
    """Whether a TLS client gets its page."""
    try:
        response, _, writer = await request(server.port, GET, ssl_context=client_context)
    except (ConnectionError, ssl.SSLError):
        return False
    writer.close()
    return (response.status, response.body) == (200, b"https")


def handshakes_gauge(server: Server) -> float:
    """``stargate_tls_handshakes`` as a scrape of the metrics shows it."""
    for family in text_string_to_metric_families(exposition(server.state).decode()):
        if family.name == "stargate_tls_handshakes":
            return float(family.samples[0].value)
    raise AssertionError("no stargate_tls_handshakes in the metrics")


async def test_handshakes_in_progress_count_against_max_connections(
    start_server: StartServer, contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = contexts
    server = await start_server(app, ssl_context=server_context, max_connections=2)
    stalled = [await open_tcp(server.port) for _ in range(2)]  # no ClientHello, ever
    await eventually(lambda: len(server.state.tls_handshakes) == 2)
    assert handshakes_gauge(server) == 2
    assert not await served(server, client_context)  # refused before its handshake
    assert server.state.metrics.refused_connections == 1
    # One stalled client leaves: its place is free at once, not at header_timeout.
    stalled[0][1].close()
    await eventually(lambda: len(server.state.tls_handshakes) == 1)
    assert await served(server, client_context)
    stalled[1][1].close()
    await eventually(lambda: not server.state.tls_handshakes)
    assert handshakes_gauge(server) == 0


@pytest.mark.parametrize(
    "first_bytes",
    [
        b"\x16\x03\x01\x00\x05hello",  # a handshake record whose message is not a ClientHello
        b"\x00\x01\x02\x03" * 8,  # not TLS at all
        b"\x16\x03\x01\x02\x00\x01",  # half a ClientHello, then the client leaves
    ],
)
async def test_a_failed_handshake_frees_its_place(
    start_server: StartServer,
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    first_bytes: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_context, client_context = contexts
    server = await start_server(app, ssl_context=server_context, max_connections=1)
    reader, writer = await open_tcp(server.port)
    writer.write(first_bytes)
    if first_bytes.startswith(b"\x16\x03\x01\x02"):
        await eventually(lambda: len(server.state.tls_handshakes) == 1)
        writer.close()
    else:
        assert await at_eof(reader)  # the server gives up on it
        writer.close()
    await eventually(lambda: not server.state.tls_handshakes)
    assert await served(server, client_context)
    assert server.state.metrics.refused_connections == 0
    assert "Traceback" not in caplog.text  # a client's doing, not the server's


@pytest.mark.parametrize(
    "request_line", [b"GET / HTTP/1.1", b"\r\nGET / HTTP/1.1", b"get / HTTP/1.1"]
)
async def test_plain_http_on_the_tls_port_is_told_so(
    start_server: StartServer,
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    request_line: bytes,
) -> None:
    """As nginx does: a 400 in plain text that says why, then the connection's end (an
    empty line before the request line too, which RFC 9112 section 2.2 lets come, and a
    method in lower case: a wrong method, but no TLS record either)."""
    server_context, client_context = contexts
    server = await start_server(app, ssl_context=server_context)
    reader, writer = await open_tcp(server.port)
    writer.write(request_line + b"\r\nHost: localhost\r\n\r\n")
    response = await read_response(reader)
    assert response.status == 400
    assert response.header("Connection") == "close"
    assert PLAIN_HTTP_REASON.encode() in response.body
    assert await at_eof(reader)
    writer.close()
    await eventually(lambda: not server.state.tls_handshakes)
    assert server.state.metrics.http_responses[400] == 1
    assert await served(server, client_context)


async def test_shutdown_closes_handshakes_in_progress_at_once(
    start_server: StartServer, contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, _ = contexts
    server = await start_server(app, ssl_context=server_context, header_timeout=30)
    reader, writer = await open_tcp(server.port)
    writer.write(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, no more
    await eventually(lambda: len(server.state.tls_handshakes) == 1)
    started = time.monotonic()
    await server.shutdown(timeout=10.0)
    assert time.monotonic() - started < 2.0  # neither header_timeout nor the shutdown's
    assert await at_eof(reader)
    assert not server.state.tls_handshakes
    writer.close()


def _hello_and_request_in_one_write(
    port: int, client_context: ssl.SSLContext, *, close: bool = False, end: str = ""
) -> bytes:
    """A TLS client (a memory BIO over a blocking socket) that sends its last handshake
    message and its request in one write (and its close_notify too, with ``close``), so
    that the server's TLS layer decrypts the request in the same read that ends the
    handshake; returns what it decrypts back.  ``end="corrupt"`` spoils the request's
    record instead, ``end="reset"`` resets the connection right after the write: the
    connection then fails in the read that ends the handshake."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        tls.write(GET)
        if close:
            with contextlib.suppress(ssl.SSLWantReadError):  # the server's is not in yet
                tls.unwrap()
        flight = bytearray(outgoing.read())
        if end == "corrupt":
            flight[-1] ^= 0xFF  # the request's record fails its authentication
        sock.sendall(flight)  # the client's Finished and the request together
        if end == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        if end:
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(65536):
                    pass
            return b""
        received = b""
        while True:
            try:
                data = tls.read(65536)
                if not data:  # the server's close_notify
                    return received
                received += data
            except ssl.SSLWantReadError:
                data = sock.recv(65536)
                if not data:
                    return received
                incoming.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return received


async def test_a_request_sent_with_the_last_handshake_message_is_served(
    start_server: StartServer, contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = contexts
    server = await start_server(app, ssl_context=server_context)
    received = await asyncio.to_thread(_hello_and_request_in_one_write, server.port, client_context)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.endswith(b"\r\n\r\nhttps")


async def test_a_request_and_close_sent_with_the_last_handshake_message(
    start_server: StartServer, contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """The connection's end, kept with the request until the channel starts, reaches it
    after the request: the server ends the connection, counts nothing left open, and goes
    on serving (TLS has no half-close: the response may or may not make it out)."""
    server_context, client_context = contexts
    server = await start_server(app, ssl_context=server_context)
    received = await asyncio.to_thread(
        _hello_and_request_in_one_write, server.port, client_context, close=True
    )
    assert not received or received.startswith(b"HTTP/1.1 200 ")
    await eventually(lambda: not server.state.channels and not server.state.tls_handshakes)
    assert await served(server, client_context)


@pytest.mark.parametrize("end", ["corrupt", "reset"])
async def test_a_connection_that_fails_as_its_handshake_ends_leaves_nothing_counted(
    start_server: StartServer, contexts: tuple[ssl.SSLContext, ssl.SSLContext], end: str
) -> None:
    """On asyncio's loop the failure comes in the read that ends the handshake, and the
    TLS layer tells of it after the channel took over: the channel hears it, and its place
    is free; else every such client kept one for good."""
    server_context, client_context = contexts
    server = await start_server(app, ssl_context=server_context, max_connections=2)
    for _ in range(3):
        await asyncio.to_thread(
            _hello_and_request_in_one_write, server.port, client_context, end=end
        )
    await eventually(lambda: not server.state.channels and not server.state.tls_handshakes)
    assert await served(server, client_context)
    assert server.state.metrics.refused_connections == 0


async def test_a_handshake_given_up_leaves_no_cycle(
    start_server: StartServer,
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    cyclic_garbage: Callable[[Callable[[object], bool]], list[str]],
) -> None:
    """A handshake cut at its deadline is freed by reference counting, its transport and
    the TLS layer's buffers with it: its cancelled task's traceback held it in a cycle."""
    server_context, _ = contexts
    server = await start_server(app, ssl_context=server_context, header_timeout=0.3)
    reader, writer = await open_tcp(server.port)
    writer.write(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, no more
    assert await at_eof(reader)
    writer.close()
    await eventually(lambda: not server.state.tls_handshakes)
    await asyncio.sleep(0.1)  # the cancelled task's last step
    assert cyclic_garbage(lambda o: isinstance(o, TlsHandshake)) == []
