"""The asyncio client's WebSocket (stargate.client.websocket), end to end.

Interoperability is checked against a server nobody here wrote (the ``websockets`` library),
the legacy hixie-76 mode against our own server, and the behaviours well-behaved servers do
not exercise (no pong, no close answer, a protocol violation, a message and a close in one
write) against scripted fake servers.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

import stargate
from stargate.client import websocket as client_websocket
from stargate.connection import Connection
from stargate.errors import ConnectionClosed
from stargate.events import CloseReceived, Ping, Pong, TextMessage
from stargate.frames import encode_close_payload, encode_frame
from stargate.limits import Limits, MiB
from stargate.protocol import Opcode, ProtocolVersion, Role
from stargate.testing import AppServer

from .support import (
    TIMEOUT,
    counting_proxy,
    fake_server,
    read_head,
    read_until_eof,
    server_events,
    switching,
)

# -- against the websockets library's server ---------------------------------------------------


@dataclass
class Peer:
    """A websockets server; ``closes`` records (path, code, reason) of ended connections."""

    port: int
    closes: list[tuple[str, int | None, str | None]] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


async def peer_handler(peer: Peer, ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else ""
    peer.extensions.extend(type(e).__name__ for e in ws.protocol.extensions)
    try:
        if path == "/echo":
            async for message in ws:
                await ws.send(message)
        elif path == "/fragments":
            await ws.send(iter(["fra", "gmen", "ted é"]))
            await ws.send(iter([b"\x00\x01", b"", b"\x02" * 70000]))
            await ws.wait_closed()
        elif path == "/close":
            code, _, reason = str(await ws.recv()).partition(" ")
            await ws.close(int(code), reason)
        elif path == "/ping":
            waiter = await ws.ping(b"from server")
            await asyncio.wait_for(waiter, TIMEOUT)
            await ws.send("pong received")
            await ws.wait_closed()
        elif path == "/big":
            await ws.send(b"x" * (2 * MiB))
            await ws.wait_closed()
        elif path == "/subprotocol":
            await ws.send(str(ws.subprotocol))
            await ws.wait_closed()
    finally:
        peer.closes.append((path, ws.close_code, ws.close_reason))


def select_subprotocol(ws: ServerConnection, offered: Sequence[str]) -> Subprotocol | None:
    """The server's preference among those offered; none is fine too."""
    for ours in ("b.v1", "a.v1"):
        if ours in offered:
            return Subprotocol(ours)
    return None


@pytest_asyncio.fixture
async def peer() -> AsyncIterator[Peer]:
    peer = Peer(0)

    async def handler(ws: ServerConnection) -> None:
        await peer_handler(peer, ws)

    async with serve(
        handler,
        "127.0.0.1",
        0,
        select_subprotocol=select_subprotocol,
        ping_interval=None,
        max_size=4 * MiB,
    ) as server:
        peer.port = server.sockets[0].getsockname()[1]
        yield peer


async def wait_for_close(peer: Peer, path: str) -> tuple[str, int | None, str | None]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for entry in peer.closes:
            if entry[0] == path:
                return entry
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} did not close")


async def test_websockets_text_binary_large(peer: Peer) -> None:
    messages: list[str | bytes] = [
        "hello",
        "",
        "ünïcødé ✓ 🚀",
        b"",
        b"\x00\xff" * 10,
        bytes(range(256)) * 3500,  # 896000 bytes, several reads
        "x" * 900_000,
    ]
    async with stargate.connect(peer.url("/echo")) as ws:
        for message in messages:
            await ws.send(message)
        for message in messages:
            assert await ws.receive() == message
        await ws.send(bytearray(b"bytearray"))
        await ws.send(memoryview(b"memoryview"))
        assert await ws.receive() == b"bytearray"
        assert await ws.receive() == b"memoryview"
    assert ws.close_code == 1000
    assert await wait_for_close(peer, "/echo") == ("/echo", 1000, "")


async def test_websockets_fragmented_messages(peer: Peer) -> None:
    async with stargate.connect(peer.url("/fragments")) as ws:
        assert await ws.receive() == "fragmented é"
        assert await ws.receive() == b"\x00\x01" + b"\x02" * 70000


