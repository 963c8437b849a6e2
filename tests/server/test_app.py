"""The server's lifetime (stargate.server.app): TLS on the shared port, connection limits,
graceful shutdown in process and on SIGTERM in a real ``stargate`` process."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from stargate.server import Server, ServerConfig, SyncWebSocket, WebSocket
from stargate.server.wsgi import StartResponse

from .support import (
    TIMEOUT,
    StartServer,
    at_eof,
    eventually,
    get,
    open_tcp,
    read_response,
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


def make_app(slow: threading.Event | None = None) -> Any:
    """Upgrades to an echo handler (``/sync``: a ``def`` one), answers the URL scheme
    otherwise (``/slow`` waits for ``slow``); behind wsgiref's validator."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        upgrade = environ.get("stargate.websocket")
        if upgrade is not None:
            upgrade.accept(sync_echo if environ["PATH_INFO"] == "/sync" else echo)
            return []
        if environ["PATH_INFO"] == "/slow" and slow is not None:
            slow.wait(TIMEOUT)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.url_scheme"].encode()]

    return validated(app)


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate for localhost and 127.0.0.1, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: cannot make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
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

    # Plain text on the TLS port is not served.
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await at_eof(reader)
    writer.close()


# -- limits ----------------------------------------------------------------------------------


async def test_max_connections(start_server: StartServer) -> None:
    server = await start_server(make_app(), max_connections=2)
    first = await connect(f"ws://127.0.0.1:{server.port}/")
    _, second_writer = await open_tcp(server.port)
    await eventually(lambda: len(server._http) + len(server.websockets) == 2)
    reader, writer = await open_tcp(server.port)
    assert await at_eof(reader, 1.0)  # refused at once
    writer.close()
    second_writer.close()
    await eventually(lambda: len(server._http) + len(server.websockets) == 1)
    assert (await get(server.port, "/")).body == b"http"
    await first.close()


# -- shutdown in process ----------------------------------------------------------------------


async def test_shutdown_closes_websockets_with_1001_and_answers_in_flight_http(
    start_server: StartServer,
) -> None:
    slow = threading.Event()
    server = await start_server(make_app(slow))
    clients = [
        await connect(f"ws://127.0.0.1:{server.port}{path}") for path in ("/a", "/sync", "/b")
    ]
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    idle_reader, idle_writer = await open_tcp(server.port)
    await eventually(lambda: len(server._http) == 2)
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
    assert await at_eof(reader, 1.0)
    await asyncio.wait_for(shutdown, TIMEOUT)
    assert time.monotonic() - started < 2.0
    assert not server.websockets and not server._handlers
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()
    idle_writer.close()


async def test_server_as_async_context_manager() -> None:
    async with Server(make_app(), ServerConfig(port=0)) as server:
        assert (await get(server.port, "/")).body == b"http"
    assert server.shutting_down


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
