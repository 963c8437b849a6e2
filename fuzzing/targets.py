"""Fuzz targets: one per parser of the framing core, and two of the server's HTTP side
(``http`` and ``upgrade``, in :mod:`fuzzing.server_targets`).

Each target takes arbitrary bytes and raises (AssertionError, or whatever escaped the
parser) only when it finds a bug.  They run under atheris (``python -m fuzzing.fuzz``) and
plainly over the corpus in ``fuzzing/corpus/<target>/`` (``tests/test_fuzz_corpus.py``).

The first bytes of the input choose the configuration (role, protocol version, limits,
how the input is split), so that the corpus and the fuzzer's mutations cover all of them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from fuzzing.server_targets import fuzz_http, fuzz_upgrade
from stargate.connection import Connection, ConnectionState
from stargate.errors import ProtocolError
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
from stargate.extensions.permessage_deflate import PerMessageDeflate
from stargate.frames import (
    encode_close_payload,
    encode_frame,
    parse_close_payload,
    parse_header,
)
from stargate.hixie import HixieParser
from stargate.limits import Limits
from stargate.masking import _apply_mask_python, apply_mask
from stargate.protocol import ProtocolVersion, Role, is_valid_close_code

CONFIGS = [
    (Role.SERVER, ProtocolVersion.RFC6455),
    (Role.CLIENT, ProtocolVersion.RFC6455),
    (Role.SERVER, ProtocolVersion.HIXIE_76),
    (Role.SERVER, ProtocolVersion.HIXIE_75),
    (Role.CLIENT, ProtocolVersion.HIXIE_76),
    (Role.SERVER, ProtocolVersion.HYBI_08),
    (Role.CLIENT, ProtocolVersion.HYBI_07),
    (Role.SERVER, ProtocolVersion.HYBI_07),
]
#: Bit 5 of the first byte turns permessage-deflate on (RFC 6455 versions only); bit 6
#: picks no context takeover for the peer's compressor.
DEFLATE_BIT = 0x20
NCT_BIT = 0x40
LIMITS = [
    Limits(max_message_size=64, max_frame_size=48),
    Limits(max_message_size=48, max_frame_size=64),
    Limits(max_message_size=1000, max_frame_size=1000),
    Limits(),
]
EVENT_TYPES = (TextMessage, BinaryMessage, Ping, Pong, CloseReceived, ProtocolViolation)
VIOLATION_CODES = frozenset({1002, 1007, 1009})


def split(data: bytes, seed: int) -> list[bytes]:
    """Split ``data`` into pieces whose sizes cycle through a pattern chosen by ``seed``."""
    sizes = [1 + (seed >> shift) % 17 for shift in (0, 2, 4, 6)]
    chunks = []
    pos = i = 0
    while pos < len(data):
        n = sizes[i % 4]
        chunks.append(data[pos : pos + n])
        pos += n
        i += 1
    return chunks


def _frames(data: bytes, masked: bool) -> list[tuple[int, bytes]]:
    """Decode whole frames (the connection's own output) with an independent reader."""
    frames = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, "truncated frame queued"
        first, second = data[pos], data[pos + 1]
        assert bool(second & 0x80) is masked, "masking direction of a queued frame"
        n = second & 0x7F
        assert n <= 125, "only control frames are queued by receive_data"
        pos += 2
        key = data[pos : pos + 4] if masked else b""
        pos += len(key)
        payload = data[pos : pos + n]
        assert len(payload) == n, "truncated frame queued"
        if masked:
            payload = _apply_mask_python(payload, key)
        frames.append((first, payload))
        pos += n
    return frames


def _check_outcome(conn: Connection, events: list[Event], out: bytes) -> None:
    for i, event in enumerate(events):
        assert isinstance(event, EVENT_TYPES), event
        if isinstance(event, ProtocolViolation | CloseReceived):
            assert i == len(events) - 1, "events after a violation or a close"
        if isinstance(event, ProtocolViolation):
            assert event.code in VIOLATION_CODES, event
            assert conn.state is ConnectionState.CLOSED
            assert conn.close_code == event.code
        if isinstance(event, CloseReceived):
            assert event.code == 1005 or is_valid_close_code(event.code), event
            assert conn.state is ConnectionState.CLOSED
    if conn.version.is_hixie:
        assert out in (b"", b"\xff\x00"), out
        return
    frames = _frames(out, masked=conn.role is Role.CLIENT)
    pongs = [p for first, p in frames if first == 0x8A]
    closes = [p for first, p in frames if first == 0x88]
    assert len(pongs) + len(closes) == len(frames), "only pongs and a close are queued"
    assert pongs == [e.payload for e in events if isinstance(e, Ping)]
    assert len(closes) <= 1
    if events and isinstance(events[-1], ProtocolViolation | CloseReceived):
        assert len(closes) == 1, "a close frame answers a close or a violation"
        if isinstance(events[-1], ProtocolViolation):
            assert struct.unpack("!H", closes[0][:2])[0] == events[-1].code
    else:
        assert not closes


def fuzz_connection(data: bytes) -> None:
    """Connection.receive_data: never raises, defined events only, chunking-independent."""
    if len(data) < 2:
        return
    role, version = CONFIGS[data[0] % len(CONFIGS)]
    limits = LIMITS[(data[0] >> 3) % len(LIMITS)]
    deflate = bool(data[0] & DEFLATE_BIT) and not version.is_hixie
    nct = bool(data[0] & NCT_BIT)

    def connection() -> Connection:
        extensions = [PerMessageDeflate(inflate_no_context_takeover=nct)] if deflate else []
        return Connection(role, version, limits=limits, extensions=extensions)

    stream = data[2:]
    whole = connection()
    whole_events = whole.receive_data(stream)
    whole_out = whole.data_to_send()
    _check_outcome(whole, whole_events, whole_out)
    pieces = connection()
    events: list[Event] = []
    for chunk in split(stream, data[1]):
        events += pieces.receive_data(chunk)
    out = pieces.data_to_send()
    _check_outcome(pieces, events, out)
    assert pieces.state is whole.state
    if deflate and events != whole_events:
        # A compressed message wrong in two ways (bad deflate data, bad UTF-8, too big)
        # may report either: a whole message is inflated before its text is checked, a
        # partial one piece by piece.  Both are 1007 or 1009 failures at the same point.
        assert events[:-1] == whole_events[:-1], "outcome depends on how the bytes were split"
        last, whole_last = events[-1], whole_events[-1]
        assert isinstance(last, ProtocolViolation), last
        assert isinstance(whole_last, ProtocolViolation), whole_last
        assert {last.code, whole_last.code} <= {1007, 1009}, (last, whole_last)
    else:
        assert events == whole_events, "outcome depends on how the bytes were split"
        if role is Role.SERVER or version.is_hixie:
            assert out == whole_out
        else:
            assert _frames(out, True) == _frames(whole_out, True)
        assert (pieces.close_code, pieces.close_reason) == (whole.close_code, whole.close_reason)
    eof = pieces.receive_eof()
    assert eof in ([], [ConnectionLost()])
    assert pieces.state is ConnectionState.CLOSED
    assert pieces.receive_data(stream) == []


def fuzz_frames(data: bytes) -> None:
    """frames.parse_header and parse_close_payload: ProtocolError or a consistent result."""
    if not data:
        return
    expect_mask = bool(data[0] & 1)
    buf = data[1:]
    try:
        header = parse_header(buf, 0, expect_mask=expect_mask, max_frame_size=1 << 20)
    except ProtocolError as exc:
        assert exc.code in VIOLATION_CODES
    else:
        if header is not None:
            assert header.header_size <= len(buf)
            assert header.header_size in (2, 4, 6, 8, 10, 14)
            assert (header.masking_key is not None) is expect_mask
            assert header.opcode in (0x0, 0x1, 0x2, 0x8, 0x9, 0xA)
            assert header.length < 1 << 63
            n7 = buf[1] & 0x7F
            minimal = n7 < 126 or (n7 == 126 and header.length >= 126) or header.length >= 65536
            if minimal and header.length <= 70_000:
                # A minimally encoded header re-encodes to the same bytes.
                payload = bytes(header.length)
                again = encode_frame(header.opcode, payload, fin=header.fin, rsv=header.rsv)
                size = header.header_size - (4 if expect_mask else 0)
                assert again[0] == buf[0]
                assert again[1] == buf[1] & 0x7F
                assert again[2:size] == buf[2:size]
        else:
            assert len(buf) < 14
    try:
        code, reason = parse_close_payload(buf)
    except ProtocolError as exc:
        assert exc.code in (1002, 1007)
    else:
        if not buf:
            assert (code, reason) == (1005, "")
        elif len(buf) <= 125:
            assert encode_close_payload(code, reason) == buf


def fuzz_hixie(data: bytes) -> None:
    """HixieParser: ProtocolError or text/close events, chunking-independent."""
    if len(data) < 2:
        return
    closing = bool(data[0] & 1)
    limit = (64, 1000, 1 << 20)[(data[0] >> 1) % 3]
    stream = data[2:]

    def run(chunks: list[bytes]) -> tuple[list[Event], int | None]:
        parser = HixieParser(limit, closing_frame=closing)
        events: list[Event] = []
        try:
            for chunk in chunks:
                parser.feed(chunk, events)
        except ProtocolError as exc:
            assert exc.code in VIOLATION_CODES
            return events, exc.code
        assert parser.closed is (bool(events) and isinstance(events[-1], CloseReceived))
        return events, None

    whole = run([stream])
    for event in whole[0]:
        assert isinstance(event, TextMessage | CloseReceived)
        if isinstance(event, TextMessage):
            assert len(event.data.encode()) <= limit
        else:
            assert closing, "hixie-75 has no closing frame"
    assert run(split(stream, data[1])) == whole, "outcome depends on how the bytes were split"


def fuzz_masking(data: bytes) -> None:
    """apply_mask (C) against the pure-Python fallback, and its involution."""
    mask, payload = data[:4], data[4:]
    if len(mask) < 4:
        for impl in (apply_mask, _apply_mask_python):
            try:
                impl(payload, mask)
            except ValueError:
                continue
            raise AssertionError("a short mask was accepted")
        return
    fast = apply_mask(payload, mask)
    assert fast == _apply_mask_python(payload, mask)
    assert apply_mask(fast, mask) == payload
    assert apply_mask(memoryview(data)[4:], mask) == fast


TARGETS: dict[str, Callable[[bytes], None]] = {
    "connection": fuzz_connection,
    "frames": fuzz_frames,
    "hixie": fuzz_hixie,
    "masking": fuzz_masking,
    "http": fuzz_http,
    "upgrade": fuzz_upgrade,
}
