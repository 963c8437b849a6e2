"""The server's lifetime (stargate.server.app): TLS on the shared port, connection limits,
graceful shutdown in process and on SIGTERM in a real ``stargate`` process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect, unix_connect

from stargate import ConnectionClosed
from stargate.handshake import ALL_VERSIONS, RFC_VERSIONS, OriginPolicy
from stargate.protocol import ProtocolVersion
from stargate.server import (
    Routes,
    Server,
    ServerConfig,
    SyncWebSocket,
    WebSocket,
    WebSocketOptions,
)
from stargate.server import state as state_module
from stargate.server.app import new_event_loop
from stargate.server.state import REFUSAL_LOG_INTERVAL
from stargate.server.wsgi import StartResponse
from tests.machine import make_certificate, require_module

from .support import (
    TIMEOUT,
    StartServer,
    at_eof,
    eventually,
    get,
    open_tcp,
    raw_connect,
    read_response,
    read_to_eof,
    request,
    validated,
)

pytestmark = pytest.mark.asyncio


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def sync_echo(ws: SyncWebSocket) -> None:
    for message in ws:
        ws.send(message)


def make_app(slow: threading.Event | None = None, entered: threading.Event | None = None) -> Any:
    """Upgrades to an echo handler (``/sync``: a ``def`` one), answers the URL scheme
    otherwise (``/slow`` sets ``entered`` and waits for ``slow``); behind wsgiref's validator."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        upgrade = environ.get("stargate.websocket")
        if upgrade is not None:
            upgrade.accept(sync_echo if environ["PATH_INFO"] == "/sync" else echo)
            return []
        if environ["PATH_INFO"] == "/slow" and slow is not None:
            if entered is not None:
                entered.set()
            slow.wait(TIMEOUT)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.url_scheme"].encode()]

    return validated(app)


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate for localhost and 127.0.0.1, made with the openssl CLI."""
    cert, key = make_certificate(tmp_path_factory.mktemp("tls"))
    yield cert, key


async def test_https_and_wss_on_one_port(
    start_server: StartServer, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    server = await start_server(make_app(), ssl_context=server_context)

    response, reader, writer = await request(
        server.port, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", ssl_context=client_context
    )
    assert (response.status, response.body) == (200, b"https")
    writer.write(b"GET /again HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    writer.close()

    for path in ("/async", "/sync"):
        async with connect(
            f"wss://127.0.0.1:{server.port}{path}", ssl=client_context, server_hostname="localhost"
        ) as client:
            await client.send("secret")
            assert await client.recv() == "secret"
            await client.send(b"\x01\x02")
            assert await client.recv() == b"\x01\x02"
            await client.close(4000, "done")
        assert client.close_code == 4000

    # Plain text on the TLS port is not served: the client is told why (test_tls.py).
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader)).status == 400
    assert await at_eof(reader)
    writer.close()


@pytest.mark.both_loops
async def test_a_tls_handshake_that_never_ends_is_cut_at_header_timeout(
    start_server: StartServer, certificate: tuple[Path, Path]
) -> None:
    """A connection that never finishes its TLS handshake (no ClientHello, or half of
    one) is closed at ``header_timeout``, as a head that never ends is, not at the loop's
    default of 60 s; a real client is served meanwhile."""
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    server = await start_server(make_app(), ssl_context=server_context, header_timeout=0.5)
    started = time.monotonic()
    stalled = [await open_tcp(server.port) for _ in range(2)]  # no ClientHello, ever
    stalled[1][1].write(b"\x16\x03\x01\x02\x00\x01")  # the start of a hello, no more
    response, _, writer = await request(
        server.port,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ssl_context=client_context,
    )
    assert (response.status, response.body) == (200, b"https")
    writer.close()
    for reader, writer in stalled:
        assert await at_eof(reader, 3.0)
        writer.close()
    assert time.monotonic() - started < 2.5  # header_timeout, not 60 s


@pytest.mark.both_loops
async def test_tls_with_a_header_timeout_of_0_gives_the_loop_no_invalid_timeout(
    start_server: StartServer, certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """``header_timeout=0`` is allowed (and serves nothing); the loops refuse it as a TLS
    handshake timeout, uvloop at each accept, leaving the socket open: it is not passed."""
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server = await start_server(make_app(), ssl_context=server_context, header_timeout=0)
    with caplog.at_level(logging.ERROR):
        _, writer = await open_tcp(server.port)
        writer.write(b"\x16\x03\x01\x02\x00\x01")
        await asyncio.sleep(0.2)
        writer.close()
    assert "ssl_handshake_timeout" not in caplog.text  # tracebacks included


# -- limits ----------------------------------------------------------------------------------


async def test_max_connections(start_server: StartServer) -> None:
    server = await start_server(make_app(), max_connections=2)
    first = await connect(f"ws://127.0.0.1:{server.port}/")
    _, second_writer = await open_tcp(server.port)
    await eventually(lambda: server.http_connections + len(server.websockets) == 2)
    reader, writer = await open_tcp(server.port)
    assert await at_eof(reader, 1.0)  # refused at once
    writer.close()
    second_writer.close()
    await eventually(lambda: server.http_connections + len(server.websockets) == 1)
    assert (await get(server.port, "/")).body == b"http"
    await first.close()
    assert server.state.metrics.refused_connections == 1


async def refused(port: int, count: int) -> None:
    """Open ``count`` connections one after the other; each must be closed at once."""
    for _ in range(count):
        reader, writer = await open_tcp(port)
        assert await at_eof(reader, 1.0)
        writer.close()


async def test_refusals_at_max_connections_log_a_line_per_interval(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Every refused connection is counted, but a client opening connections in a loop
    writes one log line per interval, not one per connection."""
    server = await start_server(make_app(), max_connections=1)
    _, holder = await open_tcp(server.port)
    await eventually(lambda: server.http_connections == 1)
    with caplog.at_level(logging.WARNING, logger="stargate.server"):
        await refused(server.port, 20)
    lines = [r.getMessage() for r in caplog.records if "max_connections" in r.getMessage()]
    assert lines == ["max_connections (1) reached: refused 1 connection(s)"]
    assert server.state.metrics.refused_connections == 20
    server.state._refusal_logged_at -= REFUSAL_LOG_INTERVAL  # the interval has passed
    with caplog.at_level(logging.WARNING, logger="stargate.server"):
        await refused(server.port, 1)
    lines = [r.getMessage() for r in caplog.records if "max_connections" in r.getMessage()]
    assert lines[-1] == "max_connections (1) reached: refused 20 connection(s)"
    holder.close()


