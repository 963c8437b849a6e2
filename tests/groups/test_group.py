"""Groups (stargate.groups): one send reaches every member, from the loop, a worker thread or
a WSGI view; membership follows the connections; a slow member is closed alone."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import pytest
from websockets.asyncio.client import connect

from stargate.groups import Group
from stargate.handshake import ClientHandshake
from stargate.server import (
    ENVIRON_KEY,
    Server,
    ServerConfig,
    SyncWebSocket,
    WebSocket,
    WebSocketOptions,
)
from stargate.server.wsgi import StartResponse

TIMEOUT = 5.0
StartServer = Callable[..., Awaitable[Server]]


async def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def group_app(group: Group, handler: Any, **accept: Any) -> Any:
    """Upgrades go to ``handler``; ``GET /send?text`` sends ``text`` to the group from the
    WSGI view (a worker thread); other requests report the group's size."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        upgrade = environ.get(ENVIRON_KEY)
        if upgrade is not None:
            upgrade.accept(handler, **accept)
            return []
        if environ["PATH_INFO"] == "/send":
            group.send(environ["QUERY_STRING"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(group)).encode()]

    return app


async def http_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return body


@pytest.mark.asyncio
async def test_group_send_from_loop_thread_and_wsgi_view(start_server: StartServer) -> None:
    group = Group("room")

    async def async_member(ws: WebSocket) -> None:
        group.add(ws)
        async for message in ws:
            group.send(f"loop:{message!s}")  # from the event loop

    def sync_member(ws: SyncWebSocket) -> None:
        group.add(ws)
        for message in ws:
            group.send(f"thread:{message!s}")  # from a worker thread
            group.send(b"binary too")

    def handler_for(path: str) -> Any:
        return sync_member if path == "/sync" else async_member

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        upgrade = environ.get(ENVIRON_KEY)
        if upgrade is not None:
            upgrade.accept(handler_for(environ["PATH_INFO"]))
            return []
        return group_app(group, None)(environ, start_response)  # type: ignore[no-any-return]

    server = await start_server(app)
    base = f"ws://127.0.0.1:{server.port}"
    async with (
        connect(base + "/async") as a,
        connect(base + "/sync") as s,
        connect(base + "/async") as b,
    ):
        await eventually(lambda: len(group) == 3)
        assert await http_get(server.port, "/size") == b"3"
        clients = (a, s, b)

        await a.send("hi")
        for client in clients:
            assert await client.recv() == "loop:hi"
        await s.send("yo")
        for client in clients:
            assert await client.recv() == "thread:yo"
            assert await client.recv() == b"binary too"
        assert await http_get(server.port, "/send?from-view") == b"3"
        for client in clients:
            assert await client.recv() == "from-view"

        await b.close()
        await eventually(lambda: len(group) == 2)  # a member leaves when it closes
        group.send("after leave")
        assert await a.recv() == "after leave"
        assert await s.recv() == "after leave"
    await eventually(lambda: len(group) == 0)


@pytest.mark.asyncio
async def test_listener_stays_open_after_its_handler_returns(start_server: StartServer) -> None:
    group = Group("listeners")
    returned = threading.Event()

    def listener(ws: SyncWebSocket) -> None:
        group.add(ws)
        returned.set()  # no thread is held from here on

    server = await start_server(group_app(group, listener))
    async with connect(f"ws://127.0.0.1:{server.port}/") as client:
        await eventually(lambda: returned.is_set() and len(group) == 1)
        await eventually(lambda: not server.running_handlers)
        group.send("news")
        assert await client.recv() == "news"
        assert await http_get(server.port, "/send?more") == b"1"
        assert await client.recv() == "more"
        (member,) = list(group)
        assert member in group
        group.remove(member)  # the last reason to stay open is gone: closed with 1000
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        assert client.close_code == 1000
        assert member not in group


@pytest.mark.asyncio
async def test_remove_while_the_handler_runs_keeps_the_connection(
    start_server: StartServer,
) -> None:
    group = Group()

    async def handler(ws: WebSocket) -> None:
        group.add(ws)
        group.remove(ws)
        async for message in ws:
            await ws.send(message)

    server = await start_server(group_app(group, handler))
    async with connect(f"ws://127.0.0.1:{server.port}/") as client:
        await client.send("still here")
        assert await client.recv() == "still here"
        assert len(group) == 0


