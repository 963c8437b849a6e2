"""Who decides about a request (stargate.server.dispatch): the upgrade decision on the loop.

With ``upgrade_on_loop`` the WSGI app's decision about an upgrade runs on the event loop's
thread, without the hop to a worker thread; every outcome is the same as from the thread
pool: accepted, refused by the app (its response, ``Connection: close``), or a 500 when it
raises.  Plain requests still run in the thread pool.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from wsgiref.validate import validator

import pytest
import websockets
from websockets.asyncio.client import connect

from stargate.server import ENVIRON_KEY, WebSocket
from stargate.server.wsgi import StartResponse

from .support import TIMEOUT, ClosingBody, StartServer, get, request

pytestmark = pytest.mark.asyncio


def deciding_app(seen: list[str]) -> Any:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        seen.append(threading.current_thread().name)
        upgrade = environ.get(ENVIRON_KEY)
        path = environ["PATH_INFO"]
        if upgrade is not None and path == "/ok":

            async def handler(ws: WebSocket) -> None:
                await ws.send("accepted")

            upgrade.accept(handler)
            return []
        if upgrade is not None and path == "/raise":
            raise RuntimeError("the app failed on an upgrade")
        if upgrade is not None:
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"not you"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"page"]

    return app


@pytest.mark.parametrize("on_loop", [True, False])
async def test_the_decision_on_the_loop_or_in_a_thread(
    start_server: StartServer, on_loop: bool
) -> None:
    seen: list[str] = []
    server = await start_server(validator(deciding_app(seen)), upgrade_on_loop=on_loop)
    base = f"ws://127.0.0.1:{server.port}"
    async with connect(f"{base}/ok", open_timeout=TIMEOUT) as ws:
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "accepted"
    decided_on = seen[-1]
    assert (decided_on == threading.current_thread().name) is on_loop
    assert (await get(server.port, "/page")).body == b"page"
    assert seen[-1].startswith("stargate-worker")  # plain requests: always the pool
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with connect(f"{base}/no", open_timeout=TIMEOUT):
            pass
    assert refused.value.response.status_code == 403
    assert refused.value.response.body == b"not you"
    assert refused.value.response.headers["Connection"] == "close"


async def test_an_app_that_raises_on_the_loop_gets_a_500_and_the_server_goes_on(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(deciding_app([]), upgrade_on_loop=True)
    response, _, writer = await request(
        server.port,
        b"GET /raise HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    writer.close()
    assert response.status == 500
    assert "the app failed on an upgrade" in caplog.text
    assert (await get(server.port, "/page")).body == b"page"


UPGRADE_REQUEST = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize("on_loop", [True, False])
@pytest.mark.parametrize("error", [RuntimeError, GeneratorExit])
async def test_an_accepted_upgrade_whose_close_fails_is_refused_with_500(
    start_server: StartServer, on_loop: bool, error: type[BaseException]
) -> None:
    """The upgrade happens only if the app's answer stands; the failure of its iterable's
    close() is the app's failure too, whatever it had answered (found by a review: a
    failing close() after an accepted upgrade let the handler run)."""
    ran: list[str] = []

    async def handler(ws: WebSocket) -> None:
        ran.append("handler")

    def app(environ: dict[str, Any], start_response: StartResponse) -> ClosingBody:
        environ[ENVIRON_KEY].accept(handler)
        start_response("200 OK", [])
        return ClosingBody([b""], error)

    server = await start_server(app, upgrade_on_loop=on_loop)
    response, _, writer = await request(server.port, UPGRADE_REQUEST)
    writer.close()
    assert (response.status, response.body) == (500, b"Internal Server Error\n")
    assert not ran
    assert server.state.metrics.handshakes["500"] == 1