async def test_the_refusals_of_an_interval_are_told_at_its_end(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of refusals followed by quiet: the burst's count is logged when its
    interval ends, not only if another refusal comes after it (it said "refused 1")."""
    monkeypatch.setattr(state_module, "REFUSAL_LOG_INTERVAL", 0.3)
    server = await start_server(make_app(), max_connections=1)
    _, holder = await open_tcp(server.port)
    await eventually(lambda: server.http_connections == 1)
    with caplog.at_level(logging.WARNING, logger="stargate.server"):
        await refused(server.port, 5)
        await asyncio.sleep(0.6)
    lines = [r.getMessage() for r in caplog.records if "max_connections" in r.getMessage()]
    assert lines == [
        "max_connections (1) reached: refused 1 connection(s)",
        "max_connections (1) reached: refused 4 connection(s)",
    ]
    holder.close()


async def test_refusals_still_untold_are_logged_by_the_shutdown(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A deploy right after a burst: the shutdown writes the count the interval's timer
    would have, which never runs once the loop is gone."""
    server = await start_server(make_app(), max_connections=1)
    _, holder = await open_tcp(server.port)
    await eventually(lambda: server.http_connections == 1)
    with caplog.at_level(logging.WARNING, logger="stargate.server"):
        await refused(server.port, 3)
        holder.close()
        await server.shutdown(1.0)
    lines = [r.getMessage() for r in caplog.records if "max_connections" in r.getMessage()]
    assert lines == [
        "max_connections (1) reached: refused 1 connection(s)",
        "max_connections (1) reached: refused 2 connection(s)",
    ]


# -- shutdown in process ----------------------------------------------------------------------


async def test_shutdown_closes_websockets_with_1001_and_answers_in_flight_http(
    start_server: StartServer,
) -> None:
    slow, entered = threading.Event(), threading.Event()
    server = await start_server(make_app(slow, entered))
    clients = [
        await connect(f"ws://127.0.0.1:{server.port}{path}") for path in ("/a", "/sync", "/b")
    ]
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    idle_reader, idle_writer = await open_tcp(server.port)
    # The request must be in the app before shutdown begins (else it is an idle connection).
    await eventually(lambda: entered.is_set() and server.http_connections == 2)
    started = time.monotonic()
    shutdown = asyncio.create_task(server.shutdown(timeout=3.0))
    for client in clients:
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        assert client.close_code == 1001
        assert client.close_reason == "server shutting down"
    assert await at_eof(idle_reader, 1.0)  # an idle keep-alive connection is closed at once
    slow.set()  # the request in flight is still answered, then its connection closes
    response = await read_response(reader)
    assert (response.status, response.body) == (200, b"http")
    # It says the connection ends after it (RFC 9112 section 9.6), as it does.
    assert response.header("Connection") == "close"
    assert await at_eof(reader, 1.0)
    await asyncio.wait_for(shutdown, TIMEOUT)
    assert time.monotonic() - started < 2.0
    assert not server.websockets and not server.running_handlers
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()
    idle_writer.close()


async def test_an_upgrade_decided_during_shutdown_is_closed_with_1001(
    start_server: StartServer,
) -> None:
    """An upgrade whose decision was still in the app's thread when shutdown began: the
    shutdown's close loop has run, so the new WebSocket is closed with 1001 as it opens,
    and the shutdown waits for its close handshake (it used to be aborted, 1006)."""
    decide, entered = threading.Event(), threading.Event()

    async def handler(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        entered.set()
        decide.wait(TIMEOUT)
        environ["stargate.websocket"].accept(handler)
        return []

    server = await start_server(app, origin_policy=OriginPolicy.any())

    async def open_it() -> Any:
        return await connect(f"ws://127.0.0.1:{server.port}/")

    opening = asyncio.create_task(open_it())
    await eventually(entered.is_set)
    shutdown = asyncio.create_task(server.shutdown(timeout=5.0))
    await asyncio.sleep(0.1)  # the close loop has run, the channel is still deciding
    decide.set()
    client = await asyncio.wait_for(opening, TIMEOUT)
    await asyncio.wait_for(client.wait_closed(), TIMEOUT)
    assert (client.close_code, client.close_reason) == (1001, "server shutting down")
    await asyncio.wait_for(shutdown, TIMEOUT)


async def test_an_upload_under_way_at_shutdown_is_read_and_answered(
    start_server: StartServer,
) -> None:
    """A request whose body is still arriving when shutdown begins is a request in flight:
    read to its end and answered (it used to be cut as an idle connection)."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"read %d" % len(body)]

    server = await start_server(validated(app))
    reader, writer = await open_tcp(server.port)
    writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + b"a" * 7000)
    await writer.drain()
    await eventually(lambda: server.http_connections == 1)
    await asyncio.sleep(0.1)  # the head and part of the body are read
    shutdown = asyncio.create_task(server.shutdown(timeout=5.0))
    for _ in range(13):
        await asyncio.sleep(0.05)
        writer.write(b"a" * 1000)
    response = await read_response(reader)
    assert (response.status, response.body) == (200, b"read 20000")
    assert response.header("Connection") == "close"
    assert await at_eof(reader, 1.0)
    await asyncio.wait_for(shutdown, TIMEOUT)
    writer.close()


async def test_a_shutdown_past_a_silent_client_logs_no_asyncio_error(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that never answers the close makes the shutdown give up its wait for the
    closes: that wait's cancellation is retrieved, not left for asyncio to report as an
    ERROR ("exception was never retrieved") when the future is collected."""
    server = await start_server(make_app())
    client = await raw_connect(server.port, "/a")  # reads nothing, answers nothing
    await eventually(lambda: len(server.websockets) == 1)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        await asyncio.wait_for(server.shutdown(timeout=0.3), TIMEOUT)
        gc.collect()
        await asyncio.sleep(0)
    assert not [r for r in caplog.records if r.name == "asyncio"]
    client.abort()


async def test_server_as_async_context_manager() -> None:
    async with Server(make_app(), ServerConfig(port=0)) as server:
        assert (await get(server.port, "/")).body == b"http"
    assert server.shutting_down


# -- listening sockets handed over ------------------------------------------------------------


def tcp_listener() -> socket.socket:
    """A bound TCP socket on an ephemeral port of 127.0.0.1, as a supervisor would pass."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def unix_listener() -> tuple[socket.socket, str]:
    """A bound Unix socket in a fresh directory (short: a socket path has ~100 bytes)."""
    path = os.path.join(tempfile.mkdtemp(prefix="sg-", dir="/tmp"), "s.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    return sock, path


def environ_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """Upgrades to the echo handler; answers what the environ says of server and peer."""
    upgrade = environ.get("stargate.websocket")
    if upgrade is not None:
        upgrade.accept(echo)
        return []
    keys = ("SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "HTTP_HOST", "wsgi.multiprocess")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({key: environ[key] for key in keys}).encode()]


async def test_an_ipv6_address_is_logged_in_brackets(caplog: pytest.LogCaptureFixture) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.bind(("::1", 0))
    except OSError:
        sock.close()
        pytest.skip("::1 cannot be bound here")
    server = Server(validated(environ_app), ServerConfig(port=0))
    with caplog.at_level(logging.INFO, logger="stargate.server"):
        await server.start([sock])
    try:
        port = sock.getsockname()[1]
        assert f"stargate serving on http://[::1]:{port}" in caplog.messages
    finally:
        await server.shutdown(timeout=2.0)


async def unix_get(path: str, target: str = "/") -> dict[str, Any]:
    """One GET over a Unix socket, its JSON body."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), TIMEOUT)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".encode())
    response = await read_response(reader)
    writer.close()
    assert response.status == 200, response
    body: dict[str, Any] = json.loads(response.body)
    return body


async def test_one_server_on_several_sockets_tcp_and_unix(caplog: pytest.LogCaptureFixture) -> None:
    """Given listening sockets (a supervisor's, gunicorn's binds), one server serves HTTP and
    WebSocket on every one of them, logs each address, and reports the first as its port."""
    first, second = tcp_listener(), tcp_listener()
    unix, path = unix_listener()
    server = Server(validated(environ_app), ServerConfig(port=0))
    with caplog.at_level(logging.INFO, logger="stargate.server"):
        await server.start([first, second, unix])
    try:
        ports = [first.getsockname()[1], second.getsockname()[1]]
        assert (server.host, server.port) == ("127.0.0.1", ports[0])
        logged = [r.getMessage() for r in caplog.records if r.name == "stargate.server"]
        for port in ports:
            assert f"stargate serving on http://127.0.0.1:{port}" in logged
        assert f"stargate serving on http://unix:{path!r}" in logged
        for port in ports:
            seen = json.loads((await get(port, "/")).body)
            assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("127.0.0.1", str(ports[0]))
            async with connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT) as ws:
                await ws.send(f"over {port}")
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == f"over {port}"
        seen = await unix_get(path)
        assert (seen["REMOTE_ADDR"], seen["HTTP_HOST"]) == ("", "app")  # a Unix peer has no address
        async with unix_connect(path, "ws://app/", open_timeout=TIMEOUT) as ws:
            await ws.send("over unix")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "over unix"
    finally:
        await server.shutdown(timeout=2.0)
    assert os.path.exists(path)  # the socket file is its owner's to remove, not the server's
    os.unlink(path)


