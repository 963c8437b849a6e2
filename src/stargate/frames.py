"""RFC 6455 base framing (section 5.2): frame headers, payload encoding, close payloads.

Pure functions over bytes.  The stateful part (reassembly, UTF-8 checks, the close
handshake) lives in :mod:`stargate.connection`.

Wire layout of a frame header (section 5.2)::

    byte 0: FIN | RSV1 | RSV2 | RSV3 | opcode (4 bits)
    byte 1: MASK | payload length (7 bits: 0-125, 126 = 16-bit follows, 127 = 64-bit follows)
    [extended payload length] [masking key, 4 bytes, when MASK is set]
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from .errors import InvalidPayload, MessageTooBig, ProtocolError
from .masking import BytesLike, apply_mask
from .protocol import CloseCode, is_valid_close_code

FIN = 0x80
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10
RSV_BITS = RSV1 | RSV2 | RSV3
OPCODE_BITS = 0x0F
MASK_BIT = 0x80

#: Opcodes defined by RFC 6455; 0x3-0x7 and 0xB-0xF are reserved (section 5.2).
KNOWN_OPCODES = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})

#: Control frames carry at most 125 bytes of payload (section 5.5).
MAX_CONTROL_PAYLOAD = 125

_new_header = tuple.__new__
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class FrameHeader(NamedTuple):
    """A parsed frame header.  ``first`` is byte 0 (FIN, RSV and opcode bits) as sent."""

    first: int
    opcode: int
    masking_key: bytes | None
    length: int
    header_size: int

    @property
    def fin(self) -> bool:
        return bool(self.first & FIN)

    @property
    def rsv(self) -> int:
        return self.first & RSV_BITS


def parse_header(
    buf: BytesLike, pos: int, *, expect_mask: bool, max_frame_size: int
) -> FrameHeader | None:
    """Parse the header starting at ``buf[pos]``; ``None`` while it is incomplete.

    Checks what the header alone can tell: a reserved opcode, a fragmented or oversized
    control frame, the masking direction (section 5.1: clients MUST mask, servers MUST NOT)
    and the frame size limit, so that an oversized frame is refused before its payload is
    buffered.  RSV bits are checked by the connection, which knows the extensions.
    """
    available = len(buf) - pos
    if available < 2:
        return None
    first = buf[pos]
    second = buf[pos + 1]
    opcode = first & OPCODE_BITS
    length = second & 0x7F
    size = 2
    if length == 126:
        size = 4
        if available < size:
            return None
        length = _U16.unpack_from(buf, pos + 2)[0]
    elif length == 127:
        size = 10
        if available < size:
            return None
        length = _U64.unpack_from(buf, pos + 2)[0]
        if length >> 63:
            raise ProtocolError("64-bit payload length has its most significant bit set")
    masked = second & MASK_BIT
    if masked:
        size += 4
        if available < size:
            return None
        key: bytes | None = bytes(buf[pos + size - 4 : pos + size])
    else:
        key = None
    if bool(masked) != expect_mask:
        raise ProtocolError(
            "client frames must be masked" if expect_mask else "server frames must not be masked"
        )
    if opcode not in KNOWN_OPCODES:
        raise ProtocolError(f"reserved opcode {opcode:#x}")
    if opcode >= 0x8:
        if not first & FIN:
            raise ProtocolError("fragmented control frame")
        if length > MAX_CONTROL_PAYLOAD:
            raise ProtocolError(f"control frame payload of {length} bytes (at most 125)")
    elif length > max_frame_size:
        raise MessageTooBig(f"frame of {length} bytes exceeds max_frame_size {max_frame_size}")
    # tuple.__new__ skips the NamedTuple's Python-level __new__: 4x cheaper per frame.
    return _new_header(FrameHeader, (first, opcode, key, length, size))


def encode_frame(
    opcode: int,
    payload: BytesLike,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = False,
) -> bytes:
    """Encode one frame.  ``mask=True`` (client role) picks a fresh random masking key.

    Section 5.3: the masking key MUST be unpredictable, so it comes from ``os.urandom``.
    """
    length = len(payload)
    first = (FIN if fin else 0) | rsv | opcode
    mask_bit = MASK_BIT if mask else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = bytes((first, mask_bit | 126)) + _U16.pack(length)
    else:
        header = bytes((first, mask_bit | 127)) + _U64.pack(length)
    if mask:
        key = os.urandom(4)
        return header + key + apply_mask(payload, key)
    return header + payload


def encode_close_payload(code: int | None, reason: str = "") -> bytes:
    """The payload of a close frame: a 2-byte status code and a UTF-8 reason (section 5.5.1).

    ``code=None`` sends an empty close frame (the peer then reports 1005).
    """
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    data = _U16.pack(code) + reason.encode("utf-8")
    if len(data) > MAX_CONTROL_PAYLOAD:
        raise ValueError("close reason longer than 123 bytes once encoded")
    return data


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Decode a received close payload; an empty one means 1005 (section 7.1.5).

    A 1-byte payload, a code that may not be sent (section 7.4) or a reason that is not
    UTF-8 (section 5.5.1: "the data MUST be UTF-8") fail the connection.
    """
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise ProtocolError("close frame payload of 1 byte")
    code = _U16.unpack_from(payload)[0]
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidPayload("close reason is not valid UTF-8") from exc
    return code, reason
