"""The server against Node's ``ws`` client, a peer nobody here wrote.

``node_ws_client.js`` opens a connection offering two subprotocols and permessage-deflate,
sends text, binary, a large compressible text and a message in two frames, pings and closes;
it prints what it saw.  Without node or npm these tests skip, except under CI, where that is
a failure (tests/machine.py).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from stargate.server import Routes, WebSocket
from tests.machine import node_ws

from .support import TIMEOUT, StartServer

CLIENT = Path(__file__).with_name("node_ws_client.js")


async def run_client(url: str, origin: str | None = None) -> dict[str, Any]:
    node, modules = node_ws()
    process = await asyncio.create_subprocess_exec(
        *(node, str(CLIENT), url, *([origin] if origin else [])),
        env={**os.environ, "NODE_PATH": str(modules)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 3 * TIMEOUT)
    assert process.returncode == 0, err.decode(errors="replace")
    seen: dict[str, Any] = json.loads(out)
    return seen


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def speak_and_close(ws: WebSocket) -> None:
    await ws.close(4001, "server says bye")


def routes() -> Routes:
    return Routes({"/echo": echo, "/bye": speak_and_close}, subprotocols=["chat.v1"])


@pytest.mark.asyncio
async def test_node_ws_echoes_negotiates_pings_and_closes(start_server: StartServer) -> None:
    server = await start_server(routes())
    seen = await run_client(f"ws://127.0.0.1:{server.port}/echo")
    assert "error" not in seen and "status" not in seen, seen
    assert seen["protocol"] == "chat.v1"  # our preference among its two offers
    assert "permessage-deflate" in seen["extensions"]
    assert seen["echoes"] == [
        {"binary": False, "data": "héllo wörld"},
        {"binary": True, "data": "000102ff"},
        {"binary": False, "data": "fragment"},
    ]
    assert seen["big"] is True
    assert seen["pong"] == "are you there"
    # Our answering close frame echoes the code (RFC 6455 section 5.5.1), without a reason.
    assert seen["close"] == [4000, ""]


@pytest.mark.asyncio
async def test_node_ws_sees_the_servers_close(start_server: StartServer) -> None:
    server = await start_server(routes())
    seen = await run_client(f"ws://127.0.0.1:{server.port}/bye")
    assert seen.get("close") == [4001, "server says bye"], seen


@pytest.mark.asyncio
async def test_node_ws_refused_by_the_origin_policy_reads_403(start_server: StartServer) -> None:
    server = await start_server(routes())
    url = f"ws://127.0.0.1:{server.port}/echo"
    seen = await run_client(url, origin="http://evil.example")
    assert seen["status"] == 403 and "origin" in seen["body"].lower(), seen
    allowed = await run_client(url, origin=f"http://127.0.0.1:{server.port}")
    assert allowed.get("close") == [4000, ""], allowed


@pytest.mark.asyncio
async def test_node_ws_to_an_unknown_path_reads_404(start_server: StartServer) -> None:
    server = await start_server(routes())
    seen = await run_client(f"ws://127.0.0.1:{server.port}/nowhere")
    assert seen["status"] == 404, seen