async def test_a_server_on_a_unix_socket_alone_names_itself_localhost() -> None:
    """A Unix socket has no host and port, yet PEP 3333 requires SERVER_NAME and SERVER_PORT:
    the server says ``localhost`` and ``0`` (the Host header tells the app more)."""
    unix, path = unix_listener()
    server = Server(validated(environ_app), ServerConfig(port=0))
    await server.start(unix)
    try:
        assert (server.host, server.port) == ("localhost", 0)
        seen = await unix_get(path)
        assert (seen["SERVER_NAME"], seen["SERVER_PORT"], seen["HTTP_HOST"]) == (
            "localhost",
            "0",
            "app",
        )
        async with unix_connect(path, "ws://app/", open_timeout=TIMEOUT) as ws:
            await ws.send(b"\x00\xff")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x00\xff"
    finally:
        await server.shutdown(timeout=2.0)
        os.unlink(path)


# -- what a server tells about itself ---------------------------------------------------------


async def test_a_server_reports_what_it_serves_and_its_policies() -> None:
    """Runners and apps read what a server serves (an app or a route table, never both),
    the protocol generations it speaks and its Origin policy, all from its settings."""
    routes = Routes({"/echo": echo})
    table = Server(routes)
    assert table.routes is routes and table.wsgi_app is None
    assert table.config == ServerConfig()
    assert set(table.versions) == set(ALL_VERSIONS)
    assert ProtocolVersion.HIXIE_76 in table.versions

    app = make_app()
    policy = OriginPolicy(allowed=("https://example.com",))
    modern = Server(app, ServerConfig(legacy_protocols=False, origin_policy=policy))
    assert modern.wsgi_app is app and modern.routes is None
    assert set(modern.versions) == set(RFC_VERSIONS)
    assert not any(version.is_hixie for version in modern.versions)
    assert modern.origin_policy is policy
    assert not modern.shutting_down and not modern.multiprocess


