"""Tests of stargate.frames: RFC 6455 section 5.2 headers, section 5.7 examples, close payloads."""

from __future__ import annotations

import gc
import os
import struct
import subprocess
import sys
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stargate.errors import InvalidPayload, MessageTooBig, ProtocolError
from stargate.events import BinaryMessage, Event, TextMessage
from stargate.frames import (
    FrameHeader,
    _build_frame_python,
    _build_header_python,
    _MessageBufferPython,
    _read_messages_python,
    encode_close_payload,
    encode_frame,
    parse_close_payload,
    parse_header,
)
from stargate.masking import BytesLike, apply_mask
from tests.machine import needs_c, speedups

H = bytes.fromhex
MIB = 1024 * 1024

# --- RFC 6455 section 5.7 examples -----------------------------------------------------------

HELLO_UNMASKED = H("810548656c6c6f")
HELLO_MASKED = H("818537fa213d7f9f4d5158")
FRAGMENT_1 = H("010348656c")
FRAGMENT_2 = H("80026c6f")
PING_UNMASKED = H("890548656c6c6f")
PONG_MASKED = H("8a8537fa213d7f9f4d5158")
BINARY_256_HEADER = H("827e0100")
BINARY_64K_HEADER = H("827f0000000000010000")
KEY = H("37fa213d")


@pytest.mark.parametrize(
    ("data", "expect_mask", "header"),
    [
        (HELLO_UNMASKED, False, FrameHeader(0x81, 0x1, None, 5, 2)),
        (HELLO_MASKED, True, FrameHeader(0x81, 0x1, KEY, 5, 6)),
        (FRAGMENT_1, False, FrameHeader(0x01, 0x1, None, 3, 2)),
        (FRAGMENT_2, False, FrameHeader(0x80, 0x0, None, 2, 2)),
        (PING_UNMASKED, False, FrameHeader(0x89, 0x9, None, 5, 2)),
        (PONG_MASKED, True, FrameHeader(0x8A, 0xA, KEY, 5, 6)),
        (BINARY_256_HEADER, False, FrameHeader(0x82, 0x2, None, 256, 4)),
        (BINARY_64K_HEADER, False, FrameHeader(0x82, 0x2, None, 65536, 10)),
    ],
    ids=["hello", "hello-masked", "fragment-1", "fragment-2", "ping", "pong-masked", "256", "64k"],
)
def test_parse_rfc_examples(data: bytes, expect_mask: bool, header: FrameHeader) -> None:
    parsed = parse_header(data, 0, expect_mask=expect_mask, max_frame_size=MIB)
    assert parsed == header
    assert parsed.fin is bool(header.first & 0x80)
    assert parsed.rsv == 0
    payload = data[parsed.header_size : parsed.header_size + parsed.length]
    if parsed.masking_key is not None:
        assert apply_mask(payload, parsed.masking_key) == b"Hello"


def test_parse_at_offset() -> None:
    data = b"junk" + HELLO_MASKED
    assert parse_header(data, 4, expect_mask=True, max_frame_size=MIB) == FrameHeader(
        0x81, 0x1, KEY, 5, 6
    )
    assert parse_header(bytearray(data), 4, expect_mask=True, max_frame_size=MIB) is not None
    assert parse_header(memoryview(data), 4, expect_mask=True, max_frame_size=MIB) is not None


@pytest.mark.parametrize(
    ("header", "length", "size"),
    [
        (H("8200"), 0, 2),
        (H("827d"), 125, 2),
        (H("827e007e"), 126, 4),
        (H("827effff"), 65535, 4),
        (H("827f0000000000010000"), 65536, 10),
        (H("827f7fffffffffffffff"), 2**63 - 1, 10),
    ],
)
def test_length_encodings(header: bytes, length: int, size: int) -> None:
    parsed = parse_header(header, 0, expect_mask=False, max_frame_size=2**63)
    assert parsed == FrameHeader(0x82, 0x2, None, length, size)
    masked = bytes((header[0], header[1] | 0x80)) + header[2:] + KEY
    parsed = parse_header(masked, 0, expect_mask=True, max_frame_size=2**63)
    assert parsed == FrameHeader(0x82, 0x2, KEY, length, size + 4)


