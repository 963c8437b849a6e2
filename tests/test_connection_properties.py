"""Property tests of stargate.connection (hypothesis).

- Any chunking of a valid stream gives the same events and the same queued bytes as
  parsing it in one buffer, and both are the events the stream encodes.
- Round trips client -> server and server -> client for every opcode and size class, with
  random fragmentation.
- Random bytes fed to either role (and to hixie) only ever produce events of the defined
  types, at most one ProtocolViolation with a defined close code, and never raise.
"""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stargate import connection as connection_module
from stargate.connection import Connection, ConnectionState
from stargate.events import (
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    Event,
    Ping,
    Pong,
    ProtocolViolation,
    TextMessage,
)
from stargate.frames import (
    MessageBufferType,
    _build_frame_python,
    _MessageBufferPython,
    _read_messages_python,
    encode_frame,
)
from stargate.limits import Limits
from stargate.masking import BytesLike
from stargate.protocol import ProtocolVersion, Role
from tests.machine import TEST_C, speedups

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SERVER, CLIENT = Role.SERVER, Role.CLIENT
VIOLATION_CODES = {1002, 1007, 1009}
EVENT_TYPES = (
    TextMessage,
    BinaryMessage,
    Ping,
    Pong,
    CloseReceived,
    ProtocolViolation,
    ConnectionLost,
)

# --- reference encoder / decoder (independent of stargate.frames) --------------------------


def xor_mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes, *, fin: bool = True, key: bytes | None = None) -> bytes:
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if key is not None else 0
    n = len(payload)
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", n)
    return head + payload if key is None else head + key + xor_mask(payload, key)


