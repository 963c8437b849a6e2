"""Behind a real reverse proxy: Debian's nginx in front of Stargate, HTTP and WebSocket.

nginx terminates TLS, rewrites Host (as a proxy to an upstream name does) and says who the
client was in X-Forwarded-For/Proto/Host.  Stargate trusts nginx's address only, so the
application sees the client's address, https and the public host, and the same-origin check
accepts the https page's upgrade.  The nginx configuration is the one docs/deploy-nginx.md
shows.  The client connects from 127.0.0.5 and nginx from 127.0.0.1 (``proxy_bind``), so the
two addresses differ on one machine.

nginx is found on PATH or in /usr/sbin; without it these tests skip, except under CI, where
a missing nginx is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.typing import Origin

from stargate.server import ENVIRON_KEY, WebSocket
from stargate.server.wsgi import StartResponse
from tests.machine import make_certificate, unavailable

from .support import TIMEOUT, StartServer

CLIENT_ADDRESS = "127.0.0.5"


#: What docs/deploy-nginx.md recommends, with the test's ports and paths filled in.
NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream stargate {{
        server 127.0.0.1:{upstream};
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};

        location / {{
            proxy_pass http://stargate;
            proxy_bind 127.0.0.1;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_read_timeout 3600s;
            proxy_buffering off;
        }}
    }}
}}
"""


def find_nginx() -> str:
    path = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if path is None:
        unavailable("nginx is not installed")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Nginx:
    def __init__(self, directory: Path, upstream: int) -> None:
        self.directory = directory
        self.port = free_port()
        self.cert, key = make_certificate(directory)
        conf = directory / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                dir=directory, upstream=upstream, port=self.port, cert=self.cert, key=key
            )
        )
        self.process = subprocess.Popen(
            [
                find_nginx(),
                "-p",
                str(directory),
                "-c",
                str(conf),
                "-e",
                str(directory / "error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = (directory / "error.log").read_text(errors="replace")
                    raise AssertionError(f"nginx did not start: {log[-2000:]}") from None
                time.sleep(0.05)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def nginx_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Nginx] = []

    def start(upstream: int) -> Nginx:
        proxy = Nginx(tmp_path, upstream)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    upgrade = environ.get(ENVIRON_KEY)
    if upgrade is not None:

        async def handler(ws: WebSocket) -> None:
            await ws.send(json.dumps({"remote": ws.remote_address}))
            async for message in ws:
                await ws.send(message)

        upgrade.accept(handler)
        return []
    body = json.dumps(
        {key: environ.get(key) for key in ("REMOTE_ADDR", "wsgi.url_scheme", "HTTP_HOST")}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


async def https_get(nginx: Nginx, path: str, extra: str = "") -> tuple[bytes, bytes]:
    sock = socket.socket()
    sock.bind((CLIENT_ADDRESS, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", nginx.port))
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(sock=sock, ssl=nginx.client_context(), server_hostname="localhost"),
        TIMEOUT,
    )
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: localhost:{nginx.port}\r\nConnection: close\r\n"
        f"{extra}\r\n".encode()
    )
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def client_socket(nginx: Nginx) -> socket.socket:
    sock = socket.socket()
    sock.bind((CLIENT_ADDRESS, 0))
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", nginx.port))
    return sock


@pytest.mark.asyncio
async def test_http_through_nginx_sees_the_client(
    start_server: StartServer, nginx_factory: Any
) -> None:
    server = await start_server(app, trusted_proxies=("127.0.0.1",))
    nginx = nginx_factory(server.port)
    head, body = await https_get(nginx, "/")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body) == {
        "REMOTE_ADDR": CLIENT_ADDRESS,
        "wsgi.url_scheme": "https",
        "HTTP_HOST": f"localhost:{nginx.port}",
    }


@pytest.mark.asyncio
async def test_a_clients_own_forwarded_header_passes_nginx_unbelieved(
    start_server: StartServer, nginx_factory: Any
) -> None:
    """nginx sets X-Forwarded-* and passes the client's ``Forwarded`` on untouched: read
    too, it named whatever address, scheme and host the client liked."""
    server = await start_server(app, trusted_proxies=("127.0.0.1",))
    nginx = nginx_factory(server.port)
    spoof = "Forwarded: for=6.6.6.6;proto=http;host=evil.example\r\n"
    head, body = await https_get(nginx, "/", spoof)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body) == {
        "REMOTE_ADDR": CLIENT_ADDRESS,
        "wsgi.url_scheme": "https",
        "HTTP_HOST": f"localhost:{nginx.port}",
    }


@pytest.mark.asyncio
async def test_untrusted_nginx_is_not_believed(
    start_server: StartServer, nginx_factory: Any
) -> None:
    server = await start_server(app)  # trusted_proxies left empty
    nginx = nginx_factory(server.port)
    _, body = await https_get(nginx, "/")
    seen = json.loads(body)
    assert seen["REMOTE_ADDR"] == "127.0.0.1"  # the proxy itself
    assert seen["wsgi.url_scheme"] == "http"


@pytest.mark.asyncio
async def test_websocket_through_nginx_with_an_https_origin(
    start_server: StartServer, nginx_factory: Any
) -> None:
    server = await start_server(app, trusted_proxies=("127.0.0.1",))
    nginx = nginx_factory(server.port)
    url = f"wss://localhost:{nginx.port}/chat"
    async with connect(
        url,
        sock=client_socket(nginx),
        ssl=nginx.client_context(),
        server_hostname="localhost",
        origin=Origin(f"https://localhost:{nginx.port}"),
        open_timeout=TIMEOUT,
    ) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert hello["remote"][0] == CLIENT_ADDRESS
        await ws.send("through the proxy")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "through the proxy"
    # A page of another origin (or of the plain-http twin) is still refused.
    for origin in ("https://evil.example", f"http://localhost:{nginx.port}"):
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with connect(
                url,
                sock=client_socket(nginx),
                ssl=nginx.client_context(),
                server_hostname="localhost",
                origin=Origin(origin),
                open_timeout=TIMEOUT,
            ):
                pass
        assert info.value.response.status_code == 403