@pytest.mark.parametrize(
    "complete",
    [HELLO_UNMASKED, HELLO_MASKED, BINARY_256_HEADER, BINARY_64K_HEADER, H("82fe0100") + KEY],
)
def test_incomplete_header_is_none(complete: bytes) -> None:
    expect_mask = bool(complete[1] & 0x80)
    header_size = parse_header(complete, 0, expect_mask=expect_mask, max_frame_size=MIB)
    assert header_size is not None
    for cut in range(header_size.header_size):
        assert parse_header(complete[:cut], 0, expect_mask=expect_mask, max_frame_size=MIB) is None


@pytest.mark.parametrize(
    ("data", "expect_mask", "error", "code", "reason"),
    [
        # Section 5.1: a server MUST NOT mask, a client MUST.
        (HELLO_UNMASKED, True, ProtocolError, 1002, "client frames must be masked"),
        (HELLO_MASKED, False, ProtocolError, 1002, "server frames must not be masked"),
        # Section 5.2: the most significant bit of a 64-bit length MUST be 0.
        (H("827f8000000000000000"), False, ProtocolError, 1002, "most significant bit"),
        (H("82ff8000000000000001"), True, ProtocolError, 1002, "most significant bit"),
        # Reserved opcodes.
        *(
            (bytes((0x80 | op, 0)), False, ProtocolError, 1002, f"reserved opcode {op:#x}")
            for op in (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)
        ),
        # Section 5.5: control frames are at most 125 bytes and are not fragmented.
        (H("897e007e"), False, ProtocolError, 1002, "control frame payload of 126 bytes"),
        (H("887f0000000000010000"), False, ProtocolError, 1002, "control frame payload"),
        (H("0900"), False, ProtocolError, 1002, "fragmented control frame"),
        (H("0800"), False, ProtocolError, 1002, "fragmented control frame"),
        (H("0a00"), False, ProtocolError, 1002, "fragmented control frame"),
        # The frame size limit, from the header alone.
        (H("827e0401"), False, MessageTooBig, 1009, "frame of 1025 bytes exceeds"),
        (H("007f0000010000000000"), False, MessageTooBig, 1009, "frame of 1099511627776 bytes"),
        (H("82ff0000010000000000") + KEY, True, MessageTooBig, 1009, "max_frame_size 1024"),
    ],
)
def test_header_errors(
    data: bytes, expect_mask: bool, error: type[ProtocolError], code: int, reason: str
) -> None:
    with pytest.raises(error) as info:
        parse_header(data, 0, expect_mask=expect_mask, max_frame_size=1024)
    assert type(info.value) is error
    assert info.value.code == code
    assert reason in info.value.reason


def test_frame_size_limit_is_inclusive() -> None:
    assert parse_header(H("827e0400"), 0, expect_mask=False, max_frame_size=1024) is not None
    assert parse_header(H("897d"), 0, expect_mask=False, max_frame_size=1) is not None


def test_rsv_bits_are_left_to_the_connection() -> None:
    parsed = parse_header(H("f100"), 0, expect_mask=False, max_frame_size=MIB)
    assert parsed == FrameHeader(0xF1, 0x1, None, 0, 2)
    assert parsed.rsv == 0x70
    assert parsed.fin