def read_frames(data: bytes, *, masked: bool) -> list[tuple[int, bytes]]:
    """(byte 0, unmasked payload) of each frame; asserts whole frames, masked as told."""
    frames = []
    pos = 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        assert bool(second & 0x80) is masked
        n = second & 0x7F
        pos += 2
        if n == 126:
            (n,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif n == 127:
            (n,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        key = b""
        if masked:
            key, pos = data[pos : pos + 4], pos + 4
        payload = data[pos : pos + n]
        assert len(payload) == n
        pos += n
        frames.append((first, xor_mask(payload, key) if masked else payload))
    return frames


def queued(conn: Connection) -> list[tuple[int, bytes]]:
    """The frames the connection queued (a client's unmasked), checking the mask bit."""
    return read_frames(take_output(conn), masked=conn.role is CLIENT)


def take_output(conn: Connection) -> bytes:
    """``data_to_send()``, checking that ``has_data_to_send`` told the truth before it."""
    said = conn.has_data_to_send
    out = conn.data_to_send()
    assert said == bool(out)
    assert not conn.has_data_to_send
    return out


def feed_all(conn: Connection, chunks: Sequence[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events += conn.receive_data(chunk)
    return events


def cut(data: bytes, points: Sequence[int]) -> list[bytes]:
    bounds = [0, *sorted({p % (len(data) + 1) for p in points}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# --- strategies -----------------------------------------------------------------------------

T = TypeVar("T")


class Draw(Protocol):
    """``draw`` of a composite strategy or of ``st.data()``."""

    def __call__(self, strategy: st.SearchStrategy[T], /) -> T: ...


@dataclass(frozen=True)
class Stream:
    """Frames a peer sends, the events they must produce and the frames owed in reply."""

    data: bytes
    events: list[Event]
    replies: list[tuple[int, bytes]]


def sized_bytes(draw: Draw, size_class: int) -> bytes:
    lo, hi = [(0, 0), (1, 125), (126, 65535), (65536, 70000)][size_class]
    n = draw(st.integers(lo, hi))
    return random.Random(draw(st.integers(0, 2**32))).randbytes(n)


TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)


def sized_text(draw: Draw, size_class: int) -> str:
    """Text of exactly as many UTF-8 bytes as a size class allows (multi-byte included)."""
    target = len(sized_bytes(draw, size_class))
    unit = draw(TEXT).encode()
    encoded = (unit * (target // len(unit) + 1))[:target]
    text = encoded.decode("utf-8", "ignore")  # a character cut at the end is dropped ...
    return text + "a" * (target - len(text.encode()))  # ... and made up with ASCII


def split_points(draw: Draw, n: int, max_pieces: int = 4) -> list[int]:
    return sorted(draw(st.lists(st.integers(0, n), max_size=max_pieces - 1)))


@st.composite
def control_frames(draw: st.DrawFn) -> tuple[int, bytes]:
    return draw(st.sampled_from([0x9, 0xA])), draw(st.binary(max_size=125))


@st.composite
def valid_streams(draw: st.DrawFn, role: Role) -> Stream:
    """A valid stream that the peer of ``role`` may send, with its expected outcome."""
    out = bytearray()
    events: list[Event] = []
    replies: list[tuple[int, bytes]] = []

    def key() -> bytes | None:
        return draw(st.binary(min_size=4, max_size=4)) if role is SERVER else None

    def control(opcode: int, payload: bytes) -> None:
        out.extend(frame(opcode, payload, key=key()))
        if opcode == 0x9:
            events.append(Ping(payload))
            replies.append((0x8A, payload))
        else:
            events.append(Pong(payload))

    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "binary", "control"]))
        if kind == "control":
            control(*draw(control_frames()))
            continue
        size = draw(st.sampled_from([0, 1, 1, 2]))  # mostly small: the stream is re-parsed
        if kind == "text":
            text = sized_text(draw, size)
            payload, opcode = text.encode(), 0x1
            events_after: Event = TextMessage(text)
        else:
            payload, opcode = sized_bytes(draw, size), 0x2
            events_after = BinaryMessage(payload)
        bounds = [0, *split_points(draw, len(payload)), len(payload)]
        pieces = [payload[a:b] for a, b in itertools.pairwise(bounds)]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            out.extend(frame(opcode if i == 0 else 0x0, piece, fin=last, key=key()))
            if not last:
                for c in draw(st.lists(control_frames(), max_size=2)):
                    control(*c)
        events.append(events_after)
    if draw(st.booleans()):
        code = draw(st.sampled_from([None, 1000, 1001, 1011, 3000, 4999]))
        reason = "" if code is None else draw(st.text(st.characters(codec="utf-8"), max_size=20))
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
        out.extend(frame(0x8, payload, key=key()))
        events.append(CloseReceived(1005 if code is None else code, reason))
        replies.append((0x88, b"" if code is None else struct.pack("!H", code)))
    return Stream(bytes(out), events, replies)


# --- chunking invariance --------------------------------------------------------------------


@st.composite
def stream_and_cuts(draw: st.DrawFn, role: Role) -> tuple[Stream, list[bytes]]:
    stream = draw(valid_streams(role))
    points = draw(st.lists(st.integers(0, len(stream.data)), max_size=12))
    return stream, cut(stream.data, points)


def check_stream(role: Role, stream: Stream, chunks: list[bytes]) -> None:
    whole = Connection(role)
    whole_events = whole.receive_data(stream.data)
    whole_out = queued(whole)
    assert whole_events == stream.events
    assert whole_out == stream.replies
    split = Connection(role)
    assert feed_all(split, chunks) == whole_events
    assert queued(split) == whole_out
    assert split.state is whole.state
    assert (split.close_code, split.close_reason) == (whole.close_code, whole.close_reason)


@SETTINGS
@given(stream_and_cuts(SERVER))
def test_server_any_chunking_same_events(case: tuple[Stream, list[bytes]]) -> None:
    check_stream(SERVER, *case)


@SETTINGS
@given(stream_and_cuts(CLIENT))
def test_client_any_chunking_same_events(case: tuple[Stream, list[bytes]]) -> None:
    check_stream(CLIENT, *case)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([SERVER, CLIENT]), st.data())
def test_byte_at_a_time_same_events(role: Role, data: st.DataObject) -> None:
    stream = data.draw(valid_streams(role))
    if len(stream.data) > 3000:
        stream = Stream(stream.data[:0], [], [])
    check_stream(role, stream, [stream.data[i : i + 1] for i in range(len(stream.data))])


# --- round trips ----------------------------------------------------------------------------


def state_of(conn: Connection) -> ConnectionState:
    """``conn.state`` read through a call, so that mypy does not keep an earlier narrowing."""
    return conn.state


def pair(sender_role: Role) -> tuple[Connection, Connection]:
    receiver_role = CLIENT if sender_role is SERVER else SERVER
    return Connection(sender_role), Connection(receiver_role)


@SETTINGS
@given(
    st.sampled_from([SERVER, CLIENT]),
    st.sampled_from([0x1, 0x2]),
    st.sampled_from([0, 1, 2, 3]),
    st.data(),
)
def test_data_round_trip_fragmented(
    sender_role: Role, opcode: int, size_class: int, data: st.DataObject
) -> None:
    sender, receiver = pair(sender_role)
    if opcode == 0x1:
        text = sized_text(data.draw, size_class)
        payload = text.encode()
        expected: Event = TextMessage(text)
    else:
        payload = sized_bytes(data.draw, size_class)
        expected = BinaryMessage(payload)
    # Whole message through the public API, then fragmented through encode_frame.
    sender.send(text if opcode == 0x1 else payload)
    wire = sender.data_to_send()
    bounds = [0, *split_points(data.draw, len(payload), 6), len(payload)]
    pieces = [payload[a:b] for a, b in itertools.pairwise(bounds)]
    for i, piece in enumerate(pieces):
        wire += encode_frame(
            opcode if i == 0 else 0x0,
            piece,
            fin=i == len(pieces) - 1,
            mask=sender_role is CLIENT,
        )
    points = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
    assert feed_all(receiver, cut(wire, points)) == [expected, expected]
    assert receiver.data_to_send() == b""


@SETTINGS
@given(st.sampled_from([SERVER, CLIENT]), st.binary(max_size=125), st.data())
def test_ping_pong_round_trip(sender_role: Role, payload: bytes, data: st.DataObject) -> None:
    sender, receiver = pair(sender_role)
    sender.send_ping(payload)
    sender.send_pong(payload)
    wire = sender.data_to_send()
    points = data.draw(st.lists(st.integers(0, len(wire)), max_size=4))
    assert feed_all(receiver, cut(wire, points)) == [Ping(payload), Pong(payload)]
    # The receiver answered the ping; the sender gets the pong.
    assert sender.receive_data(receiver.data_to_send()) == [Pong(payload)]
    assert sender.data_to_send() == b""


CLOSE_CODES = st.one_of(
    st.none(),
    st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]),
    st.integers(3000, 4999),
)


@SETTINGS
@given(
    st.sampled_from([SERVER, CLIENT]),
    CLOSE_CODES,
    st.text(st.characters(codec="utf-8"), max_size=60),
)
def test_close_round_trip(sender_role: Role, code: int | None, reason: str) -> None:
    reason = "" if code is None else reason.encode()[:123].decode("utf-8", "ignore")
    sender, receiver = pair(sender_role)
    sender.send_close(code, reason)
    assert sender.state is ConnectionState.CLOSING
    expected_code = 1005 if code is None else code
    assert receiver.receive_data(sender.data_to_send()) == [CloseReceived(expected_code, reason)]
    assert receiver.state is ConnectionState.CLOSED
    assert sender.receive_data(receiver.data_to_send()) == [CloseReceived(expected_code, "")]
    assert state_of(sender) is ConnectionState.CLOSED
    assert sender.data_to_send() == b""
    assert receiver.data_to_send() == b""
    assert sender.receive_eof() == receiver.receive_eof() == []


# --- random bytes ---------------------------------------------------------------------------


@st.composite
def frame_soup(draw: st.DrawFn, role: Role) -> bytes:
    """Header-shaped noise: random first bytes and length forms, mostly the mask bit the
    receiving ``role`` expects, random payloads, mixed with raw random bytes, so that
    parsing gets past the first header."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 4)) == 0:
            out += draw(st.binary(max_size=20))
            continue
        first = draw(st.sampled_from([0x81, 0x82, 0x01, 0x02, 0x00, 0x80, 0x88, 0x89, 0x8A]))
        first = draw(st.one_of(st.just(first), st.integers(0, 255)))
        payload = draw(st.binary(max_size=40))
        if draw(st.booleans()):
            payload = draw(st.sampled_from([b"\x03\xe8", b"\x03\xe8ok", b"\x03", b"\xce\xba"]))
        n = len(payload)
        masked = (role is SERVER) != (draw(st.integers(0, 9)) == 0)
        form = draw(st.sampled_from(["short", "16", "64"]))
        mask_bit = 0x80 if masked else 0
        if form == "short" and n < 126:
            head = bytes((first, mask_bit | n))
        elif form == "16":
            head = bytes((first, mask_bit | 126)) + struct.pack("!H", n)
        else:
            head = bytes((first, mask_bit | 127)) + struct.pack("!Q", n)
        key = draw(st.binary(min_size=4, max_size=4)) if masked else b""
        out += head + key + (xor_mask(payload, key) if masked else payload)
    return bytes(out)


@st.composite
def hixie_soup(draw: st.DrawFn) -> bytes:
    """Frame-shaped noise for hixie: text frames (valid or not), other sentinel frames,
    length-prefixed frames, closing frames, raw bytes."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            out += draw(st.binary(max_size=20))
        elif kind == 1:
            out += b"\x00" + draw(st.text(st.characters(codec="utf-8"), max_size=30)).encode()
            out += b"\xff"
        elif kind == 2:
            body = draw(st.binary(max_size=70)).replace(b"\xff", b"")
            out += bytes((draw(st.integers(0, 0x7F)),)) + body + b"\xff"
        elif kind == 3:
            body = draw(st.binary(max_size=70))
            out += bytes((draw(st.integers(0x80, 0xFF)), len(body))) + body
        elif kind == 4:
            out += b"\xff\x00"
        else:
            out += b"\x00" + draw(st.sampled_from([b"\xed\xa0\x80", b"\xc3", b"\xfe", b"ok"]))
    return bytes(out)


def any_bytes(role: Role, version: ProtocolVersion) -> st.SearchStrategy[bytes]:
    soup = hixie_soup() if version.is_hixie else frame_soup(role)
    return st.one_of(st.binary(max_size=200), soup)


CONFIGS = st.sampled_from(
    [
        (SERVER, ProtocolVersion.RFC6455),
        (CLIENT, ProtocolVersion.RFC6455),
        (SERVER, ProtocolVersion.HIXIE_76),
        (SERVER, ProtocolVersion.HIXIE_75),
        (CLIENT, ProtocolVersion.HIXIE_76),
    ]
)


def check_outcome(conn: Connection, events: list[Event]) -> bytes:
    """Checks the events and the queued bytes (which it returns) of random input."""
    for i, event in enumerate(events):
        assert isinstance(event, EVENT_TYPES)
        if isinstance(event, ProtocolViolation | CloseReceived):
            assert i == len(events) - 1, "nothing after a violation or a close"
        if isinstance(event, ProtocolViolation):
            assert event.code in VIOLATION_CODES
            assert conn.state is ConnectionState.CLOSED
            assert conn.close_code == event.code
        if isinstance(event, ConnectionLost):
            assert event.code == 1006
    out = take_output(conn)
    if conn.version.is_hixie:
        assert out in (b"", b"\xff\x00")
    else:
        frames = read_frames(out, masked=conn.role is CLIENT)
        assert all(first in (0x88, 0x8A) for first, _ in frames)
        closes = [payload for first, payload in frames if first == 0x88]
        assert len(closes) <= 1
        if events and isinstance(events[-1], ProtocolViolation):
            assert closes and struct.unpack("!H", closes[0][:2])[0] == events[-1].code
    return out


@settings(max_examples=300, deadline=None)
@given(
    CONFIGS,
    st.data(),
    st.lists(st.integers(0, 400), max_size=6),
    st.sampled_from([(64, 48), (48, 64), (1 << 20, 1 << 20)]),
)
def test_random_bytes_never_raise(
    config: tuple[Role, ProtocolVersion],
    draw: st.DataObject,
    points: list[int],
    sizes: tuple[int, int],
) -> None:
    role, version = config
    data = draw.draw(any_bytes(role, version))
    limits = Limits(max_message_size=sizes[0], max_frame_size=sizes[1])
    whole = Connection(role, version, limits=limits)
    whole_events = whole.receive_data(data)
    whole_out = check_outcome(whole, whole_events)
    # The outcome does not depend on how the bytes are split, either.
    split = Connection(role, version, limits=limits)
    split_events = feed_all(split, cut(data, points))
    assert split_events == whole_events
    assert split.state is whole.state
    split_out = check_outcome(split, split_events)
    if role is SERVER or version.is_hixie:
        assert split_out == whole_out
    else:
        assert read_frames(split_out, masked=True) == read_frames(whole_out, masked=True)
    eof = split.receive_eof()
    assert eof in ([], [ConnectionLost()])
    assert split.receive_data(data) == []


# --- the C hot path changes nothing -----------------------------------------------------------
# The same input through the connection with the C accelerator, with its Python twins, and with
# no fast path at all (read_messages taking nothing: every frame through the general path)
# gives the same events, the same replies and the same state.


def _take_nothing(
    buf: BytesLike, pos: int, events: list[Event], expect_mask: bool, max_length: int
) -> int:
    return pos


Implementation = tuple[
    Callable[[BytesLike, int, list[Event], bool, int], int],
    Callable[[], MessageBufferType],
    Callable[[int, BytesLike | str, bytes | None], bytes],
]
IMPLEMENTATIONS: dict[str, Implementation] = {
    "python": (_read_messages_python, _MessageBufferPython, _build_frame_python),
    "general": (_take_nothing, _MessageBufferPython, _build_frame_python),
}
if TEST_C:
    IMPLEMENTATIONS["c"] = (
        speedups.read_messages,
        speedups.MessageBuffer,
        speedups.build_frame,
    )


def outcome(
    impl: str, role: Role, limits: Limits, chunks: Sequence[bytes]
) -> tuple[list[Event], list[tuple[int, bytes]], ConnectionState, int | None]:
    read, buffer, build = IMPLEMENTATIONS[impl]
    with (
        mock.patch.object(connection_module, "read_messages", read),
        mock.patch.object(connection_module, "MessageBuffer", buffer),
        mock.patch.object(connection_module, "build_frame", build),
    ):
        conn = Connection(role, limits=limits)
        events = feed_all(conn, chunks)
        out = conn.data_to_send()
        if conn.state is ConnectionState.OPEN:
            conn.send(b"x" * 3)
            conn.send("\u00e9t\u00e9")
            out += conn.data_to_send()
    return events, read_frames(out, masked=role is CLIENT), conn.state, conn.close_code


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([SERVER, CLIENT]),
    st.data(),
    st.lists(st.integers(0, 400), max_size=6),
    st.sampled_from([(64, 48), (48, 64), (1 << 20, 1 << 20)]),
)
def test_fast_paths_change_nothing(
    role: Role, draw: st.DataObject, points: list[int], sizes: tuple[int, int]
) -> None:
    data = draw.draw(st.one_of(valid_streams(role).map(lambda s: s.data), frame_soup(role)))
    limits = Limits(max_message_size=sizes[0], max_frame_size=sizes[1])
    chunks = cut(data, points)
    results = {impl: outcome(impl, role, limits, chunks) for impl in IMPLEMENTATIONS}
    assert len({repr(result) for result in results.values()}) == 1, results


def test_fast_paths_are_the_ones_in_use() -> None:
    from stargate import frames, masking

    expected = "c" if masking.speedups is not None else "python"
    assert (frames.read_messages, frames.MessageBuffer, frames.build_frame) == IMPLEMENTATIONS[
        expected
    ]
    assert (expected == "python") == masking.PURE_PYTHON
