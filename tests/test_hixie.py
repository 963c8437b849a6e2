"""Tests of the hixie-75/76 framing: stargate.hixie and a Connection of those versions.

draft-hixie-thewebsocketprotocol-76 sections 4.2 and 5.3: text is ``0x00 <utf-8> 0xFF``; a
frame type with the high bit set carries a length in 7-bit groups and is discarded; for
hixie-76 ``0xFF 0x00`` is the closing handshake, for hixie-75 an empty frame to discard.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stargate.connection import Connection, ConnectionState
from stargate.errors import ConnectionClosed, InvalidPayload, MessageTooBig, ProtocolError
from stargate.events import (
    CloseReceived,
    ConnectionLost,
    Event,
    ProtocolViolation,
    TextMessage,
)
from stargate.hixie import CLOSING_FRAME, HixieParser, encode_text
from stargate.limits import Limits, MiB
from stargate.protocol import ProtocolVersion, Role

HIXIE_75, HIXIE_76 = ProtocolVersion.HIXIE_75, ProtocolVersion.HIXIE_76
TEXT = "\u03ba\u1f79\u03c3\u03bc\u03b5 \u20ac \U0001d11e"


def splits(data: bytes) -> list[list[bytes]]:
    """``data`` whole, split in two at every position, and one byte at a time."""
    ways = [[data]]
    ways += [[data[:i], data[i:]] for i in range(1, len(data))]
    ways.append([data[i : i + 1] for i in range(len(data))])
    return ways


def parse(data: Sequence[bytes], *, closing_frame: bool = True, limit: int = MiB) -> list[Event]:
    parser = HixieParser(limit, closing_frame=closing_frame)
    events: list[Event] = []
    for chunk in data:
        parser.feed(chunk, events)
    return events


# --- the parser -----------------------------------------------------------------------------

BOTH = [True, False]

PARSES = [
    ("text", b"\x00Hello\xff", BOTH, [TextMessage("Hello")]),
    ("empty", b"\x00\xff", BOTH, [TextMessage("")]),
    ("utf8", b"\x00" + TEXT.encode() + b"\xff", BOTH, [TextMessage(TEXT)]),
    (
        "several",
        b"\x00a\xff\x00b\xff\x00\xff\x00cd\xff",
        BOTH,
        [TextMessage("a"), TextMessage("b"), TextMessage(""), TextMessage("cd")],
    ),
    ("incomplete", b"\x00Hel", BOTH, []),
    ("complete-then-incomplete", b"\x00a\xff\x00b", BOTH, [TextMessage("a")]),
    # Other sentinel frame types (0x01-0x7F): read to 0xFF and discarded.
    ("other-sentinel-type", b"\x01junk\xff\x7f\xff\x00a\xff", BOTH, [TextMessage("a")]),
    # Length-prefixed frames: read and discarded.
    ("length-prefixed", b"\x80\x03abc\x00a\xff", BOTH, [TextMessage("a")]),
    ("length-prefixed-empty", b"\x80\x00\x00a\xff", BOTH, [TextMessage("a")]),
    (
        "length-two-groups",  # 0x81 0x01 = 1 * 128 + 1
        b"\x80\x81\x01" + b"\xff" * 129 + b"\x00a\xff",
        BOTH,
        [TextMessage("a")],
    ),
    (
        "length-three-groups",  # 0x81 0x80 0x00 = 1 * 128 * 128
        b"\xfe\x81\x80\x00" + b"\x00" * 16384 + b"\x00a\xff",
        BOTH,
        [TextMessage("a")],
    ),
    ("ff-with-length", b"\xff\x02\x00\xff\x00a\xff", BOTH, [TextMessage("a")]),
    ("length-prefixed-incomplete", b"\x80\x05abc", BOTH, []),
    # 0xFF 0x00: hixie-76 closes (and stops parsing); hixie-75 discards it.
    (
        "closing-76",
        b"\x00a\xff\xff\x00\x00b\xff",
        [True],
        [TextMessage("a"), CloseReceived(1005, "")],
    ),
    ("closing-75", b"\x00a\xff\xff\x00\x00b\xff", [False], [TextMessage("a"), TextMessage("b")]),
]


@pytest.mark.parametrize(
    ("data", "closing_frame", "expected"),
    [
        pytest.param(data, closing, expected, id=f"{name}-{'76' if closing else '75'}")
        for name, data, closings, expected in PARSES
        for closing in closings
    ],
)
def test_parse_at_every_split(data: bytes, closing_frame: bool, expected: list[Event]) -> None:
    ways = splits(data) if len(data) < 300 else [[data], [data[:5], data[5:]]]
    for chunks in ways:
        assert parse(chunks, closing_frame=closing_frame) == expected, chunks


def test_closed_parser_ignores_the_rest() -> None:
    parser = HixieParser(MiB)
    assert parser.feed(b"\xff\x00") == [CloseReceived(1005, "")]
    assert parser.closed
    assert parser.feed(b"\x00ignored\xff") == []


@pytest.mark.parametrize(
    ("data", "error", "code", "reason"),
    [
        (b"\x00\xfe\xff", InvalidPayload, 1007, "text frame is not valid UTF-8"),
        (b"\x00\xed\xa0\x80\xff", InvalidPayload, 1007, "not valid UTF-8"),
        (b"\x00\xc0\xaf\xff", InvalidPayload, 1007, "not valid UTF-8"),
        (b"\x00\xe2\x82\xff", InvalidPayload, 1007, "not valid UTF-8"),
        (b"\x00" + b"x" * 101 + b"\xff", MessageTooBig, 1009, "max_message_size 100"),
        (b"\x00" + b"x" * 101, MessageTooBig, 1009, "max_message_size 100"),
        (b"\x05" + b"x" * 101, MessageTooBig, 1009, "max_message_size 100"),
        (b"\x80\x65", MessageTooBig, 1009, "max_message_size 100"),  # length 101
        (b"\x80\x81\x00", MessageTooBig, 1009, "max_message_size 100"),  # length 128
        (b"\xff" + b"\x80" * 10, ProtocolError, 1002, "hixie frame length too long"),
    ],
)
def test_parse_errors(data: bytes, error: type[ProtocolError], code: int, reason: str) -> None:
    for chunks in splits(data):
        parser = HixieParser(100)
        with pytest.raises(error) as info:
            for chunk in chunks:
                parser.feed(chunk)
        assert type(info.value) is error
        assert (info.value.code, reason in info.value.reason) == (code, True)


def test_at_limit_is_accepted() -> None:
    data = b"\x00" + b"x" * 100 + b"\xff" + b"\x80\x64" + b"y" * 100
    for chunks in splits(data):
        assert parse(chunks, limit=100) == [TextMessage("x" * 100)]


def test_events_before_an_error_are_kept() -> None:
    events: list[Event] = []
    parser = HixieParser(MiB)
    with pytest.raises(InvalidPayload):
        parser.feed(b"\x00ok\xff\x00\xfe\xff", events)
    assert events == [TextMessage("ok")]


def test_encode_text() -> None:
    assert encode_text("Hello") == b"\x00Hello\xff"
    assert encode_text("") == b"\x00\xff"
    assert encode_text("\u20ac") == b"\x00\xe2\x82\xac\xff"
    assert CLOSING_FRAME == b"\xff\x00"


# --- connections of the hixie versions ------------------------------------------------------


def feed(conn: Connection, chunks: Sequence[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events += conn.receive_data(chunk)
    return events


CONNECTION_CASES = [
    # name, version, input, events, bytes queued, state after
    ("text-76", HIXIE_76, b"\x00Hello\xff", [TextMessage("Hello")], b"", ConnectionState.OPEN),
    ("text-75", HIXIE_75, b"\x00Hello\xff", [TextMessage("Hello")], b"", ConnectionState.OPEN),
    (
        "closing-76",
        HIXIE_76,
        b"\x00a\xff\xff\x00\x00after\xff",
        [TextMessage("a"), CloseReceived(1005, "")],
        b"\xff\x00",
        ConnectionState.CLOSED,
    ),
    (
        "ff00-75",
        HIXIE_75,
        b"\x00a\xff\xff\x00\x00b\xff",
        [TextMessage("a"), TextMessage("b")],
        b"",
        ConnectionState.OPEN,
    ),
    (
        "invalid-utf8-76",
        HIXIE_76,
        b"\x00ok\xff\x00\xfe\xff\x00lost\xff",
        [TextMessage("ok"), ProtocolViolation(1007, "text frame is not valid UTF-8")],
        b"\xff\x00",
        ConnectionState.CLOSED,
    ),
    (
        "invalid-utf8-75",
        HIXIE_75,
        b"\x00ok\xff\x00\xfe\xff",
        [TextMessage("ok"), ProtocolViolation(1007, "text frame is not valid UTF-8")],
        b"",  # hixie-75 has no closing frame: the transport is just closed
        ConnectionState.CLOSED,
    ),
    (
        "too-long-length-76",
        HIXIE_76,
        b"\x00ok\xff\x80" + b"\x80" * 12,
        [TextMessage("ok"), ProtocolViolation(1002, "hixie frame length too long")],
        b"\xff\x00",
        ConnectionState.CLOSED,
    ),
]


@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
@pytest.mark.parametrize(
    ("version", "data", "expected", "out", "state"),
    [pytest.param(*case[1:], id=str(case[0])) for case in CONNECTION_CASES],
)
def test_connection(
    role: Role,
    version: ProtocolVersion,
    data: bytes,
    expected: list[Event],
    out: bytes,
    state: ConnectionState,
) -> None:
    for chunks in splits(data):
        conn = Connection(role, version)
        assert feed(conn, chunks) == expected, chunks
        assert conn.data_to_send() == out
        assert conn.state is state
        last = expected[-1]
        if isinstance(last, ProtocolViolation | CloseReceived):
            assert (conn.close_code, conn.close_reason) == (last.code, last.reason)
            assert conn.receive_data(b"\x00more\xff") == []
            assert conn.receive_eof() == []


@pytest.mark.parametrize("version", [HIXIE_75, HIXIE_76])
def test_send(version: ProtocolVersion) -> None:
    conn = Connection(Role.SERVER, version)
    assert conn.frame_family == "hixie"
    conn.send("Hello")
    conn.send_text("\u20ac")
    assert conn.data_to_send() == b"\x00Hello\xff\x00\xe2\x82\xac\xff"
    assert conn.encode_message("x") == b"\x00x\xff"
    for binary in (b"x", bytearray(b"x"), memoryview(b"x")):
        with pytest.raises(TypeError, match="text messages only"):
            conn.send(binary)
        with pytest.raises(TypeError):
            conn.send_binary(binary)
        with pytest.raises(TypeError):
            conn.encode_message(binary)
    with pytest.raises(TypeError, match="no ping or pong"):
        conn.send_ping(b"x")
    with pytest.raises(TypeError, match="no ping or pong"):
        conn.send_pong(b"x")
    assert conn.data_to_send() == b""
    assert conn.state is ConnectionState.OPEN


def test_close_76_we_initiate() -> None:
    conn = Connection(Role.SERVER, HIXIE_76)
    conn.send_close()
    assert conn.data_to_send() == b"\xff\x00"
    assert conn.state is ConnectionState.CLOSING
    with pytest.raises(ConnectionClosed):
        conn.send("late")
    # Text still arrives until the peer's closing frame, which is not echoed.
    assert conn.receive_data(b"\x00in flight\xff\xff") == [TextMessage("in flight")]
    assert conn.receive_data(b"\x00") == [CloseReceived(1005, "")]
    assert conn.data_to_send() == b""
    assert conn.close_sent and conn.close_received
    assert conn.receive_eof() == []


def test_close_75_closes_at_once() -> None:
    conn = Connection(Role.SERVER, HIXIE_75)
    conn.send_close()
    assert conn.data_to_send() == b""
    assert conn.state is ConnectionState.CLOSED
    assert conn.close_code == 1000
    with pytest.raises(ConnectionClosed):
        conn.send("late")
    assert conn.receive_eof() == []


@pytest.mark.parametrize("version", [HIXIE_75, HIXIE_76])
def test_eof_is_connection_lost(version: ProtocolVersion) -> None:
    conn = Connection(Role.SERVER, version)
    assert conn.receive_data(b"\x00partial") == []
    assert conn.receive_eof() == [ConnectionLost()]
    assert conn.close_code == 1006


@pytest.mark.parametrize("version", [HIXIE_75, HIXIE_76])
def test_unterminated_frame_fails_with_bounded_memory(version: ProtocolVersion) -> None:
    # 10 MB of a text frame that never ends, in 64 KiB reads, with a 1 MiB limit: the
    # connection fails once the frame is past 1 MiB and never buffers much more than that.
    conn = Connection(Role.SERVER, version, limits=Limits(max_message_size=MiB))
    parser = conn._hixie
    assert parser is not None
    chunk = b"x" * 65536
    fed = 0
    events = conn.receive_data(b"\x00")
    while not events and fed < 10 * 1000 * 1000:
        events = conn.receive_data(chunk)
        fed += len(chunk)
        assert len(parser._buf) <= MiB + len(chunk) + 1
    assert events == [ProtocolViolation(1009, f"hixie frame exceeds max_message_size {MiB}")]
    assert MiB < fed <= MiB + len(chunk)
    assert conn.data_to_send() == (b"\xff\x00" if version is HIXIE_76 else b"")
    assert len(parser._buf) == 0  # released once failed
    assert conn.receive_data(chunk) == []


@pytest.mark.parametrize("version", [HIXIE_75, HIXIE_76])
def test_large_discarded_frame_is_not_buffered(version: ProtocolVersion) -> None:
    conn = Connection(Role.SERVER, version, limits=Limits(max_message_size=MiB))
    parser = conn._hixie
    assert parser is not None
    # A length-prefixed frame of exactly 1 MiB (0xC0 0x80 0x00 = 64 * 128 * 128).
    assert conn.receive_data(b"\x80\xc0\x80\x00") == []
    for _ in range(16):
        assert conn.receive_data(b"\x00" * 65536) == []
        assert len(parser._buf) == 0
    assert conn.receive_data(b"\x00done\xff") == [TextMessage("done")]
