"""The machinery both roles share (stargate.endpoint): the handover seams, large sends,
idle memory, and the WebSocket object end to end.

The handover seams (``attach``, ``feed_data``) run on a real socket pair; the inbox has its
own tests (tests/test_inbox.py).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from stargate.connection import Connection
from stargate.endpoint import SPLIT_SIZE
from stargate.events import Ping, TextMessage
from stargate.handshake import ClientHandshake, Request
from stargate.headers import Headers
from stargate.protocol import Role
from stargate.server import ENVIRON_KEY, Server, ServerConfig, WebSocket, WebSocketOptions
from stargate.server.websocket import WebSocketProtocol

pytestmark = pytest.mark.asyncio

#: Upper bound of every wait: a bug makes a test fail, never hang.
TIMEOUT = 5.0


# -- the handover seams, on a real socket pair ----------------------------------------------


class StandIn(asyncio.Protocol):
    """The protocol that ran the opening handshake, as far as the transport told it."""

    def __init__(self) -> None:
        self.write_paused = False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False


async def connected_pair(high: int) -> tuple[asyncio.Transport, StandIn, socket.socket]:
    """A transport (ours, on a stand-in protocol) and the raw socket of the peer; the
    kernel buffers are small, so what the peer does not read stays in the transport."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    theirs.setblocking(False)
    standin = StandIn()
    transport, _ = await asyncio.get_running_loop().create_connection(lambda: standin, sock=ours)
    transport.set_write_buffer_limits(high=high)
    return transport, standin, theirs


def server_websocket(high: int) -> WebSocket:
    return WebSocket(
        Connection(Role.SERVER),
        Request("GET", "/", Headers([("Host", "localhost")])),
        loop=asyncio.get_running_loop(),
        options=WebSocketOptions(write_high_water=high, ping_interval=None),
    )


async def read_until(sock: socket.socket, marker: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while marker not in data:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), TIMEOUT)
        assert chunk, "the peer's connection ended"
        data += chunk
    return bytes(data)


@pytest.mark.parametrize("told", [True, False])
async def test_attach_takes_over_the_write_pause_of_the_previous_protocol(told: bool) -> None:
    """A transport tells only changes: a pause told to the handshake's protocol is never
    told to the WebSocket.  ``attach(writing_paused=...)`` carries it over; without it a
    send would not wait (and reading would go on) although the peer reads nothing."""
    high = 16 * 1024
    transport, standin, theirs = await connected_pair(high)
    transport.write(b"h" * (1024 * 1024))  # the peer reads nothing yet
    assert standin.write_paused
    ws = server_websocket(high)
    transport.set_protocol(WebSocketProtocol(ws))
    ws.attach(transport, writing_paused=standin.write_paused if told else False)
    await asyncio.sleep(0.05)
    send = asyncio.create_task(ws.send("after the handover"))
    await asyncio.sleep(0.05)
    if not told:
        assert send.done() and transport.is_reading()  # the pause was lost
        await send
    else:
        assert not send.done()  # waits: the transport is above its high-water mark
        assert not transport.is_reading()  # and nothing more is read meanwhile
        await read_until(theirs, b"after the handover")  # the peer reads at last
        await asyncio.wait_for(send, TIMEOUT)
        await asyncio.sleep(0)
        assert transport.is_reading()
    transport.abort()
    theirs.close()
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


async def test_feed_data_delivers_frames_that_came_with_the_handshake() -> None:
    transport, _, theirs = await connected_pair(64 * 1024)
    ws = server_websocket(64 * 1024)
    transport.set_protocol(WebSocketProtocol(ws))
    ws.attach(transport)
    client = Connection(Role.CLIENT)
    ws.feed_data(client.encode_message("early") + client.encode_message(b"bird"))
    assert await asyncio.wait_for(ws.receive(), TIMEOUT) == "early"
    assert await asyncio.wait_for(ws.receive(), TIMEOUT) == b"bird"
    assert ws.loop is asyncio.get_running_loop()
    ws.send_encoded(ws.encode_shared("shared"))  # a group's pre-encoded send
    data = await read_until(theirs, b"shared")
    assert client.receive_data(data) == [TextMessage("shared")]
    transport.abort()
    theirs.close()
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