async def test_a_running_server_counts_its_connections_and_handlers() -> None:
    """While it runs: its loop is the caller's, WSGI requests run in its thread pool, an idle
    keep-alive connection counts as HTTP, a WebSocket handler as running until it returns;
    ``multiprocess`` (a supervisor's) reaches the environ."""
    release = asyncio.Event()
    threads: list[str] = []

    async def waiting(ws: WebSocket) -> None:
        await ws.send("waiting")
        await release.wait()

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        upgrade = environ.get("stargate.websocket")
        if upgrade is not None:
            upgrade.accept(waiting)
            return []
        threads.append(threading.current_thread().name)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(environ["wsgi.multiprocess"]).encode()]

    server = Server(validated(app), ServerConfig(port=0))
    server.multiprocess = True
    await server.start()
    try:
        assert server.loop is asyncio.get_running_loop()
        assert server.multiprocess
        assert (server.http_connections, server.running_handlers) == (0, 0)
        assert (await get(server.port, "/")).body == b"True"
        assert threads and threads[0].startswith("stargate-worker")
        assert server.executor._max_workers == server.config.threads

        _, idle = await open_tcp(server.port)
        await eventually(lambda: server.http_connections == 1)
        async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT) as ws:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "waiting"
            assert (server.running_handlers, len(server.websockets)) == (1, 1)
            release.set()
            await eventually(lambda: server.running_handlers == 0)
        idle.close()
        await eventually(lambda: server.http_connections == 0 and not server.websockets)
    finally:
        await server.shutdown(timeout=2.0)