async def test_websockets_compression_negotiated_and_used(peer: Peer) -> None:
    text = "All work and no play makes Jack a dull boy. " * 20_000  # 880 KB
    async with counting_proxy(peer.port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/echo"
        async with stargate.connect(url) as ws:
            assert ws.compression
            assert ws.extensions is not None and "permessage-deflate" in ws.extensions
            for _ in range(3):
                await ws.send(text)
                assert await ws.receive() == text
        assert "PerMessageDeflate" in peer.extensions
        # Three messages of 880 KB each way, under 20 KB on the wire each way.
        assert proxy.upstream < 20_000, proxy
        assert proxy.downstream < 20_000, proxy
    async with counting_proxy(peer.port) as plain:
        url = f"ws://127.0.0.1:{plain.port}/echo"
        async with stargate.connect(url, compression=None) as ws:
            assert not ws.compression
            await ws.send(text)
            assert await ws.receive() == text
        assert plain.upstream > len(text) and plain.downstream > len(text)


async def test_websockets_ping_both_ways(peer: Peer) -> None:
    async with stargate.connect(peer.url("/ping")) as ws:
        rtt = await ws.ping()
        assert 0 <= rtt < TIMEOUT
        assert await ws.ping(b"payload") >= 0
        # The server's ping is answered by the core, whatever the application does.
        assert await ws.receive() == "pong received"


async def test_websockets_close_codes_both_ways(peer: Peer) -> None:
    ws = await stargate.connect(peer.url("/close"))
    await ws.send("4001 server says bye")
    with pytest.raises(ConnectionClosed) as info:
        await ws.receive()
    assert (info.value.code, info.value.reason) == (4001, "server says bye")
    assert (ws.close_code, ws.close_reason) == (4001, "server says bye")
    assert ws.closed

    ws = await stargate.connect(peer.url("/echo"))
    await ws.close(4002, "client says bye")
    assert (ws.close_code, ws.close_reason) == (4002, "client says bye")
    assert await wait_for_close(peer, "/echo") == ("/echo", 4002, "client says bye")
    with pytest.raises(ConnectionClosed):
        await ws.send("too late")
    await ws.close()  # closing again does nothing


async def test_websockets_exception_in_block_closes_with_1011(peer: Peer) -> None:
    with pytest.raises(ZeroDivisionError):
        async with stargate.connect(peer.url("/echo")):
            1 / 0  # noqa: B018
    assert await wait_for_close(peer, "/echo") == ("/echo", 1011, "internal error")


async def test_websockets_subprotocols(peer: Peer) -> None:
    async with stargate.connect(peer.url("/subprotocol"), subprotocols=["a.v1", "b.v1"]) as ws:
        assert ws.subprotocol == "b.v1"
        assert await ws.receive() == ws.subprotocol
    async with stargate.connect(peer.url("/subprotocol"), subprotocols=["a.v1"]) as ws:
        assert ws.subprotocol == "a.v1"
        assert await ws.receive() == "a.v1"


async def test_websockets_message_over_the_limit(peer: Peer) -> None:
    ws = await stargate.connect(peer.url("/big"))
    with pytest.raises(ConnectionClosed) as info:
        await ws.receive()
    assert info.value.code == 1009
    assert await wait_for_close(peer, "/big") == ("/big", 1009, info.value.reason)
    ws = await stargate.connect(peer.url("/big"), limits=Limits(max_message_size=4 * MiB))
    assert len(await ws.receive()) == 2 * MiB
    await ws.close()


# -- against our own server ----------------------------------------------------------------------


async def test_iteration_ends_when_the_server_closes(server: AppServer) -> None:
    ws = await server.connect("/close")
    await ws.send("4003 done")
    received = [message async for message in ws]
    assert received == []
    assert ws.close_code == 4003


async def test_hixie76_against_our_server(server: AppServer) -> None:
    async with server.connect("/echo", version=ProtocolVersion.HIXIE_76) as ws:
        assert ws.version is ProtocolVersion.HIXIE_76
        assert not ws.compression
        for text in ("hello", "", "ünïcødé ✓", "x" * 100_000):
            await ws.send(text)
            assert await ws.receive() == text
        with pytest.raises(TypeError):
            await ws.send(b"binary")
        with pytest.raises(TypeError):
            await ws.ping()
    assert ws.closed
    assert ws.close_code == 1005  # the hixie-76 closing frame carries no code

    origin = server.url(scheme="http")[:-1]
    async with server.connect(
        "/echo", version=ProtocolVersion.HIXIE_76, subprotocols=["chat.v1"], origin=origin
    ) as ws:
        assert ws.subprotocol == "chat.v1"
        await ws.send("with a subprotocol")
        assert await ws.receive() == "with a subprotocol"

    ws = await server.connect("/close", version=ProtocolVersion.HIXIE_76)
    await ws.send("1000 bye")
    assert [m async for m in ws] == []
    assert ws.closed


async def test_hybi_drafts_against_our_server(server: AppServer) -> None:
    origin = server.url(scheme="http")[:-1]
    for version in (ProtocolVersion.HYBI_07, ProtocolVersion.HYBI_08):
        async with server.connect("/echo", version=version, origin=origin) as ws:
            await ws.send("draft")
            assert await ws.receive() == "draft"


async def test_keepalive_pings_answered(server: AppServer) -> None:
    async with server.connect("/echo", ping_interval=0.05, ping_timeout=1.0) as ws:
        await asyncio.sleep(2.5)  # many pings, each past its timeout if left unanswered
        assert not ws.closed
        await ws.send("still here")
        assert await ws.receive() == "still here"


async def test_reading_pauses_when_the_queue_is_full(server: AppServer) -> None:
    async with server.connect("/echo", max_queue=4) as ws:
        for i in range(100):
            await ws.send(f"message {i}")
        deadline = time.monotonic() + TIMEOUT
        while not ws.inbox.paused and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert ws.inbox.paused
        await asyncio.sleep(0.1)
        assert 4 <= len(ws.inbox) < 100  # what came in the reads before the pause
        for i in range(100):
            assert await ws.receive() == f"message {i}"
        assert not ws.inbox.paused


async def test_messages_before_the_close_are_delivered(server: AppServer) -> None:
    ws = await server.connect("/echo")
    for i in range(5):
        await ws.send(str(i))
    deadline = time.monotonic() + TIMEOUT
    while len(ws.inbox) < 5 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await ws.close()
    # The echoes that arrived before the server's close frame are still there.
    assert [m async for m in ws] == ["0", "1", "2", "3", "4"]


# -- against scripted servers --------------------------------------------------------------------


def frame(opcode: Opcode, payload: bytes, *, mask: bool = False) -> bytes:
    return encode_frame(opcode, payload, mask=mask)


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(Opcode.CLOSE, encode_close_payload(code, reason))


async def test_more_messages_than_max_queue_with_the_close_are_all_delivered() -> None:
    """100 messages and the server's close in one read: the application that reads late
    still gets all 100, then the close.  They are in memory already (a read's messages are
    all queued, whatever ``max_queue``); the bound on messages after a close began is for
    what the peer sends later.  It used to drop all but 32 and report a clean close."""
    burst = b"".join(frame(Opcode.TEXT, f"m{i}".encode()) for i in range(100))

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        writer.write(burst + close_frame(1000))
        await read_until_eof(reader, bytearray())

    async with fake_server(script) as fake:
        ws = await stargate.connect(fake.url(), max_queue=32, close_timeout=0.5)
        await asyncio.sleep(0.2)  # the whole burst and the close are read by now
        assert [m async for m in ws] == [f"m{i}" for i in range(100)]
        assert ws.close_code == 1000


async def test_keepalive_timeout_closes_with_1011() -> None:
    received = bytearray()

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        await read_until_eof(reader, received)  # never a pong, never a close

    async with fake_server(deaf) as fake:
        ws = await stargate.connect(
            fake.url(), ping_interval=0.05, ping_timeout=0.1, close_timeout=0.2
        )
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    events = server_events(bytes(received))
    assert isinstance(events[0], Ping)
    assert CloseReceived(1011, "keepalive ping timeout") in events
    assert ws.close_code == 1006  # the closing handshake never completed


async def test_close_timeout_when_the_server_does_not_answer() -> None:
    received = bytearray()

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        await read_until_eof(reader, received)

    async with fake_server(deaf) as fake:
        ws = await stargate.connect(fake.url(), close_timeout=0.2)
        started = time.monotonic()
        await ws.close(1000, "bye")
        assert 0.15 < time.monotonic() - started < TIMEOUT
    assert server_events(bytes(received)) == [CloseReceived(1000, "bye")]
    assert ws.close_code == 1006


async def test_client_waits_for_the_server_to_close_tcp() -> None:
    async def lingering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        await reader.read(2 + 4 + 2)  # the client's close frame (masked, code only)
        writer.write(close_frame(1000))  # answered, but TCP is left open
        await reader.read()

    async with fake_server(lingering) as fake:
        ws = await stargate.connect(fake.url(), close_timeout=0.2)
        started = time.monotonic()
        await ws.close()
        assert 0.15 < time.monotonic() - started < TIMEOUT
    assert ws.close_code == 1000  # the closing handshake did complete


async def test_protocol_violation_fails_with_1002() -> None:
    received = bytearray()

    async def rogue(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        writer.write(frame(Opcode.TEXT, b"masked by a server", mask=True))
        await reader.read(64)
        writer.close()
        await read_until_eof(reader, received)

    async with fake_server(rogue) as fake:
        ws = await stargate.connect(fake.url())
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
    assert info.value.code == 1002
    assert ws.close_code == 1002


async def test_a_protocol_violation_is_bounded_by_close_timeout() -> None:
    """The client failed the connection (1002) and waits for the server's close: a server
    that never answers, nor closes TCP, held it open for good."""
    received = bytearray()

    async def rogue(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        writer.write(bytes([0x83, 0x00]))  # a reserved opcode
        await read_until_eof(reader, received)  # never a close, never the end of TCP

    async with fake_server(rogue) as fake:
        ws = await stargate.connect(fake.url(), close_timeout=0.3, ping_interval=None)
        started = time.monotonic()
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert time.monotonic() - started < TIMEOUT / 2
    assert CloseReceived(1002, "reserved opcode 0x3") in server_events(bytes(received))


@pytest.mark.usefixtures("long_answer_grace")
@pytest.mark.parametrize("ending", ["close", "violation"])
async def test_messages_before_a_close_can_still_be_answered(ending: str) -> None:
    """A ping, messages and the server's close (or a bad frame) in one write: the pong
    goes out at once, and the echo of the messages before the close frame that answers,
    when the application reads right away."""
    received = bytearray()
    last = close_frame(1000, "done") if ending == "close" else bytes([0x83, 0x00])  # opcode 3

    async def burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        ping = frame(Opcode.PING, b"p")
        writer.write(ping + frame(Opcode.TEXT, b"one") + frame(Opcode.TEXT, b"two") + last)
        await read_until_eof(reader, received)

    async with fake_server(burst) as fake:
        ws = await stargate.connect(fake.url(), close_timeout=0.3)
        async for message in ws:
            await ws.send(message)
    events = server_events(bytes(received))
    assert events[:3] == [Pong(b"p"), TextMessage("one"), TextMessage("two")]
    assert isinstance(events[3], CloseReceived)
    assert events[3].code == (1000 if ending == "close" else 1002)


async def test_close_is_held_at_most_the_answer_grace() -> None:
    received = bytearray()
    arrived = asyncio.Event()

    async def burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        writer.write(frame(Opcode.TEXT, b"unread") + close_frame(1000))
        await reader.read(2 + 4 + 2)
        arrived.set()
        await read_until_eof(reader, received)

    async with fake_server(burst) as fake:
        started = time.monotonic()  # the grace starts inside connect(): the burst came with the 101
        ws = await stargate.connect(fake.url(), close_timeout=0.3)
        await asyncio.wait_for(arrived.wait(), TIMEOUT)
        held = time.monotonic() - started
    assert client_websocket.ANSWER_GRACE * 0.8 < held < TIMEOUT
    # The message is still readable, then the connection reports the server's close.
    assert await ws.receive() == "unread"
    with pytest.raises(ConnectionClosed):
        await ws.receive()


async def test_send_waits_while_the_server_does_not_read() -> None:
    async def not_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        await asyncio.sleep(TIMEOUT)

    async with fake_server(not_reading) as fake:
        ws = await stargate.connect(fake.url(), write_high_water=16 * 1024, close_timeout=0.1)
        chunk = b"\x00" * (256 * 1024)
        for _ in range(64):  # at most 16 MiB: kernel buffers are smaller than that
            try:
                await asyncio.wait_for(ws.send(chunk), 0.3)
            except TimeoutError:
                break
        else:
            raise AssertionError("send never waited")
        await ws.close()
    assert ws.closed


async def test_a_server_that_pings_and_never_reads_costs_a_bounded_buffer() -> None:
    """The client owes a pong per ping: against a server that floods pings and never reads,
    reading pauses once the transport is above ``write_high_water``, so what the client
    buffers stays under ``write_high_water`` plus the pongs of one read.  One read carries at
    most ``max_size`` bytes (asyncio's socket transport: 256 KiB); each 127-byte ping of this
    flood is answered by a 131-byte pong (a client frame carries a 4-byte mask key)."""
    ping = frame(Opcode.PING, b"p" * 125)
    chunk = ping * (65536 // len(ping))
    flood_bytes = 32 * MiB
    sent = [0]
    stalled = asyncio.Event()
    done = asyncio.Event()

    async def flooding(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        while sent[0] < flood_bytes:
            writer.write(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except TimeoutError:
                break  # the client stopped reading
            sent[0] += len(chunk)
        stalled.set()
        await done.wait()  # never reads: the pongs stay with the client
        writer.transport.abort()

    # A listening socket with a small receive buffer: the accepted one inherits it.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(flooding, sock=listener)
    try:
        ws = await stargate.connect(
            f"ws://127.0.0.1:{listener.getsockname()[1]}/", close_timeout=0.2, ping_interval=None
        )
        await asyncio.wait_for(stalled.wait(), TIMEOUT)
        transport = ws._transport
        assert transport is not None
        buffered = transport.get_write_buffer_size()
        one_read = transport.max_size  # type: ignore[attr-defined]
        bound = 64 * 1024 + one_read * 131 // 127 + 131
        assert buffered <= bound, f"{buffered} bytes buffered for a server that never reads"
        assert buffered >= 64 * 1024  # the high-water mark was reached, not just obeyed
        assert sent[0] < flood_bytes
        assert not transport.is_reading()
        ws.abort()
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_a_waiting_send_goes_on_once_the_server_reads() -> None:
    """Flow control both ways: a send that waits while the server does not read completes
    once it reads again, and every byte arrives."""
    reading = asyncio.Event()
    received = bytearray()

    async def late_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        await reading.wait()
        await read_until_eof(reader, received)

    async with fake_server(late_reader) as fake:
        ws = await stargate.connect(fake.url(), write_high_water=16 * 1024, close_timeout=0.5)
        chunk = b"\x01" * (256 * 1024)
        sends = 0
        for _ in range(64):  # at most 16 MiB: kernel buffers are smaller than that
            sending = asyncio.ensure_future(ws.send(chunk))
            done, _ = await asyncio.wait([sending], timeout=0.3)
            sends += 1
            if not done:
                break
        else:
            raise AssertionError("send never waited")
        reading.set()
        await asyncio.wait_for(sending, TIMEOUT)  # resumed, not failed
        ws.send_nowait("and one without waiting")
        await ws.close()
    events = server_events(bytes(received))
    messages = [event for event in events if not isinstance(event, CloseReceived)]
    assert len(messages) == sends + 1
    assert messages[-1] == TextMessage("and one without waiting")


async def test_the_connection_is_its_own_context_manager(server: AppServer) -> None:
    """``async with await stargate.connect(url) as ws``: closed with 1000 at the end, and a
    large message after the close raises ConnectionClosed rather than writing."""
    async with await stargate.connect(server.url("/echo")) as ws:
        await ws.send("hi")
        assert await ws.receive() == "hi"
    assert ws.closed and ws.close_code == 1000
    with pytest.raises(ConnectionClosed):
        await ws.send(b"\x00" * (1024 * 1024))
    with pytest.raises(ConnectionClosed):
        ws.send_nowait("small")


async def test_one_pong_answers_every_earlier_ping() -> None:
    """RFC 6455 5.5.3: a server may answer only the latest of several pings; its pong
    completes the earlier pings too.  An unsolicited pong (a heartbeat) is ignored."""

    async def lazy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        writer.write(frame(Opcode.PONG, b"heartbeat") + frame(Opcode.TEXT, b"hello"))
        pings: list[bytes] = []
        connection = Connection(Role.SERVER)
        while len(pings) < 3:
            data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
            assert data
            pings += [e.payload for e in connection.receive_data(data) if isinstance(e, Ping)]
        writer.write(frame(Opcode.PONG, pings[-1]))  # only the last one
        await read_until_eof(reader, bytearray())

    async with fake_server(lazy) as fake, stargate.connect(fake.url(), close_timeout=0.3) as ws:
        assert await ws.receive() == "hello"
        waits = [asyncio.ensure_future(ws.ping(payload)) for payload in (b"1", b"2", b"3")]
        latencies = await asyncio.wait_for(asyncio.gather(*waits), TIMEOUT)
        assert all(latency >= 0 for latency in latencies)


async def test_closing_while_the_servers_close_is_held_sends_its_echo() -> None:
    """Messages and the server's close in one write hold the client's echo until the
    application has read them; closing instead of reading sends that echo (RFC 6455
    5.5.1: the code received), not a close of its own."""
    received = bytearray()

    async def burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_head(reader)))
        writer.write(frame(Opcode.TEXT, b"unread") + close_frame(4000, "server done"))
        await read_until_eof(reader, received)

    async with fake_server(burst) as fake:
        ws = await stargate.connect(fake.url(), close_timeout=0.3)
        await asyncio.sleep(0.05)  # the burst is in
        await ws.close(4001, "client done")
    (event,) = server_events(bytes(received))
    assert isinstance(event, CloseReceived) and event.code == 4000
    assert ws.close_code == 4000


async def test_a_hixie75_client_closes_tcp_itself(server: AppServer) -> None:
    """hixie-75 has no closing handshake: the client's close ends the TCP connection at once
    and the server sees it go."""
    ws = await server.connect("/echo", version=ProtocolVersion.HIXIE_75)
    await ws.send("old times")
    assert await ws.receive() == "old times"
    await asyncio.wait_for(ws.close(), TIMEOUT)
    assert ws.closed
    deadline = time.monotonic() + TIMEOUT
    while server.server.websockets and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not server.server.websockets


async def test_compressed_messages_are_held_to_max_queue_within_one_read() -> None:
    """The client's twin of the server's test: a server (websockets, deflating) sends 64
    messages of 1 MiB that compress to about 1 KiB each to a client that does not read;
    the client inflates and queues no more than max_queue (plus a slice's worth)."""
    messages = [bytes([n]) * MiB for n in range(64)]

    async def burst(ws: ServerConnection) -> None:
        for message in messages:
            await ws.send(message)
        await ws.wait_closed()

    async with serve(burst, "127.0.0.1", 0, ping_interval=None, compression="deflate") as server:
        port = server.sockets[0].getsockname()[1]
        ws = await stargate.connect(
            f"ws://127.0.0.1:{port}/", max_queue=4, limits=Limits(max_message_size=MiB)
        )
        async with ws:
            deadline = time.monotonic() + TIMEOUT
            while not ws.inbox.paused:
                assert time.monotonic() < deadline, "reading never paused"
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # what else came stays compressed
            assert len(ws.inbox) <= 4 + 4
            assert [await ws.receive() for _ in messages] == messages