# --- encoding -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opcode", "payload", "fin", "expected"),
    [
        (0x1, b"Hello", True, HELLO_UNMASKED),
        (0x1, b"Hel", False, FRAGMENT_1),
        (0x0, b"lo", True, FRAGMENT_2),
        (0x9, b"Hello", True, PING_UNMASKED),
        (0xA, b"Hello", True, H("8a0548656c6c6f")),
        (0x2, bytes(256), True, BINARY_256_HEADER + bytes(256)),
        (0x2, bytes(65536), True, BINARY_64K_HEADER + bytes(65536)),
        (0x8, b"", True, H("8800")),
        (0x2, b"", True, H("8200")),
    ],
    ids=["hello", "fragment-1", "fragment-2", "ping", "pong", "256", "64k", "close", "empty"],
)
def test_encode_unmasked_rfc_examples(
    opcode: int, payload: bytes, fin: bool, expected: bytes
) -> None:
    assert encode_frame(opcode, payload, fin=fin) == expected


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, H("8200")),
        (1, H("8201")),
        (125, H("827d")),
        (126, H("827e007e")),
        (127, H("827e007f")),
        (65535, H("827effff")),
        (65536, H("827f0000000000010000")),
        (65537, H("827f0000000000010001")),
    ],
)
def test_encode_length_boundaries(length: int, header: bytes) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    assert encode_frame(0x2, payload) == header + payload


@pytest.mark.parametrize(
    ("opcode", "length"),
    [
        *((op, n) for op in (0x0, 0x1, 0x2) for n in (0, 1, 5, 125, 126, 65535, 65536)),
        *((op, n) for op in (0x8, 0x9, 0xA) for n in (0, 1, 5, 125)),  # control: <= 125
    ],
)
def test_encode_masked_round_trips(opcode: int, length: int) -> None:
    payload = (b"Hello" * (length // 5 + 1))[:length]
    frame = encode_frame(opcode, payload, mask=True)
    header = parse_header(frame, 0, expect_mask=True, max_frame_size=MIB)
    assert header is not None
    assert header.first == 0x80 | opcode
    assert header.length == length
    assert header.masking_key is not None
    assert len(frame) == header.header_size + length
    unmasked = encode_frame(opcode, payload)
    # Same header apart from the MASK bit and the key.
    assert frame[0] == unmasked[0]
    assert frame[1] == unmasked[1] | 0x80
    assert frame[2 : header.header_size - 4] == unmasked[2 : header.header_size - 4]
    assert apply_mask(frame[header.header_size :], header.masking_key) == payload


def test_masked_rfc_example_layout() -> None:
    frame = encode_frame(0x1, b"Hello", mask=True)
    key = frame[2:6]
    assert frame == H("8185") + key + apply_mask(b"Hello", key)
    # With the example's key, the masked bytes are the example's.
    assert H("8185") + KEY + apply_mask(b"Hello", KEY) == HELLO_MASKED
    pong = H("8a85") + KEY + apply_mask(b"Hello", KEY)
    assert pong == PONG_MASKED


def test_masking_keys_are_fresh() -> None:
    keys = {encode_frame(0x1, b"x", mask=True)[2:6] for _ in range(64)}
    assert len(keys) > 60


@pytest.mark.parametrize(
    ("fin", "rsv", "first"),
    [(True, 0x40, 0xC1), (False, 0x40, 0x41), (True, 0x70, 0xF1), (False, 0, 0x01)],
)
def test_encode_fin_and_rsv(fin: bool, rsv: int, first: int) -> None:
    assert encode_frame(0x1, b"", fin=fin, rsv=rsv) == bytes((first, 0))


@pytest.mark.parametrize("payload", [bytearray(b"Hello"), memoryview(b"Hello")])
def test_encode_bytes_like(payload: bytearray | memoryview) -> None:
    assert encode_frame(0x1, payload) == HELLO_UNMASKED
    frame = encode_frame(0x1, payload, mask=True)
    assert apply_mask(frame[6:], frame[2:6]) == b"Hello"


# --- close payloads (section 5.5.1, 7.4) -----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "payload"),
    [
        (None, "", b""),
        (1000, "", H("03e8")),
        (1000, "bye", H("03e8") + b"bye"),
        (1001, "", H("03e9")),
        (1011, "\u00e9", H("03f3c3a9")),
        (3000, "", H("0bb8")),
        (4999, "", H("1387")),
        (1000, "x" * 123, H("03e8") + b"x" * 123),
        (1000, "\u00e9" * 61 + "x", H("03e8") + "\u00e9".encode() * 61 + b"x"),
    ],
)
def test_encode_close_payload(code: int | None, reason: str, payload: bytes) -> None:
    assert encode_close_payload(code, reason) == payload
    assert len(payload) <= 125


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (None, "why", "a close reason needs a close code"),
        *(
            (code, "", f"close code {code} may not be sent")
            for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000)
        ),
        (1000, "x" * 124, "longer than 123 bytes"),
        (1000, "\u00e9" * 62, "longer than 123 bytes"),  # 124 bytes once encoded
    ],
)
def test_encode_close_payload_refuses(code: int | None, reason: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_close_payload(code, reason)


def test_encode_close_payload_refuses_unencodable_reason() -> None:
    with pytest.raises(UnicodeEncodeError):
        encode_close_payload(1000, "\ud800")


VALID_RECEIVED = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]


