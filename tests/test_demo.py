"""The demo (stargate.demo): the chat page and its WebSocket from one WSGI app on one port."""

from __future__ import annotations

import asyncio
import json
import re
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


async def next_said(client: ClientConnection) -> dict[str, Any]:
    """The next event, a relayed plain text message: its id (made by the server) checked
    and left out."""
    event = await next_event(client)
    assert event["type"] == "message", event
    assert re.fullmatch(r"[0-9a-f]{16}", event.pop("id"))
    return event


async def join(url: str) -> tuple[ClientConnection, str]:
    """Connect; the welcome (name and limit) comes first, to this client only."""
    client = await connect(url)
    welcome = await next_event(client)
    assert welcome == {"type": "welcome", "name": welcome["name"], "limit": demo.MAX_CHARS}
    return client, welcome["name"]


@pytest.mark.asyncio
async def test_page_and_404(server: Server) -> None:
    head, body = await http_get(server.port, "/")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/html; charset=utf-8" in head
    assert b"<title>Stargate demo chat</title>" in body
    assert b'"/chat"' in body  # the page opens its WebSocket on the same host and port
    # The page shows and checks the server's limit.
    assert b'data-max-chars="2000"' in body and b"__MAX_CHARS__" not in body
    head, body = await http_get(server.port, "/missing")
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert body == b"not found\n"


@pytest.mark.asyncio
async def test_two_clients_see_each_others_messages(server: Server) -> None:
    url = f"ws://127.0.0.1:{server.port}/chat"
    ann, ann_name = await join(url)
    async with ann:
        assert await next_event(ann) == {"type": "join", "name": ann_name, "count": 1}
        bob, bob_name = await join(url)
        async with bob:
            bob_joined = await next_event(bob)
            assert bob_joined == {"type": "join", "name": bob_name, "count": 2}
            assert await next_event(ann) == bob_joined

            await ann.send("hello bob")
            said = await next_event(ann)
            assert said == await next_event(bob)  # one message, one id, for everyone
            assert said == {
                "type": "message",
                "name": ann_name,
                "text": "hello bob",
                "id": said["id"],
            }
            await bob.send("   ")  # blank messages are not relayed
            await bob.send("hi ann")
            expected = {"type": "message", "name": bob_name, "text": "hi ann"}
            assert await next_said(bob) == expected
            assert await next_said(ann) == expected
        left = await next_event(ann)
        assert left == {"type": "leave", "name": bob_name, "count": 1}  # ann is still here


@pytest.mark.asyncio
async def test_a_message_over_the_limit_is_refused_whole_never_cut(server: Server) -> None:
    url = f"ws://127.0.0.1:{server.port}/chat"
    ann, ann_name = await join(url)
    bob, _ = await join(url)
    async with ann, bob:
        await next_event(ann)  # ann joined
        for client in (ann, bob):
            assert (await next_event(client))["type"] == "join"  # bob joined

        # The limit counts characters (code points): an astral character is one.
        longest = "\U0001f680" + "x" * (demo.MAX_CHARS - 1)
        await ann.send(longest)
        expected = {"type": "message", "name": ann_name, "text": longest}
        assert await next_said(ann) == expected and await next_said(bob) == expected

        await ann.send(longest + "y")
        await ann.send(json.dumps({"type": "say", "id": "t-2", "text": longest + "y"}))
        over = f"{demo.MAX_CHARS + 1} characters: over the limit of {demo.MAX_CHARS}, not sent"
        assert await next_event(ann) == {"type": "refused", "reason": over}
        assert await next_event(ann) == {"type": "refused", "reason": over, "id": "t-2"}
        await ann.send(b"binary")
        refused = await next_event(ann)
        assert refused["type"] == "refused" and "binary" in refused["reason"]

        # Bob heard none of it: his next event is the next message relayed.
        await ann.send("after")
        assert await next_said(bob) == {"type": "message", "name": ann_name, "text": "after"}


@pytest.mark.asyncio
async def test_a_say_envelope_keeps_its_id(server: Server) -> None:
    """The page's envelope: the id comes back, so a re-sent message shows once."""
    url = f"ws://127.0.0.1:{server.port}/chat"
    ann, name = await join(url)
    async with ann:
        await next_event(ann)  # joined
        await ann.send(json.dumps({"type": "say", "id": "tab-1", "text": "hi"}))
        assert await next_event(ann) == {
            "type": "message",
            "name": name,
            "text": "hi",
            "id": "tab-1",
        }
        # An id that is not a short string is replaced by the server's, the text relayed.
        await ann.send(json.dumps({"type": "say", "id": "x" * 65, "text": "long id"}))
        assert await next_said(ann) == {"type": "message", "name": name, "text": "long id"}
        await ann.send(json.dumps({"type": "say", "id": 7, "text": "number id"}))
        assert await next_said(ann) == {"type": "message", "name": name, "text": "number id"}
        # Other JSON is text like any other.
        for other in ('{"type": "shout", "text": "x"}', "{not json", '{"type": "say"}'):
            await ann.send(other)
            assert await next_said(ann) == {"type": "message", "name": name, "text": other}


@pytest.mark.asyncio
async def test_a_tab_that_joins_hears_the_recent_messages(server: Server) -> None:
    """A tab back from a disconnect catches up (and shows each message once, by its id);
    the room forgets when it empties."""
    url = f"ws://127.0.0.1:{server.port}/chat"
    ann, _ = await join(url)
    async with ann:
        await next_event(ann)  # joined
        said = []
        for i in range(demo.HISTORY + 2):
            await ann.send(json.dumps({"type": "say", "id": f"m{i}", "text": f"#{i}"}))
            said.append(await next_event(ann))
        bob, bob_name = await join(url)
        async with bob:
            # After the welcome, the last HISTORY messages, in order, ids and all.
            assert [await next_event(bob) for _ in range(demo.HISTORY)] == said[2:]
            joined = {"type": "join", "name": bob_name, "count": 2}
            assert await next_event(bob) == joined
            assert await next_event(ann) == joined
        assert (await next_event(ann))["type"] == "leave"
    # Everyone left (once ann's handler has seen her close): the next to come hears
    # nothing from before.
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while demo._recent:
        assert asyncio.get_running_loop().time() < deadline, "the room did not forget"
        await asyncio.sleep(0.01)
    cy, cy_name = await join(url)
    async with cy:
        assert await next_event(cy) == {"type": "join", "name": cy_name, "count": 1}


@pytest.mark.asyncio
async def test_plain_http_to_the_chat_url_is_404(server: Server) -> None:
    head, _ = await http_get(server.port, "/chat")
    assert head.startswith(b"HTTP/1.1 404 ")
