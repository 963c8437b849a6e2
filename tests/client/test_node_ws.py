"""The asyncio client against Node's ``ws`` server, a peer nobody here wrote.

``node_ws_server.js`` accepts the subprotocol ``chat.v1`` and permessage-deflate, and serves
an echo, a fragmented message, a ping and a close by path.  Without node or npm these tests
skip, except under CI, where that is a failure (tests/machine.py).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import stargate
from stargate.errors import ConnectionClosed
from tests.machine import node_ws

from .support import TIMEOUT

SERVER = Path(__file__).with_name("node_ws_server.js")


class NodeServer:
    """The running script: its port, and its reports of each connection's end."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def next_close(self) -> dict[str, Any]:
        """The server's report of the next connection to end."""
        assert self.process.stderr is not None
        while True:
            line = await asyncio.wait_for(self.process.stderr.readline(), TIMEOUT)
            assert line, "node_ws_server.js exited"
            if line.startswith(b"{"):
                report: dict[str, Any] = json.loads(line)
                return report


@pytest_asyncio.fixture
async def node_server() -> AsyncIterator[NodeServer]:
    node, modules = node_ws()
    process = await asyncio.create_subprocess_exec(
        node,
        str(SERVER),
        env={**os.environ, "NODE_PATH": str(modules)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 3 * TIMEOUT)
    assert line, "node_ws_server.js exited before listening"
    server = NodeServer(process, json.loads(line)["port"])
    yield server
    if process.returncode is None:
        process.kill()
        await process.wait()


@pytest.mark.asyncio
async def test_echo_with_deflate_and_a_subprotocol(node_server: NodeServer) -> None:
    async with stargate.connect(
        node_server.url("/echo"), subprotocols=["chat.v2", "chat.v1"]
    ) as ws:
        hello = json.loads(str(await asyncio.wait_for(ws.receive(), TIMEOUT)))
        assert ws.subprotocol == "chat.v1" == hello["protocol"]
        assert ws.compression and hello["extensions"].startswith("permessage-deflate")
        big = "stargate " * 50_000  # 450 kB, compressed both ways
        for message in ("héllo wörld", b"\x00\x01\x02\xff", big, b""):
            await ws.send(message)
            assert await asyncio.wait_for(ws.receive(), TIMEOUT) == message
    assert ws.close_code == 1000
    assert await node_server.next_close() == {"path": "/echo", "close": [1000, ""]}


@pytest.mark.asyncio
async def test_a_fragmented_message_is_one_message(node_server: NodeServer) -> None:
    async with stargate.connect(node_server.url("/fragments")) as ws:
        assert await asyncio.wait_for(ws.receive(), TIMEOUT) == "fragmented é"


@pytest.mark.asyncio
async def test_the_client_answers_the_servers_ping(node_server: NodeServer) -> None:
    async with stargate.connect(node_server.url("/ping")) as ws:
        assert await asyncio.wait_for(ws.receive(), TIMEOUT) == "pong from node"


@pytest.mark.asyncio
async def test_the_servers_close_code_and_reason_reach_the_client(
    node_server: NodeServer,
) -> None:
    async with stargate.connect(node_server.url("/close")) as ws:
        await ws.send("4003 not allowed here")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert (ws.close_code, ws.close_reason) == (4003, "not allowed here")
    assert await node_server.next_close() == {"path": "/close", "close": [4003, ""]}