async def slow_reader(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client with a tiny receive window that does not read until told."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    handshake = ClientHandshake(f"127.0.0.1:{port}", "/slow")
    writer.write(handshake.request_bytes())
    while handshake.receive(await asyncio.wait_for(reader.readexactly(1), TIMEOUT)) is None:
        pass
    return reader, writer


async def read_until_close(reader: asyncio.StreamReader) -> tuple[int, str, int]:
    """``(close code, reason, data frames before it)``."""
    frames = 0
    while True:
        first, second = await asyncio.wait_for(reader.readexactly(2), TIMEOUT)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        payload = await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
        if first & 0x0F == 0x8:
            return struct.unpack("!H", payload[:2])[0], payload[2:].decode(), frames
        frames += 1


@pytest.mark.asyncio
async def test_slow_member_closed_with_1008_fast_member_gets_everything(
    start_server: StartServer,
) -> None:
    group = Group("fanout")

    async def member(ws: WebSocket) -> None:
        group.add(ws)

    options = WebSocketOptions(max_send_buffer=256 * 1024, close_timeout=5.0)
    server = await start_server(group_app(group, member), websocket=options)
    reader, writer = await slow_reader(server.port)
    async with connect(f"ws://127.0.0.1:{server.port}/fast", max_size=None) as fast:
        await eventually(lambda: len(group) == 2)
        total = 128  # 64 KiB each: 8 MiB, more than loopback buffers take from a non-reader
        for i in range(total):
            group.send(b"%d:" % i + b"g" * 65536)
            assert (await fast.recv())[:8] == (b"%d:" % i + b"g" * 8)[:8]
        code, reason, frames = await read_until_close(reader)
        assert (code, reason) == (1008, "slow consumer: send buffer full")
        assert 0 < frames < total
        writer.write(
            b"\x88\x82abcd" + bytes(a ^ b for a, b in zip(b"\x03\xf0", b"ab", strict=True))
        )
        await eventually(lambda: len(group) == 1)  # closed, the slow member left the group
        group.send("fast still served")
        assert await fast.recv() == "fast still served"
    writer.close()


@pytest.mark.asyncio
async def test_binary_send_skips_hixie_members(start_server: StartServer) -> None:
    from stargate.handshake import OriginPolicy
    from stargate.protocol import ProtocolVersion

    group = Group()

    async def member(ws: WebSocket) -> None:
        group.add(ws)

    server = await start_server(group_app(group, member, origin_policy=OriginPolicy.any()))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    handshake = ClientHandshake("example.com", "/", version=ProtocolVersion.HIXIE_76)
    writer.write(handshake.request_bytes())
    while handshake.receive(await asyncio.wait_for(reader.readexactly(1), TIMEOUT)) is None:
        pass
    async with connect(f"ws://127.0.0.1:{server.port}/") as client:
        await eventually(lambda: len(group) == 2)
        group.send(b"\x00binary")
        group.send("text for all")
        assert await client.recv() == b"\x00binary"
        assert await client.recv() == "text for all"
        assert await asyncio.wait_for(reader.readuntil(b"\xff"), TIMEOUT) == b"\x00text for all\xff"
    writer.close()


def test_group_serves_a_new_loop_once_empty() -> None:
    """A module-level group (the demo's room) outlives an event loop: after its members are
    gone it serves the next loop's connections (tests, a restarted server)."""
    group = Group("module level")

    async def scenario() -> None:
        async def member(ws: WebSocket) -> None:
            group.add(ws)

        server = Server(group_app(group, member), ServerConfig(port=0))
        await server.start()
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/") as client:
                await eventually(lambda: len(group) == 1)
                group.send("hello")
                assert await client.recv() == "hello"
            await eventually(lambda: len(group) == 0)
        finally:
            await server.shutdown(timeout=2.0)

    asyncio.run(scenario())
    asyncio.run(scenario())


def test_group_send_without_members_does_nothing() -> None:
    group = Group("empty")
    group.send("nobody")
    group.send(b"nobody")
    assert len(group) == 0 and list(group) == []
    assert repr(group) == "<Group 'empty' members=0>"


# -- the hub: names, one connection, everyone, encode once, order --------------------------------


def hub_app(hub: Any, handler: Any, **accept: Any) -> Any:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        upgrade = environ.get(ENVIRON_KEY)
        assert upgrade is not None
        upgrade.accept(handler, **accept)
        return []

    return app


@pytest.mark.asyncio
async def test_every_handle_of_a_name_is_the_same_group(start_server: StartServer) -> None:
    from stargate.groups import Hub

    hub = Hub()

    async def member(ws: WebSocket) -> None:
        Group("job:1", hub=hub).add(ws)  # one handle adds ...

    server = await start_server(hub_app(hub, member))
    async with connect(f"ws://127.0.0.1:{server.port}/") as client:
        other = hub.group("job:1")  # ... another one, looked up by name, sends
        await eventually(lambda: len(other) == 1)
        assert hub.groups() == {"job:1": 1}
        other.send("by name")
        hub.send("job:1", "through the hub")
        assert await client.recv() == "by name"
        assert await client.recv() == "through the hub"
        assert len(Group("job:2", hub=hub)) == 0  # another name, another group
        assert len(Group(hub=hub)) == 0 and Group(hub=hub).local  # anonymous: its own
        (member_ws,) = list(other)
        assert member_ws in Group("job:1", hub=hub)
    await eventually(lambda: hub.groups() == {})


@pytest.mark.asyncio
async def test_send_to_one_connection_and_to_everyone(start_server: StartServer) -> None:
    from stargate.groups import Hub

    hub = Hub()
    ids: list[str] = []

    async def handler(ws: WebSocket) -> None:
        if ws.path == "/member":
            hub.group("room").add(ws)
            return
        ids.append(hub.register(ws))  # reachable, but not kept open by the hub
        async for message in ws:
            await ws.send(message)

    server = await start_server(hub_app(hub, handler))
    base = f"ws://127.0.0.1:{server.port}"
    async with connect(base + "/solo") as solo, connect(base + "/member") as member:
        await eventually(lambda: hub.connections == 2 and bool(ids))
        hub.send_to(ids[0], "only you")
        hub.send_all(b"everyone")
        hub.group("room").send("members only")
        assert await solo.recv() == "only you"
        assert await solo.recv() == b"everyone"
        assert await member.recv() == b"everyone"
        assert await member.recv() == "members only"
        await solo.send("echo")
        assert await solo.recv() == "echo"  # nothing else reached solo
    await eventually(lambda: hub.connections == 0)


@pytest.mark.asyncio
async def test_a_broadcast_is_encoded_once_per_frame_family(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stargate.connection import Connection
    from stargate.extensions.permessage_deflate import PerMessageDeflateOffer
    from stargate.groups import Hub

    encoded: list[str | bytes] = []
    original = Connection.encode_shared

    def counting(self: Connection, message: Any) -> bytes:
        encoded.append(message)
        return original(self, message)

    monkeypatch.setattr(Connection, "encode_shared", counting)
    hub = Hub()

    async def member(ws: WebSocket) -> None:
        hub.group("fanout").add(ws)

    offer = PerMessageDeflateOffer(server_no_context_takeover=True)
    server = await start_server(hub_app(hub, member), websocket=WebSocketOptions(compression=offer))
    url = f"ws://127.0.0.1:{server.port}/"
    clients = [await connect(url) for _ in range(5)]  # compressing: one family
    clients += [await connect(url, compression=None) for _ in range(5)]  # plain: another
    try:
        await eventually(lambda: len(hub.group("fanout")) == 10)
        families = {ws.frame_family for ws in hub.group("fanout")}
        assert len(families) == 2
        text = "compressible " * 100
        hub.send("fanout", text)
        for client in clients:
            assert await client.recv() == text
        assert encoded == [text, text]  # once per family, not once per member
    finally:
        for client in clients:
            await client.close()


@pytest.mark.asyncio
async def test_order_per_publisher_from_threads(start_server: StartServer) -> None:
    group = Group("ordered")

    async def member(ws: WebSocket) -> None:
        group.add(ws)

    server = await start_server(group_app(group, member))
    async with (
        connect(f"ws://127.0.0.1:{server.port}/") as a,
        connect(f"ws://127.0.0.1:{server.port}/") as b,
    ):
        await eventually(lambda: len(group) == 2)

        def publish(name: str) -> None:
            for i in range(300):
                group.send(f"{name}:{i}")

        threads = [threading.Thread(target=publish, args=(name,)) for name in "xyz"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for client in (a, b):
            got: dict[str, list[int]] = {"x": [], "y": [], "z": []}
            for _ in range(900):
                name, _, i = str(await asyncio.wait_for(client.recv(), TIMEOUT)).partition(":")
                got[name].append(int(i))
            assert got == {name: list(range(300)) for name in "xyz"}


def test_configure_gives_the_default_hub_a_broker() -> None:
    from stargate.brokers.memory import MemoryBroker
    from stargate.groups import Hub, configure, default_hub, set_default_hub

    previous = default_hub()
    try:
        hub = Hub()
        set_default_hub(hub)
        group = Group("configured")
        assert group.hub is hub
        broker = MemoryBroker("configure-test")
        assert configure(broker) is hub and hub.broker is broker and group.hub.broker is broker
        configure("memory://")
        assert isinstance(hub.broker, MemoryBroker) and hub.broker is not broker
    finally:
        set_default_hub(previous)


@pytest.mark.asyncio
async def test_sends_from_a_thread_share_one_wakeup_and_one_write_per_member(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []  # one per member and frame handed to the members' sends
    original = WebSocket.send_encoded_each

    def counting(members: Collection[WebSocket], frame: bytes, messages: int) -> None:
        writes.extend(len(frame) for _ in members)
        original(members, frame, messages)

    monkeypatch.setattr(WebSocket, "send_encoded_each", staticmethod(counting))
    group = Group("batched")
    joined: list[SyncWebSocket] = []

    def member(ws: SyncWebSocket) -> None:
        group.add(ws)
        group.send("welcome")  # after the add, from the same thread: the member gets it
        joined.append(ws)

    server = await start_server(group_app(group, member))
    async with connect(f"ws://127.0.0.1:{server.port}/") as client:
        assert await client.recv() == "welcome"
        await eventually(lambda: len(group) == 1 and bool(joined))
        writes.clear()
        posted = threading.Event()

        def publish() -> None:
            for i in range(100):
                group.send(f"m{i}")
            group.send(b"x" * 70_000)  # past the batch size: a write of its own
            group.send("last")
            posted.set()

        threading.Thread(target=publish).start()
        posted.wait(TIMEOUT)  # the loop is held while the thread posts: all of it waits
        for i in range(100):
            assert await client.recv() == f"m{i}"
        assert await client.recv() == b"x" * 70_000
        assert await client.recv() == "last"
        assert len(writes) == 3  # 100 messages in one write, then the large one, then "last"
