"""The demo (stargate.demo): the chat page and its WebSocket from one WSGI app on one port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from stargate import demo
from stargate.server import Server, ServerConfig

TIMEOUT = 5.0


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    server = Server(demo.app, ServerConfig(port=0))
    await server.start()
    yield server
    await server.shutdown(timeout=2.0)


async def http_get(port: int, path: str) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


async def next_event(client: ClientConnection) -> dict[str, Any]:
    message = await asyncio.wait_for(client.recv(), TIMEOUT)
    assert isinstance(message, str)
    event: dict[str, Any] = json.loads(message)
    return event


@pytest.mark.asyncio
async def test_page_and_404(server: Server) -> None:
    head, body = await http_get(server.port, "/")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/html; charset=utf-8" in head
    assert b"<title>Stargate demo chat</title>" in body
    assert b'"/chat"' in body  # the page opens its WebSocket on the same host and port
    head, body = await http_get(server.port, "/missing")
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert body == b"not found\n"


@pytest.mark.asyncio
async def test_two_clients_see_each_others_messages(server: Server) -> None:
    url = f"ws://127.0.0.1:{server.port}/chat"
    async with connect(url) as ann:
        joined = await next_event(ann)
        assert joined["type"] == "join" and joined["count"] == 1
        ann_name = joined["name"]
        async with connect(url) as bob:
            bob_joined = await next_event(bob)
            assert bob_joined["count"] == 2
            assert await next_event(ann) == bob_joined
            bob_name = bob_joined["name"]

            await ann.send("hello bob")
            expected = {"type": "message", "name": ann_name, "text": "hello bob"}
            assert await next_event(ann) == expected
            assert await next_event(bob) == expected
            await bob.send("   ")  # blank messages are not relayed
            await bob.send("hi ann")
            expected = {"type": "message", "name": bob_name, "text": "hi ann"}
            assert await next_event(bob) == expected
            assert await next_event(ann) == expected
        left = await next_event(ann)
        assert left == {"type": "leave", "name": bob_name, "count": 1}  # ann is still here


@pytest.mark.asyncio
async def test_plain_http_to_the_chat_url_is_404(server: Server) -> None:
    head, _ = await http_get(server.port, "/chat")
    assert head.startswith(b"HTTP/1.1 404 ")
