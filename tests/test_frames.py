"""Tests of stargate.frames: RFC 6455 section 5.2 headers, section 5.7 examples, close payloads."""

from __future__ import annotations

import struct

import pytest

from stargate.errors import InvalidPayload, MessageTooBig, ProtocolError
from stargate.frames import (
    FrameHeader,
    encode_close_payload,
    encode_frame,
    parse_close_payload,
    parse_header,
)
from stargate.masking import apply_mask

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