class Recording(asyncio.Transport):
    """A transport that keeps what is written, call by call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[bytes]] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.calls.append([bytes(data)])

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.calls.append([bytes(data) for data in list_of_data])

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


@pytest.mark.parametrize("kind", [str, bytes])
async def test_a_large_message_is_written_as_header_and_payload(kind: type) -> None:
    """From SPLIT_SIZE on, a message goes out as two buffers in one call (no copy of its
    payload into a frame); below, as one frame.  Both are the same frame on the wire."""
    ws = server_websocket(64 * 1024)
    transport = Recording()
    ws.attach(transport)
    small = kind("s" * 100) if kind is str else b"s" * 100
    large = kind("L" * SPLIT_SIZE) if kind is str else b"L" * SPLIT_SIZE
    await ws.send(small)
    await ws.send(large)
    assert [len(call) for call in transport.calls] == [1, 2]
    header, payload = transport.calls[1]
    assert len(payload) == SPLIT_SIZE and len(header) == 4  # 126 + 16-bit length
    client = Connection(Role.CLIENT)
    wire = b"".join(b"".join(call) for call in transport.calls)
    assert [event.data for event in client.receive_data(wire)] == [small, large]  # type: ignore[union-attr]
    assert ws.messages_out == 2 and ws.bytes_out == len(wire)


async def test_an_idle_connection_gives_back_memory_at_the_keepalive_tick() -> None:
    """A keepalive interval without a message either way releases what the connection
    need not hold (a deflate zlib state), though the peer answered our ping (every peer
    does); a busy one keeps it."""
    released: list[float] = []

    class Counting(Connection):
        def release_memory(self) -> None:
            released.append(asyncio.get_running_loop().time())
            super().release_memory()

    ws = WebSocket(
        Counting(Role.SERVER),
        Request("GET", "/", Headers([("Host", "localhost")])),
        loop=asyncio.get_running_loop(),
        options=WebSocketOptions(ping_interval=3600, ping_timeout=None),
    )
    transport = Recording()
    ws.attach(transport)
    # The ticks by hand: the test is about what each sees, not about the timer.
    ws._keepalive_ping()  # the first tick: nothing known yet about the interval before
    assert released == []
    client = Connection(Role.CLIENT)
    (ping,) = [call for call in transport.calls if call[0][:1] == b"\x89"]
    client.receive_data(ping[0])  # the client answers our ping with its pong
    ws.feed_data(client.data_to_send())
    ws._keepalive_ping()  # a whole interval with pings and pongs only: idle
    assert len(released) == 1
    ws.feed_data(client.encode_message("busy"))
    ws._keepalive_ping()  # a message came in the interval: busy
    assert len(released) == 1
    ws.send_nowait("busy")
    ws._keepalive_ping()  # one went out: busy too
    assert len(released) == 1
    ws._keepalive_ping()
    assert len(released) == 2


async def test_a_ping_given_up_on_leaves_no_waiter() -> None:
    """A ping whose wait is cancelled (a timeout around it, the sync client's ``timeout=``)
    takes its pong waiter along: the same payload may be pinged again, and waiters do not
    pile up with every unanswered ping."""
    ws = WebSocket(
        Connection(Role.SERVER),
        Request("GET", "/", Headers([("Host", "localhost")])),
        loop=asyncio.get_running_loop(),
        options=WebSocketOptions(ping_interval=None),
    )
    ws.attach(Recording())
    for _ in range(3):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.ping(b"hb"), 0.01)
    assert not ws._pong_waiters
    pinged = asyncio.ensure_future(ws.ping(b"hb"))
    await asyncio.sleep(0)
    client = Connection(Role.CLIENT)
    client.send_pong(b"hb")
    ws.feed_data(client.data_to_send())
    assert await asyncio.wait_for(pinged, TIMEOUT) >= 0
    assert not ws._pong_waiters


# -- the WebSocket object, end to end on a real socket ---------------------------------------


async def eventually(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def serve_one(handler: Any, **options: Any) -> tuple[Server, int]:
    """A server whose every upgrade goes to ``handler``, and its port."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ[ENVIRON_KEY].accept(handler)
        return []

    server = Server(wsgi, ServerConfig(port=0, websocket=WebSocketOptions(**options)))
    await server.start()
    return server, server.port


async def raw_websocket(port: int, *frames: bytes) -> tuple[Connection, socket.socket]:
    """A client socket, its handshake sent with ``frames`` in the same write."""
    handshake = ClientHandshake(f"127.0.0.1:{port}", "/")
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_sendall(
        sock, handshake.request_bytes() + b"".join(frames)
    )
    while True:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1), TIMEOUT)
        assert data, "closed during the handshake"
        if handshake.receive(data) is not None:
            return Connection(Role.CLIENT), sock