@pytest.mark.parametrize(
    ("payload", "code", "reason"),
    [
        (b"", 1005, ""),
        *((struct.pack("!H", c), c, "") for c in [*VALID_RECEIVED, 3000, 4000, 4999]),
        (H("03e8") + b"bye", 1000, "bye"),
        (H("03e8") + "\u00e9\u20ac\U0001f600".encode(), 1000, "\u00e9\u20ac\U0001f600"),
        (H("03e8") + b"x" * 123, 1000, "x" * 123),
    ],
)
def test_parse_close_payload(payload: bytes, code: int, reason: str) -> None:
    assert parse_close_payload(payload) == (code, reason)


@pytest.mark.parametrize(
    ("payload", "error", "code", "reason"),
    [
        (b"\x03", ProtocolError, 1002, "close frame payload of 1 byte"),
        *(
            (struct.pack("!H", c), ProtocolError, 1002, f"invalid close code {c}")
            for c in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)
        ),
        (H("03e8ff"), InvalidPayload, 1007, "close reason is not valid UTF-8"),
        (H("03e8eda080"), InvalidPayload, 1007, "not valid UTF-8"),  # a surrogate
        (H("03e8c0af"), InvalidPayload, 1007, "not valid UTF-8"),  # overlong "/"
        (H("03e8e282"), InvalidPayload, 1007, "not valid UTF-8"),  # truncated
    ],
)
def test_parse_close_payload_errors(
    payload: bytes, error: type[ProtocolError], code: int, reason: str
) -> None:
    with pytest.raises(error) as info:
        parse_close_payload(payload)
    assert type(info.value) is error
    assert info.value.code == code
    assert reason in info.value.reason


@pytest.mark.parametrize("code", [1000, 1001, 1011, 3000, 4999])
def test_close_payload_round_trip(code: int) -> None:
    assert parse_close_payload(encode_close_payload(code, "r\u00e9ason")) == (code, "r\u00e9ason")


# --- the C hot path against its Python twins (identical results) ------------------------------
# The accelerator is imported directly, so these run under STARGATE_PURE_PYTHON=1 too (the
# switch only chooses which implementation stargate uses).  Without a built accelerator they
# skip locally; under CI, where it must be built, they fail instead (``needs_c``).

DIFF = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def masked_frame(first: int, payload: bytes, key: bytes | None, form: str = "min") -> bytes:
    """A frame with any byte 0 and a chosen length form ("min", "16" or "64")."""
    n = len(payload)
    mask_bit = 0x80 if key is not None else 0
    if form == "min" and n < 126:
        head = bytes((first, mask_bit | n))
    elif form in ("min", "16") and n < 65536:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", n)
    if key is None:
        return head + payload
    return head + key + apply_mask(payload, key)