async def test_shutdown_aborts_at_its_deadline_what_is_still_open(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A request the app is still working on and a WebSocket whose peer never answers the
    close handshake do not hold shutdown past its deadline: both connections are aborted.
    The request cut short has its access line then, said so (it had none: the line was
    written when the app returned, after the loop was gone), and only that one."""
    caplog.set_level(logging.INFO, "stargate.access")
    slow, entered = threading.Event(), threading.Event()
    # The close handshake's own timeout is far off: only shutdown's deadline ends it.
    server = await start_server(
        make_app(slow, entered), websocket=WebSocketOptions(close_timeout=30.0), access_log=True
    )
    silent = await raw_connect(server.port, "/a")
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await eventually(entered.is_set)
    shutdown = asyncio.create_task(server.shutdown(timeout=0.5))
    try:
        code, reason, _ = await silent.read_until_close()
        assert (code, reason) == (1001, "server shutting down")
        # Neither answers; both connections end at the deadline, the request unanswered.
        assert await read_to_eof(silent.reader) == b""
        assert await read_to_eof(reader) == b""
        await asyncio.wait_for(shutdown, TIMEOUT)
        assert not server.websockets and not server.http_connections
        slow.set()  # the app returns; the server closes its response unsent
        await asyncio.sleep(0.2)
        lines = [r.getMessage() for r in caplog.records if "/slow" in r.getMessage()]
        assert len(lines) == 1 and '"GET /slow HTTP/1.1" 503 0 ' in lines[0], lines
        assert lines[0].endswith("s cut-by-shutdown")
        assert server.state.metrics.http_responses[503] == 1
    finally:
        slow.set()
        writer.close()
        silent.abort()


async def test_a_second_shutdown_waits_for_the_first() -> None:
    """``shutdown`` called again (a second SIGTERM) returns once the first has finished."""
    server = Server(make_app(), ServerConfig(port=0))
    await server.start()
    async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT) as client:
        first = asyncio.create_task(server.shutdown(timeout=2.0))
        second = asyncio.create_task(server.shutdown(timeout=2.0))
        await asyncio.wait_for(second, TIMEOUT)
        assert first.done() and client.close_code == 1001
    await first


async def test_a_second_stop_signal_closes_everything_at_once(start_server: StartServer) -> None:
    """Ctrl+C again during a graceful shutdown (``stop_signalled``): the WebSocket whose peer
    never answers the close and the handler that never returns are not waited for."""
    forever = asyncio.Event()

    async def stubborn(ws: WebSocket) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.receive()
        await forever.wait()  # ignores its connection's end: only cancelling stops it

    server = await start_server(
        Routes({"/a": stubborn}),
        shutdown_timeout=60.0,
        websocket=WebSocketOptions(close_timeout=60.0),
    )
    silent = await raw_connect(server.port, "/a")
    await eventually(lambda: server.running_handlers == 1)
    shutdown = asyncio.create_task(server.shutdown())  # what the first signal starts
    code, reason, _ = await silent.read_until_close()
    assert (code, reason) == (1001, "server shutting down")
    await asyncio.sleep(0.3)
    assert not shutdown.done()  # graceful: it waits for the close's answer
    started = time.monotonic()
    server.stop_signalled()
    await asyncio.wait_for(shutdown, TIMEOUT)
    assert time.monotonic() - started < 2.0
    assert await read_to_eof(silent.reader) == b""
    assert server.running_handlers == 0 and not forever.is_set()


async def test_a_second_signal_stops_a_real_process_at_once(
    stargate_process: tuple[asyncio.subprocess.Process, int],
) -> None:
    """The same through the signals: a client that never answers the close handshake holds
    the first SIGTERM's shutdown (10 s by default); a SIGINT then ends the process at once."""
    process, port = stargate_process
    silent = await raw_connect(port, "/async")
    process.send_signal(signal.SIGTERM)
    code, _, _ = await silent.read_until_close()
    assert code == 1001
    await asyncio.sleep(0.3)
    assert process.returncode is None
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    assert time.monotonic() - started < 3.0
    assert await read_to_eof(silent.reader) == b""


# -- event loop -------------------------------------------------------------------------------


async def test_the_event_loop_is_uvloops_when_installed_else_asyncios(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``serve`` runs on uvloop with the ``uvloop`` extra, and on asyncio's loop without it."""
    uvloop = require_module("uvloop")
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    loop = new_event_loop()
    try:
        assert type(loop).__module__.startswith("asyncio")
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


# -- shutdown of a real process on SIGTERM ---------------------------------------------------

SIGNAL_APP = """
from stargate.server import Routes

async def echo(ws):
    async for message in ws:
        await ws.send(message)

def sync_echo(ws):
    for message in ws:
        ws.send(message)

routes = Routes({"/async": echo, "/sync": sync_echo})
"""


@pytest_asyncio.fixture
async def stargate_process(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    (tmp_path / "signal_app.py").write_text(SIGNAL_APP)
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYTHONUNBUFFERED="1")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stargate.cli", "serve", "signal_app:routes", "--port", "0",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    assert line.startswith(b"stargate serve: http://127.0.0.1:"), line
    port = int(line.rsplit(b":", 1)[1].strip(b"/\n"))
    yield process, port
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_sigterm_closes_websockets_with_1001_and_exits(
    stargate_process: tuple[asyncio.subprocess.Process, int],
) -> None:
    process, port = stargate_process
    clients = [
        await connect(f"ws://127.0.0.1:{port}{path}") for path in ("/async", "/sync", "/sync")
    ]
    for client in clients:
        await client.send("before")
        assert await client.recv() == "before"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    for client in clients:
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        assert client.close_code == 1001
    assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    assert time.monotonic() - started < 3.0


SERVE_SCRIPT = """
import socket
import sys
from stargate.server import Routes, ServerConfig, serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

def ready(server):
    print("ready", server.port, type(server.loop).__module__, flush=True)

async def leave(ws):
    sys.exit(4)

routes = Routes({"/echo": echo, "/leave": leave})
if sys.argv[1] == "ready":
    serve(routes, ServerConfig(port=0), ready=ready)
else:  # a socket bound by the caller (socket activation, a supervisor)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    print("bound", sock.getsockname()[1], "-", flush=True)
    serve(routes, sock=sock)
print("stopped", flush=True)
"""


@pytest.mark.parametrize(
    ("stop", "mode"),
    [(signal.SIGINT, "ready"), (signal.SIGTERM, "sock"), (signal.SIGHUP, "ready")],
)
async def test_serve_runs_until_a_signal_then_shuts_down_gracefully(
    stop: signal.Signals, mode: str
) -> None:
    """``stargate.server.serve`` (the programmatic runner), on its own port or a given socket:
    ``ready`` hears of the bound server, which runs on uvloop; Ctrl-C, SIGTERM or SIGHUP (a
    closed terminal) closes WebSockets with 1001 and ``serve`` returns."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVE_SCRIPT, mode, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        word, port, loop_module = line.decode().split()
        assert (word, loop_module) == (("ready", "uvloop") if mode == "ready" else ("bound", "-"))
        async with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=TIMEOUT) as client:
            await client.send("before")
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "before"
            process.send_signal(stop)
            await asyncio.wait_for(client.wait_closed(), TIMEOUT)
            assert (client.close_code, client.close_reason) == (1001, "server shutting down")
        assert await asyncio.wait_for(process.stdout.read(), TIMEOUT) == b"stopped\n"
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sighup_ignored_at_start_stays_ignored() -> None:
    """``nohup`` (or hupper's reload worker) ignores SIGHUP for the process: the server keeps
    that choice instead of stopping when the terminal closes."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVE_SCRIPT, "ready", stdout=asyncio.subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )  # fmt: skip
    assert process.stdout is not None
    try:
        port = (await asyncio.wait_for(process.stdout.readline(), 20)).split()[1].decode()
        async with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=TIMEOUT) as client:
            process.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.3)
            await client.send("still here")
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "still here"
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(client.wait_closed(), TIMEOUT)
            assert client.close_code == 1001
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_exits_with_the_status_a_handler_passed_to_sys_exit() -> None:
    """A handler's ``sys.exit(4)`` stops ``serve`` gracefully (the other WebSockets are
    closed with 1001), then the process exits with status 4."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVE_SCRIPT, "ready", stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        port = (await asyncio.wait_for(process.stdout.readline(), 20)).split()[1].decode()
        async with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=TIMEOUT) as client:
            leaving = await connect(f"ws://127.0.0.1:{port}/leave", open_timeout=TIMEOUT)
            await asyncio.wait_for(client.wait_closed(), TIMEOUT)
            assert (client.close_code, client.close_reason) == (1001, "server shutting down")
            await asyncio.wait_for(leaving.wait_closed(), TIMEOUT)
        assert await asyncio.wait_for(process.stdout.read(), TIMEOUT) == b""  # never returned
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 4
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def exits(ws: WebSocket) -> None:
    await ws.receive()
    sys.exit(3)


def interrupted(ws: SyncWebSocket) -> None:
    ws.receive()
    raise KeyboardInterrupt


@pytest.mark.parametrize(("path", "raised"), [("/exit", SystemExit), ("/int", KeyboardInterrupt)])
async def test_a_handler_ending_the_process_stops_the_server_gracefully_first(
    path: str, raised: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """``sys.exit()`` or KeyboardInterrupt in a handler (``async def`` or ``def``) does not
    escape into the event loop: the server stops as on SIGTERM, and ``reraise_exit`` raises
    it once it has stopped, for whoever runs the server to exit with it."""
    server = Server(Routes({"/": echo, "/exit": exits, "/int": interrupted}), ServerConfig(port=0))
    await server.start()
    other = await connect(f"ws://127.0.0.1:{server.port}/")
    server.reraise_exit()  # nothing raised yet: nothing to raise
    async with connect(f"ws://127.0.0.1:{server.port}{path}") as leaving:
        await leaving.send("bye")
        await asyncio.wait_for(server.wait_stopped(), TIMEOUT)
    assert (other.close_code, other.close_reason) == (1001, "server shutting down")
    with pytest.raises(raised) as info:
        server.reraise_exit()
    assert info.value.args == ((3,) if raised is SystemExit else ())
    assert f"a WebSocket handler raised {raised.__name__}" in caplog.text


def exiting_app(raised: type[BaseException]) -> Any:
    """A WSGI app whose every answer, upgrades included, ends the process."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise raised(3) if raised is SystemExit else raised()

    return app


UPGRADE = (
    "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize(
    ("raw", "upgrade_on_loop"),
    [
        ("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", False),
        (UPGRADE, False),
        (UPGRADE, True),
    ],
    ids=["plain", "upgrade", "upgrade-on-loop"],
)
async def test_the_wsgi_app_ending_the_process_answers_500_and_stops_the_server(
    raw: str, upgrade_on_loop: bool, raised: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """``sys.exit()`` or KeyboardInterrupt in the WSGI app (a plain request, or deciding an
    upgrade in the thread pool or on the loop) still answers its client, 500, and then
    stops the server as a handler's does; ``reraise_exit`` raises it once stopped."""
    server = Server(exiting_app(raised), ServerConfig(port=0, upgrade_on_loop=upgrade_on_loop))
    await server.start()
    response, _, writer = await request(server.port, raw.encode())
    writer.close()
    assert response.status == 500 and response.body == b"Internal Server Error\n"
    await asyncio.wait_for(server.wait_stopped(), TIMEOUT)
    with pytest.raises(raised):
        server.reraise_exit()
    assert f"the WSGI application raised {raised.__name__}" in caplog.text


async def test_a_server_shut_down_before_it_started_cannot_start() -> None:
    """``shutdown()`` before ``start()`` is a no-op (not an AssertionError); the server is
    then done, and ``start()`` says so instead of serving while marked as shutting down."""
    server = Server(make_app(), ServerConfig(port=0))
    await server.shutdown()
    assert server.shutting_down
    with pytest.raises(RuntimeError, match="was shut down"):
        await server.start()