async def test_a_ping_with_a_payload_already_waiting_is_refused() -> None:
    """Pongs are matched to pings by payload (RFC 6455 5.5.3): a second ping with the
    payload of one still unanswered is refused with ValueError, not silently merged."""
    outcome: list[str] = []

    async def handler(ws: WebSocket) -> None:
        first = asyncio.ensure_future(ws.ping(b"same"))
        await asyncio.sleep(0)
        try:
            await ws.ping(b"same")
        except ValueError as exc:
            outcome.append(str(exc))
        await ws.send("asked")
        outcome.append(f"round trip {await first >= 0}")

    server, port = await serve_one(handler)
    try:
        client, sock = await raw_websocket(port)
        loop = asyncio.get_running_loop()
        events: list[Any] = []
        while not any(isinstance(e, TextMessage) for e in events):
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), TIMEOUT)
            events += client.receive_data(data)
        (ping,) = [e for e in events if isinstance(e, Ping)]
        assert ping.payload == b"same"
        client.send_pong(ping.payload)
        await loop.sock_sendall(sock, client.data_to_send())
        await eventually(lambda: len(outcome) == 2)
        assert outcome == [
            "a ping with this payload is already waiting for its pong",
            "round trip True",
        ]
        sock.close()
    finally:
        await server.shutdown(timeout=2.0)


@pytest.mark.usefixtures("long_answer_grace")
async def test_a_peer_gone_while_its_close_is_held_is_let_go() -> None:
    """Messages and the close in one read hold our close echo for the handler; a peer that
    vanishes meanwhile ends the connection at once (the held close and its timer go), not
    when the grace (a minute here) runs out."""
    closed = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        await ws.wait_closed()  # never reads
        closed.set()

    server, port = await serve_one(handler)
    try:
        peer = Connection(Role.CLIENT)
        peer.send("unread")
        peer.send_close(1000, "")
        _, sock = await raw_websocket(port, peer.data_to_send())
        await eventually(lambda: bool(server.websockets))
        (ws,) = server.websockets
        await eventually(lambda: ws.inbox and ws._held is not None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset: gone without a word
        await asyncio.wait_for(closed.wait(), TIMEOUT)
        assert ws._held is None and not server.websockets
    finally:
        await server.shutdown(timeout=2.0)


async def test_frames_with_the_handshake_past_max_queue_pause_reading_at_once() -> None:
    """A client that sends more frames than ``max_queue`` with its handshake: reading is
    paused as soon as the server takes over, and the handler gets them all, in order."""
    release = asyncio.Event()
    got: list[str | bytes] = []

    async def handler(ws: WebSocket) -> None:
        await release.wait()
        for _ in range(6):
            got.append(await ws.receive())

    server, port = await serve_one(handler, max_queue=2)
    try:
        peer = Connection(Role.CLIENT)
        for i in range(6):
            peer.send(f"m{i}")
        _, sock = await raw_websocket(port, peer.data_to_send())
        await eventually(lambda: bool(server.websockets))
        (ws,) = server.websockets
        await eventually(lambda: ws.inbox.paused)
        release.set()
        await eventually(lambda: len(got) == 6)
        assert got == [f"m{i}" for i in range(6)]
        sock.close()
    finally:
        await server.shutdown(timeout=2.0)