@st.composite
def frame_streams(draw: st.DrawFn) -> bytes:
    """Mostly whole text and binary frames (valid UTF-8 or not), among frames that
    read_messages must leave alone: other opcodes, FIN clear, RSV bits, the other mask bit,
    64-bit lengths with the top bit set, raw bytes, and a cut at the end."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 6)) == 0:
            out += draw(st.binary(max_size=12))
            continue
        first = draw(st.sampled_from([0x81, 0x82, 0x81, 0x82, 0x01, 0x80, 0x88, 0x89, 0xC1]))
        if draw(st.integers(0, 9)) == 0:
            first = draw(st.integers(0, 255))
        payload = draw(
            st.one_of(
                st.binary(max_size=300),
                st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
                st.sampled_from([b"\xed\xa0\x80", b"\xc3", b"caf\xc3\xa9", b"\xf4\x90\x80\x80"]),
            )
        )
        key = draw(st.one_of(st.none(), st.binary(min_size=4, max_size=4)))
        form = draw(st.sampled_from(["min", "min", "16", "64"]))
        out += masked_frame(first, payload, key, form)
    if draw(st.booleans()):
        out += H("827f8000000000000000")  # 64-bit length with the top bit set
    cut = draw(st.integers(0, len(out)))
    return bytes(out[:cut]) if draw(st.booleans()) else bytes(out)


@needs_c
@DIFF
@given(
    frame_streams(),
    st.booleans(),
    st.sampled_from([0, 1, 125, 126, 300, 65535, 1 << 20, 2**63]),
    st.integers(0, 40),
    st.sampled_from([bytes, bytearray, memoryview]),
)
def test_read_messages_c_matches_python(
    data: bytes, expect_mask: bool, max_length: int, pos: int, kind: type[BytesLike]
) -> None:
    pos = min(pos, len(data))
    buf: BytesLike = kind(data)
    c_events: list[Event] = []
    py_events: list[Event] = []
    c_pos = speedups.read_messages(buf, pos, c_events, expect_mask, max_length)
    py_pos = _read_messages_python(buf, pos, py_events, expect_mask, max_length)
    assert (c_pos, c_events) == (py_pos, py_events)
    assert [type(e) for e in c_events] == [type(e) for e in py_events]
    for event in c_events:
        assert isinstance(event, TextMessage | BinaryMessage)
        assert type(event.data) is (str if isinstance(event, TextMessage) else bytes)


@needs_c
def test_read_messages_takes_exactly_whole_single_frame_messages() -> None:
    for read in (speedups.read_messages, _read_messages_python):
        events: list[Event] = []
        hello = masked_frame(0x81, b"Hello", KEY)
        data = hello + masked_frame(0x82, b"\x00\xff", KEY) + masked_frame(0x89, b"", KEY)
        assert read(data, 0, events, True, 1 << 20) == len(data) - 6  # stops at the ping
        assert events == [TextMessage("Hello"), BinaryMessage(b"\x00\xff")]
        # Left alone: a fragment, an unmasked frame where masks are expected, a frame over
        # max_length, invalid UTF-8, an incomplete frame.
        for frame, limit in [
            (masked_frame(0x01, b"Hel", KEY), 99),
            (masked_frame(0x81, b"Hello", None), 99),
            (masked_frame(0x82, b"x" * 126, KEY), 125),
            (masked_frame(0x81, b"\xed\xa0\x80", KEY), 99),
            (hello[:-1], 99),
        ]:
            events = []
            assert read(frame, 0, events, True, limit) == 0
            assert events == []


@needs_c
@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize("length", [5, 126, 65536])
@pytest.mark.parametrize("key", [KEY, None], ids=["masked", "unmasked"])
def test_read_messages_leaves_a_cut_header_for_the_next_read(
    impl: str, length: int, key: bytes | None
) -> None:
    """A read may end anywhere in a header: in the 16- or 64-bit extended length or in the
    masking key (section 5.2).  The frame is left where it starts, with no event, and taken
    whole once the rest has arrived."""
    read = speedups.read_messages if impl == "c" else _read_messages_python
    payload = bytes(i % 251 for i in range(length))
    whole = masked_frame(0x82, payload, key)
    before = masked_frame(0x81, b"before", key)
    for cut in range(len(whole) - length):  # every cut inside the header
        events: list[Event] = []
        data = before + whole[:cut]
        assert read(data, 0, events, key is not None, 1 << 20) == len(before), cut
        assert events == [TextMessage("before")]
    events = []
    data = before + whole
    assert read(data, 0, events, key is not None, 1 << 20) == len(data)
    assert events == [TextMessage("before"), BinaryMessage(payload)]


def test_pure_python_switch_selects_every_twin() -> None:
    """STARGATE_PURE_PYTHON=1 makes stargate.frames use all of its Python twins (CI runs the
    core that way); unset or 0, the C accelerator's functions where it is built."""
    code = (
        "from stargate import frames as f; print("
        "f.read_messages is f._read_messages_python, f.build_frame is f._build_frame_python, "
        "f.build_header is f._build_header_python, f.MessageBuffer is f._MessageBufferPython)"
    )
    built = speedups is not None
    for value, python in (("1", True), ("0", not built), ("", not built)):
        env = {**os.environ, "STARGATE_PURE_PYTHON": value}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.split() == [str(python)] * 4, value


