"""stargate.testing: the helpers applications use in their own tests."""

from __future__ import annotations

import pytest

from stargate.events import BinaryMessage, CloseReceived, Pong, TextMessage
from stargate.protocol import ProtocolVersion
from stargate.server import Routes, ServerConfig, SyncWebSocket, WebSocket
from stargate.testing import connection_pair, run_app, serve_app, transfer


async def shout(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message.upper() if isinstance(message, str) else message)


def shout_sync(ws: SyncWebSocket) -> None:
    for message in ws:
        ws.send(message.upper() if isinstance(message, str) else message)


def page(environ: dict[str, object], start_response: object) -> list[bytes]:
    upgrade = environ.get("stargate.websocket")
    if upgrade is not None:
        upgrade.accept(shout)  # type: ignore[attr-defined]
        return []
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [b"a page"]


@pytest.mark.asyncio
async def test_serve_app_yields_connected_clients() -> None:
    async with serve_app(Routes({"/shout": shout})) as server:
        assert server.port > 0
        assert server.url("shout") == f"ws://127.0.0.1:{server.port}/shout"
        async with server.connect("/shout") as first, server.connect("/shout") as second:
            await first.send("hello")
            await second.send(b"bytes")
            assert await first.receive() == "HELLO"
            assert await second.receive() == b"bytes"
            assert len(server.server.websockets) == 2
    assert first.closed and second.closed


@pytest.mark.asyncio
async def test_serve_app_with_a_wsgi_app_and_config() -> None:
    config = ServerConfig(port=0, legacy_protocols=False)
    async with serve_app(page, config) as server:
        assert server.url(scheme="http").startswith("http://127.0.0.1:")
        assert server.server.config.legacy_protocols is False
        async with server.connect("/anything") as ws:
            await ws.send("wsgi")
            assert await ws.receive() == "WSGI"


def test_run_app_in_a_background_thread() -> None:
    with run_app(Routes({"/shout": shout_sync}), websocket_threads=4) as server:
        assert server.server.config.websocket_threads == 4
        with server.connect("/shout") as ws:
            ws.send("sync")
            assert ws.receive(timeout=5) == "SYNC"
        with server.connect("/shout", version=ProtocolVersion.HIXIE_76) as ws:
            ws.send("legacy")
            assert ws.receive(timeout=5) == "LEGACY"
    assert ws.closed


def test_run_app_reports_a_failed_start() -> None:
    with run_app(page) as server, pytest.raises(OSError):  # noqa: SIM117
        with run_app(page, port=server.port, host="127.0.0.1"):
            pass


@pytest.mark.parametrize("compression", [False, True])
def test_connection_pair(compression: bool) -> None:
    client, server = connection_pair(compression=compression)
    client.send("question")
    assert transfer(client, server) == [TextMessage("question")]
    server.send(b"answer" * 100)
    data = server.data_to_send()
    assert (len(data) < 100) is compression  # 600 bytes compressed to a few
    assert client.receive_data(data) == [BinaryMessage(b"answer" * 100)]
    client.send_ping(b"p")
    transfer(client, server)
    assert transfer(server, client) == [Pong(b"p")]
    client.send_close(1000, "bye")
    assert transfer(client, server) == [CloseReceived(1000, "bye")]
    assert transfer(server, client) == [CloseReceived(1000, "")]


def test_connection_pair_hixie() -> None:
    client, server = connection_pair(ProtocolVersion.HIXIE_76)
    client.send("old")
    assert transfer(client, server) == [TextMessage("old")]
