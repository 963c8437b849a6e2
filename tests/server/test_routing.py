"""Route tables (stargate.server.routing): pure WebSocket servers without a WSGI app."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect

from stargate.handshake import OriginPolicy
from stargate.server import Routes, SyncWebSocket, WebSocket, WebSocketOptions

from .support import StartServer, at_eof, open_tcp, read_response, request


async def chat(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(f"chat:{message!s}")


def sync_news(ws: SyncWebSocket) -> None:
    for message in ws:
        ws.send(f"news:{message!s}")


def test_resolve_routes_default_and_decorator() -> None:
    options = WebSocketOptions(max_queue=3)
    policy = OriginPolicy.any()
    routes = Routes({"/chat": chat}, subprotocols=["a"], origin_policy=policy, options=options)

    @routes.route("/news")
    def news(ws: SyncWebSocket) -> None:
        sync_news(ws)

    acceptance = routes.resolve("/chat")
    assert acceptance is not None
    assert acceptance.handler is chat
    assert acceptance.subprotocols == ("a",)
    assert acceptance.origin_policy is policy
    assert acceptance.options is options
    news_acceptance = routes.resolve("/news")
    assert news_acceptance is not None and news_acceptance.handler is news
    assert routes.resolve("/other") is None
    assert routes.resolve("/chat/") is None  # exact paths
    fallback = Routes(default=chat).resolve("/anything")
    assert fallback is not None and fallback.handler is chat


@pytest.mark.asyncio
async def test_websocket_routes_of_both_kinds(start_server: StartServer) -> None:
    server = await start_server(Routes({"/chat": chat, "/news": sync_news}))
    async with connect(f"ws://127.0.0.1:{server.port}/chat?x=1") as client:
        await client.send("hi")
        assert await client.recv() == "chat:hi"
    async with connect(f"ws://127.0.0.1:{server.port}/news") as client:
        await client.send("hi")
        assert await client.recv() == "news:hi"


@pytest.mark.asyncio
async def test_plain_http_to_a_route_gets_426_unknown_path_404(start_server: StartServer) -> None:
    server = await start_server(Routes({"/chat": chat}))
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n")
    response = await read_response(reader)
    assert (response.status, response.reason) == (426, "Upgrade Required")
    assert response.header("Upgrade") == "websocket"
    assert response.body == (
        b"this URL serves WebSocket connections only: a handshake sends "
        b"Connection: Upgrade and Upgrade: websocket\n"
    )
    # RFC 9110 section 7.8: who sends Upgrade sends the "upgrade" connection option too.
    assert response.header("Connection") == "upgrade, keep-alive"
    writer.write(b"GET /nope?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")  # same connection: kept alive
    response = await read_response(reader)
    assert (response.status, response.body) == (404, b"no route for /nope\n")
    writer.close()


@pytest.mark.asyncio
async def test_route_answers_honour_connection_close(start_server: StartServer) -> None:
    server = await start_server(Routes({"/chat": chat}))
    for raw in (
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /nope HTTP/1.0\r\n\r\n",
    ):
        response, reader, writer = await request(server.port, raw)
        assert (response.status, response.header("Connection")) in (
            (426, "upgrade, close"),
            (404, "close"),
        )
        assert await at_eof(reader, 1.0)
        writer.close()


@pytest.mark.asyncio
async def test_websocket_to_an_unknown_path_gets_404(start_server: StartServer) -> None:
    server = await start_server(Routes({"/chat": chat}))
    response, reader, writer = await request(
        server.port,
        b"GET /missing HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    assert response.status == 404
    assert response.body == b"no WebSocket route for /missing\n"
    assert await at_eof(reader)
    writer.close()


@pytest.mark.asyncio
async def test_route_table_origin_policy_applies(start_server: StartServer) -> None:
    raw = (
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Origin: http://elsewhere.example\r\n\r\n"
    )
    strict = await start_server(Routes({"/chat": chat}))
    response, _, writer = await request(strict.port, raw, head=True)
    assert response.status == 403
    writer.close()
    open_ = await start_server(Routes({"/chat": chat}, origin_policy=OriginPolicy.any()))
    response, _, writer = await request(open_.port, raw, head=True)
    assert response.status == 101
    writer.close()