@needs_c
def test_read_messages_refuses_bad_arguments_alike() -> None:
    for read in (speedups.read_messages, _read_messages_python):
        with pytest.raises(ValueError):
            read(b"", 1, [], True, 10)
        with pytest.raises(ValueError):
            read(b"", -1, [], True, 10)
        with pytest.raises(ValueError):
            read(b"", 0, [], True, -1)
        with pytest.raises(TypeError):
            read("text", 0, [], True, 10)  # type: ignore[arg-type]


@needs_c
def test_message_events_made_directly_equal_constructed_ones() -> None:
    # The C side makes events without running their dataclass __init__ (a third of a small
    # message's cost); they must be indistinguishable from constructed ones.
    assert speedups.DIRECT_EVENTS
    events: list[Event] = []
    data = masked_frame(0x82, b"abc", KEY) + masked_frame(0x81, b"\xc3\xa9", KEY)
    speedups.read_messages(data, 0, events, True, 100)
    assert events == [BinaryMessage(b"abc"), TextMessage("\u00e9")]
    assert [type(e) for e in events] == [BinaryMessage, TextMessage]
    assert repr(events[0]) == "BinaryMessage(data=b'abc')"
    assert gc.is_tracked(events[0])
    first = events[0]
    assert isinstance(first, BinaryMessage)
    first.data = b"changed"  # a plain slot, as with a constructed event
    assert first == BinaryMessage(b"changed")


PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=80),
    st.sampled_from([b"x" * 125, b"x" * 126, b"x" * 65535, b"x" * 65536, "\u00e9" * 70000]),
)


@needs_c
@DIFF
@given(
    st.integers(0, 255),
    PAYLOADS,
    st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
    st.sampled_from([bytes, bytearray, memoryview]),
)
def test_build_frame_c_matches_python(
    first: int, payload: bytes | str, key: bytes | None, kind: type[BytesLike]
) -> None:
    data: BytesLike | str = payload if isinstance(payload, str) else kind(payload)
    frame = speedups.build_frame(first, data, key)
    assert type(frame) is bytes
    assert frame == _build_frame_python(first, data, key)
    raw = payload.encode() if isinstance(payload, str) else payload
    header = speedups.build_header(first, len(raw), key)
    assert header == _build_header_python(first, len(raw), key)
    assert frame == header + (raw if key is None else apply_mask(raw, key))
    if first & 0x0F in (1, 2):  # a data frame: parse_header reads the header back
        parsed = parse_header(frame, 0, expect_mask=key is not None, max_frame_size=2**63)
        assert parsed is not None
        assert (parsed.first, parsed.length, parsed.masking_key) == (first, len(raw), key)


@needs_c
@pytest.mark.parametrize("build", ["c", "python"])
def test_build_frame_refuses_bad_arguments_alike(build: str) -> None:
    frame_fn = speedups.build_frame if build == "c" else _build_frame_python
    header_fn = speedups.build_header if build == "c" else _build_header_python
    for bad_key in (b"", b"abc", b"abcde"):
        with pytest.raises(ValueError, match="mask must be 4 bytes"):
            frame_fn(0x82, b"x", bad_key)
        with pytest.raises(ValueError, match="mask must be 4 bytes"):
            header_fn(0x82, 1, bad_key)
    for bad_first in (-1, 256):
        with pytest.raises(ValueError, match="first byte must be 0-255"):
            frame_fn(bad_first, b"x", None)
        with pytest.raises(ValueError, match="first byte must be 0-255"):
            header_fn(bad_first, 1, None)
    with pytest.raises(ValueError):
        header_fn(0x82, -1, None)
    with pytest.raises(TypeError):
        frame_fn(0x82, 12, None)  # type: ignore[arg-type]
    with pytest.raises(UnicodeEncodeError):
        frame_fn(0x81, "\ud800", None)  # a lone surrogate has no UTF-8


