"""The blocking client (stargate.client.sync): from the main thread and from others, with
the server in a background thread (stargate.testing.run_app)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import stargate
from stargate.client import ConnectionRefused, InvalidStatus, OpenTimeout, SyncClientWebSocket
from stargate.client.sync import background_loop
from stargate.errors import ConnectionClosed
from stargate.events import CloseReceived, TextMessage
from stargate.frames import encode_close_payload, encode_frame
from stargate.protocol import Opcode, ProtocolVersion
from stargate.testing import SyncAppServer, run_app

from .support import app_routes, closed_port, server_events, switching


@pytest.fixture(scope="module")
def server() -> Iterator[SyncAppServer]:
    with run_app(app_routes(), shutdown_timeout=2.0) as running:
        yield running


def test_echo_in_a_with_block(server: SyncAppServer) -> None:
    with stargate.sync_connect(server.url("/echo")) as ws:
        assert isinstance(ws, SyncClientWebSocket)
        assert ws.compression and ws.extensions
        assert ws.response.status == 101
        assert ws.remote_address == ("127.0.0.1", server.port)
        ws.send("text")
        ws.send(b"\x00binary")
        ws.send("x" * 500_000)
        assert ws.receive(timeout=5) == "text"
        assert ws.receive(timeout=5) == b"\x00binary"
        assert ws.receive(timeout=5) == "x" * 500_000
        assert ws.ping(timeout=5) >= 0
        assert repr(ws).startswith("<SyncClientWebSocket")
    assert ws.closed and ws.close_code == 1000


def test_receive_timeout(server: SyncAppServer) -> None:
    with server.connect("/echo") as ws:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.receive(timeout=0.1)
        assert time.monotonic() - started >= 0.09
        ws.send("after the timeout")
        assert ws.receive(timeout=5) == "after the timeout"


def test_iteration_until_the_server_closes(server: SyncAppServer) -> None:
    ws = server.connect("/close", subprotocols=["chat.v1"])
    assert ws.subprotocol == "chat.v1"
    ws.send("4004 the end")
    assert list(ws) == []
    assert (ws.close_code, ws.close_reason) == (4004, "the end")
    with pytest.raises(ConnectionClosed):
        ws.receive()
    with pytest.raises(ConnectionClosed):
        ws.send("too late")
    ws.close()  # nothing left to close


def test_many_threads_at_once(server: SyncAppServer) -> None:
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with server.connect("/echo") as ws:
                for i in range(50):
                    ws.send(f"{n}:{i}")
                for i, message in zip(range(50), ws, strict=False):
                    assert message == f"{n}:{i}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)


def test_one_reader_thread_one_writer_thread(server: SyncAppServer) -> None:
    with server.connect("/echo", max_queue=2) as ws:
        received: list[str | bytes] = []

        def read() -> None:
            for message in ws:
                received.append(message)
                if len(received) == 200:
                    return

        reader = threading.Thread(target=read)
        reader.start()
        for i in range(200):
            ws.send(str(i))
        reader.join(10)
        assert received == [str(i) for i in range(200)]


def test_hixie76(server: SyncAppServer) -> None:
    with server.connect("/echo", version=ProtocolVersion.HIXIE_76) as ws:
        ws.send("legacy")
        assert ws.receive(timeout=5) == "legacy"
        assert ws.version is ProtocolVersion.HIXIE_76


def test_exception_in_the_block_closes_with_1011(server: SyncAppServer) -> None:
    with pytest.raises(KeyError), server.connect("/echo") as ws:
        raise KeyError("boom")
    assert ws.close_code == 1011


def test_errors_are_the_async_clients() -> None:
    with pytest.raises(ConnectionRefused):
        stargate.sync_connect(f"ws://127.0.0.1:{closed_port()}/")


def test_status_from_a_wsgi_app() -> None:
    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])  # type: ignore[operator]
        return [b"log in first"]

    with run_app(app) as server, pytest.raises(InvalidStatus) as info:
        server.connect("/")
    assert info.value.status == 401
    assert info.value.body == b"log in first"


def test_open_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts TCP (in the kernel), never answers
        port = listener.getsockname()[1]
        with pytest.raises(OpenTimeout):
            stargate.sync_connect(f"ws://127.0.0.1:{port}/", open_timeout=0.2)


def test_one_background_loop() -> None:
    assert background_loop() is background_loop()
    assert background_loop().is_running()


@pytest.mark.usefixtures("long_answer_grace")
def test_a_blocking_reader_answers_what_came_before_the_close() -> None:
    """A server sends two messages and its close in one write: the blocking reader still
    takes and answers both before the client's close echo goes out (the same mechanism as
    the async client: the close waits until the reader asks for more)."""
    received = bytearray()

    def serve_once(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            conn.sendall(
                switching(head)
                + encode_frame(Opcode.TEXT, b"one", mask=False)
                + encode_frame(Opcode.TEXT, b"two", mask=False)
                + encode_frame(Opcode.CLOSE, encode_close_payload(1000, "done"), mask=False)
            )
            while chunk := conn.recv(65536):
                received.extend(chunk)
                if any(isinstance(e, CloseReceived) for e in server_events(bytes(received))):
                    break  # the client's close: the server closes TCP (RFC 6455 7.1.1)

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        thread = threading.Thread(target=serve_once, args=(listener,))
        thread.start()
        with stargate.sync_connect(
            f"ws://127.0.0.1:{listener.getsockname()[1]}/", close_timeout=2.0
        ) as ws:
            for message in ws:
                ws.send(f"re: {message!s}")
        thread.join(10)
    events = server_events(bytes(received))
    assert events[:2] == [TextMessage("re: one"), TextMessage("re: two")]
    assert isinstance(events[2], CloseReceived) and events[2].code == 1000
    assert ws.close_code == 1000


def test_ping_with_a_timeout_and_the_connections_addresses(server: SyncAppServer) -> None:
    """``ping()`` returns the round trip; with a ``timeout`` against a server that never
    answers it raises TimeoutError, and the connection stays usable.  ``url`` and the
    addresses of both ends are the connection's."""
    with stargate.sync_connect(server.url("/echo")) as ws:
        assert ws.url == server.url("/echo")
        host, port = ws.local_address or ("", 0)
        assert host == "127.0.0.1" and port not in (0, server.port)
        assert ws.ping(timeout=5) >= 0

    pinged = threading.Event()

    def deaf_server(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            conn.sendall(switching(head))
            conn.recv(65536)  # the ping: never answered
            pinged.set()
            conn.sendall(encode_frame(Opcode.TEXT, b"still here", mask=False))
            conn.recv(65536)  # until the client's close

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        thread = threading.Thread(target=deaf_server, args=(listener,))
        thread.start()
        with stargate.sync_connect(
            f"ws://127.0.0.1:{listener.getsockname()[1]}/", close_timeout=0.5
        ) as ws:
            with pytest.raises(TimeoutError, match="no pong within the timeout"):
                ws.ping(b"anyone?", timeout=0.2)
            assert pinged.wait(5)
            assert ws.receive(timeout=5) == "still here"
        thread.join(10)


def test_a_coroutine_may_read_a_blocking_clients_connection(server: SyncAppServer) -> None:
    """The async connection behind a blocking client (``ws.ws``) read by a coroutine on the
    client's loop wakes for each message (bug: it waited until the connection closed)."""
    with stargate.sync_connect(server.url("/echo")) as ws:
        reading = asyncio.run_coroutine_threadsafe(ws.ws.receive(), background_loop())
        time.sleep(0.05)  # the coroutine waits before the message comes
        ws.send("for the coroutine")
        assert reading.result(5) == "for the coroutine"
