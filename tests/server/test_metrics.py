"""Metrics and readiness (stargate.server.metrics): served by the server before the app.

The exposition is parsed with prometheus_client's own parser, after real traffic: requests,
an accepted upgrade, a refused one.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.typing import Origin

from stargate.server import ENVIRON_KEY, Routes, WebSocket
from stargate.server.wsgi import StartResponse

from .support import TIMEOUT, StartServer, eventually, get

pytestmark = pytest.mark.asyncio


def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    upgrade = environ.get(ENVIRON_KEY)
    if upgrade is not None:

        async def handler(ws: WebSocket) -> None:
            await ws.send("hello")
            await ws.receive()

        upgrade.accept(handler)
        return []
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "worker"))
            found[(sample.name, labels)] = sample.value
    return found


async def test_metrics_after_traffic(start_server: StartServer) -> None:
    server = await start_server(app, metrics_path="/-/metrics")
    assert (await get(server.port, "/")).status == 200
    assert (await get(server.port, "/")).status == 200
    base = f"ws://127.0.0.1:{server.port}/ws"
    async with connect(base, open_timeout=TIMEOUT) as ws:
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello"
        response = await get(server.port, "/-/metrics")
        assert response.status == 200
        assert (
            response.header(
                "Content-Type",
            )
            is not None
        )
        assert response.header(
            "Content-Type",
        ).startswith("text/plain; version=0.0.4")  # type: ignore[union-attr]
        seen = samples(response.body.decode())
        assert seen[("stargate_websocket_connections", ())] == 1
        assert seen[("stargate_http_connections", ())] >= 1  # the scrape's own
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with connect(base, origin=Origin("https://evil.example"), open_timeout=TIMEOUT):
            pass
    seen = samples((await get(server.port, "/-/metrics")).body.decode())
    assert seen[("stargate_websocket_closes_total", (("code", "1000"),))] == 1
    assert seen[("stargate_websocket_messages_out_total", ())] == 1  # "hello"
    assert seen[("stargate_websocket_messages_in_total", ())] == 0
    assert seen[("stargate_websocket_bytes_in_total", ())] > 0  # the close frame
    assert seen[("stargate_http_responses_total", (("code", "200"),))] >= 2
    assert seen[("stargate_handshakes_total", (("outcome", "accepted"),))] == 1
    assert seen[("stargate_handshakes_total", (("outcome", "403"),))] == 1
    assert seen[("stargate_threadpool_queue_depth", (("pool", "wsgi"),))] == 0


async def test_one_help_and_type_line_per_metric_and_close_codes_in_classes(
    start_server: StartServer,
) -> None:
    """The text format allows one ``# HELP`` and one ``# TYPE`` per metric name (Prometheus'
    own parser refuses the scrape otherwise), and a close code a client chooses from the
    application ranges is a class, not a series of its own."""
    server = await start_server(app, metrics_path="/-/metrics")
    base = f"ws://127.0.0.1:{server.port}/ws"
    for code in (3000, 3999, 4000, 4321, 4999, 1001):
        async with connect(base, open_timeout=TIMEOUT) as ws:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello"
            await ws.close(code)
    await eventually(lambda: not server.websockets)
    text = (await get(server.port, "/-/metrics")).body.decode()
    for kind in ("# HELP ", "# TYPE "):
        names = [line.split()[2] for line in text.splitlines() if line.startswith(kind)]
        assert len(names) == len(set(names)), names
    seen = samples(text)
    closes = {k[1]: v for k, v in seen.items() if k[0] == "stargate_websocket_closes_total"}
    assert closes == {(("code", "3xxx"),): 2, (("code", "4xxx"),): 3, (("code", "1001"),): 1}
    assert seen[("stargate_threadpool_queue_depth", (("pool", "websocket"),))] == 0
    assert seen[("stargate_connections_refused_total", ())] == 0


async def test_metrics_are_off_by_default(start_server: StartServer) -> None:
    server = await start_server(app)
    response = await get(server.port, "/-/metrics")
    assert response.body == b"app"  # the application's, not ours


async def test_readiness_in_routes_mode(start_server: StartServer) -> None:
    server = await start_server(Routes(), health_path="/-/ready")
    response = await get(server.port, "/-/ready")
    assert response.status == 200 and response.body == b"ready\n"
    assert (await get(server.port, "/other")).status == 404


async def test_not_ready_when_the_broker_is_down(start_server: StartServer) -> None:
    server = await start_server(Routes(), health_path="/-/ready")
    connected = [True]
    server.state.broker_health = lambda: (0, connected[0])
    assert (await get(server.port, "/-/ready")).status == 200
    connected[0] = False
    response = await get(server.port, "/-/ready")
    assert response.status == 503
    assert b"broker" in response.body


async def test_metrics_without_prometheus_client(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    server = await start_server(app, metrics_path="/-/metrics")
    response = await get(server.port, "/-/metrics")
    assert response.status == 500
    assert b"pip install" in response.body