@needs_c
@DIFF
@given(
    st.lists(
        st.tuples(
            st.binary(max_size=200),
            st.integers(0, 200),
            st.integers(0, 200),
            st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
            st.integers(0, 7),
            st.sampled_from([0, 10, 5000, 1 << 20]),
        ),
        max_size=12,
    ),
    st.sampled_from([bytes, bytearray, memoryview]),
)
def test_message_buffer_c_matches_python(
    adds: list[tuple[bytes, int, int, bytes | None, int, int]], kind: type[BytesLike]
) -> None:
    c_buffer = speedups.MessageBuffer()
    py_buffer = _MessageBufferPython()
    expected = bytearray()
    for source, a, b, key, offset, limit in adds:
        start, stop = sorted((min(a, len(source)), min(b, len(source))))
        c_buffer.add(kind(source), start, stop, key, offset, limit)
        py_buffer.add(kind(source), start, stop, key, offset, limit)
        piece = source[start:stop]
        if key is not None:
            rot = offset & 3
            piece = bytes(x ^ (key[rot:] + key[:rot])[i % 4] for i, x in enumerate(piece))
        expected += piece
        assert len(c_buffer) == len(py_buffer) == len(expected)
    c_data = c_buffer.take()
    assert type(c_data) is bytes
    assert c_data == py_buffer.take() == expected
    assert len(c_buffer) == len(py_buffer) == 0
    assert c_buffer.take() == py_buffer.take() == b""


@needs_c
@pytest.mark.parametrize("impl", ["c", "python"])
def test_message_buffer_of_a_large_message_in_reads(impl: str) -> None:
    # 1 MiB + 3 masked bytes arriving in 64 KiB reads, the key phase moving on each time.
    buffer = speedups.MessageBuffer() if impl == "c" else _MessageBufferPython()
    payload = bytes(range(256)) * 4096 + b"end"
    masked = apply_mask(payload, KEY)
    for start in range(0, len(masked), 65536):
        stop = min(start + 65536, len(masked))
        read = b"head" + masked[start:stop]
        buffer.add(read, 4, 4 + stop - start, KEY, start, len(payload))
    assert buffer.take() == payload


@needs_c
def test_the_c_message_buffer_allocates_at_most_twice_what_it_was_given() -> None:
    """A peer cannot make the buffer allocate ahead of what it sent (a frame header may
    claim any length): at most twice the bytes added, or the first 4 KiB."""
    source = bytes(300_000)
    tracemalloc.start()
    try:
        buffer = speedups.MessageBuffer()
        added = 0
        for n in (1, 100, 5000, 250_000, 300_000, 300_000, 7):
            buffer.add(source, 0, n, KEY, added, 1 << 40)
            added += n
            held, _ = tracemalloc.get_traced_memory()
            assert held <= max(4096, 2 * added) + 512, (added, held)
        assert len(buffer.take()) == added
    finally:
        tracemalloc.stop()


@needs_c
@pytest.mark.parametrize("impl", ["c", "python"])
def test_message_buffer_refuses_bad_arguments_alike(impl: str) -> None:
    buffer = speedups.MessageBuffer() if impl == "c" else _MessageBufferPython()
    for args in [
        (b"abc", 2, 1, None, 0, 9),  # start after stop
        (b"abc", 0, 4, None, 0, 9),  # beyond the source
        (b"abc", -1, 2, None, 0, 9),
        (b"abc", 0, 2, b"xyz", 0, 9),  # a 3-byte key
        (b"abc", 0, 2, None, -1, 9),
    ]:
        with pytest.raises(ValueError):
            buffer.add(*args)
    assert len(buffer) == 0
