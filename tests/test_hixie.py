"""Tests of the hixie-75/76 framing: stargate.hixie (a Connection of those versions is
tested in tests/test_connection.py).

draft-hixie-thewebsocketprotocol-76 sections 4.2 and 5.3: text is ``0x00 <utf-8> 0xFF``; a
frame type with the high bit set carries a length in 7-bit groups and is discarded; for
hixie-76 ``0xFF 0x00`` is the closing handshake, for hixie-75 an empty frame to discard.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stargate.errors import InvalidPayload, MessageTooBig, ProtocolError
from stargate.events import CloseReceived, Event, TextMessage
from stargate.hixie import CLOSING_FRAME, HixieParser, encode_text
from stargate.limits import MiB

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
