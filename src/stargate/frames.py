"""RFC 6455 base framing (section 5.2): frame headers, payload encoding, close payloads.

Pure functions over bytes.  The stateful part (reassembly, UTF-8 checks, the close
handshake) lives in :mod:`stargate.connection`.

The hot path has a C implementation in ``stargate._speedups`` (chosen by
:mod:`stargate.masking`): :func:`read_messages` (header parse, unmask and UTF-8 check of whole
single-frame messages in one pass), :func:`build_frame` and :func:`build_header` (a frame in
one allocation) and :class:`MessageBuffer` (a message arriving in pieces, unmasked straight
into its final ``bytes``).  The ``_python`` functions below are their twins, with identical
results; they run where the extension is not built or ``STARGATE_PURE_PYTHON=1`` is set.

Wire layout of a frame header (section 5.2)::

    byte 0: FIN | RSV1 | RSV2 | RSV3 | opcode (4 bits)
    byte 1: MASK | payload length (7 bits: 0-125, 126 = 16-bit follows, 127 = 64-bit follows)
    [extended payload length] [masking key, 4 bytes, when MASK is set]
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import NamedTuple, Protocol

from .errors import InvalidPayload, MessageTooBig, ProtocolError
from .events import BinaryMessage, Event, TextMessage
from .masking import BytesLike, apply_mask, speedups
from .protocol import CloseCode, is_valid_close_code

FIN = 0x80
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10
RSV_BITS = RSV1 | RSV2 | RSV3
OPCODE_BITS = 0x0F
MASK_BIT = 0x80
#: The first byte of a whole (unfragmented) text or binary message's frame.
FIN_TEXT = FIN | 0x1
FIN_BINARY = FIN | 0x2

#: Opcodes defined by RFC 6455; 0x3-0x7 and 0xB-0xF are reserved (section 5.2).
KNOWN_OPCODES = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})

#: Control frames carry at most 125 bytes of payload (section 5.5).
MAX_CONTROL_PAYLOAD = 125

_new_header = tuple.__new__
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_HEADER16 = struct.Struct("!BBH")
_HEADER64 = struct.Struct("!BBQ")
_BUFFERS = (bytes, bytearray, memoryview)


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
    first = (FIN if fin else 0) | rsv | opcode
    return build_frame(first, payload, os.urandom(4) if mask else None)


# -- the hot path: each function has a C twin in stargate._speedups ---------------------------


def _read_messages_python(
    buf: BytesLike, pos: int, events: list[Event], expect_mask: bool, max_length: int
) -> int:
    """Append a message event for each whole single-frame message from ``buf[pos]`` on;
    return the position of the first frame that is anything else, or incomplete.

    Taken: FIN set, no RSV bit, opcode text or binary, masked exactly when ``expect_mask``,
    a payload of at most ``max_length`` bytes, all of it in ``buf``, and for text valid
    UTF-8.  Everything else (control frames, fragments, extensions, errors of any kind) is
    left where it is for :meth:`Connection._receive_frames <stargate.connection.Connection>`,
    which would turn each taken frame into the same one event: so this is an optimisation
    only, never a second parser with rules of its own.
    """
    if not isinstance(buf, _BUFFERS):
        buf = memoryview(buf)  # any other buffer, as the C version takes it; TypeError if none
    if pos < 0 or max_length < 0:
        raise ValueError("pos and max_length must not be negative")
    end = len(buf)
    if pos > end:
        raise ValueError("pos beyond the end of buf")
    mask_bit = MASK_BIT if expect_mask else 0
    while end - pos >= 2:
        first = buf[pos]
        second = buf[pos + 1]
        if (first != 0x81 and first != 0x82) or second & MASK_BIT != mask_bit:
            break
        length = second & 0x7F
        start = pos + 2
        if length == 126:
            if end - start < 2:
                break
            length = _U16.unpack_from(buf, start)[0]
            start += 2
        elif length == 127:
            if end - start < 8:
                break
            length = _U64.unpack_from(buf, start)[0]
            start += 8
        if length > max_length:
            break
        key = None
        if mask_bit:
            if end - start < 4:
                break
            key = bytes(buf[start : start + 4])
            start += 4
        stop = start + length
        if stop > end:
            break
        payload = bytes(buf[start:stop]) if key is None else apply_mask(buf[start:stop], key)
        if first == 0x81:
            try:
                events.append(TextMessage(payload.decode("utf-8")))
            except UnicodeDecodeError:
                break
        else:
            events.append(BinaryMessage(payload))
        pos = stop
    return pos


def _build_header_python(first: int, length: int, key: bytes | None) -> bytes:
    """The header of a frame: byte 0 is ``first``, then the minimal length encoding (section
    5.2) with the MASK bit and ``key`` when ``key`` is not ``None``."""
    if not 0 <= first <= 255:
        raise ValueError("first byte must be 0-255")
    if length < 0:
        raise ValueError("length must not be negative")
    if key is not None and len(key) != 4:
        raise ValueError("mask must be 4 bytes")
    mask_bit = 0 if key is None else MASK_BIT
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = _HEADER16.pack(first, mask_bit | 126, length)
    else:
        header = _HEADER64.pack(first, mask_bit | 127, length)
    return header if key is None else header + key


def _build_frame_python(first: int, payload: BytesLike | str, key: bytes | None) -> bytes:
    """One frame in one buffer: the header of :func:`build_header`, then the payload (a
    ``str`` is sent as UTF-8), masked with ``key`` when it is not ``None``."""
    if type(payload) is not bytes:
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        elif not isinstance(payload, _BUFFERS):
            payload = memoryview(payload)  # any other buffer, as the C version takes it
    length = len(payload)
    if key is None:
        if length < 126 and 0 <= first <= 255:
            return bytes((first, length)) + payload  # the common small frame, inline
        return _build_header_python(first, length, None) + payload
    return _build_header_python(first, length, key) + apply_mask(payload, key)


class _MessageBufferPython:
    """A message's payload received in pieces (see the C ``MessageBuffer``)."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray()

    def add(
        self, source: BytesLike, start: int, stop: int, key: bytes | None, offset: int, limit: int
    ) -> None:
        """Append ``source[start:stop]``, unmasked with ``key`` as if its first byte were byte
        ``offset`` of a masked payload.  ``limit``: the size the message cannot exceed (the
        C version grows its buffer up to it)."""
        if min(start, stop, offset, limit) < 0:
            raise ValueError("start, stop, offset and limit must not be negative")
        if stop > len(source) or start > stop:
            raise ValueError("start and stop must lie within source, in order")
        chunk = source[start:stop]
        if key is not None:
            if len(key) != 4:
                raise ValueError("mask must be 4 bytes")
            rot = offset & 3
            chunk = apply_mask(chunk, key[rot:] + key[:rot])
        self._data += chunk

    def take(self) -> bytes:
        """Everything added so far; the buffer is empty again."""
        data = bytes(self._data)
        self._data = bytearray()
        return data

    def __len__(self) -> int:
        return len(self._data)


class MessageBufferType(Protocol):
    """What :class:`MessageBuffer` (C or Python) offers."""

    def add(
        self, source: BytesLike, start: int, stop: int, key: bytes | None, offset: int, limit: int
    ) -> None: ...

    def take(self) -> bytes: ...

    def __len__(self) -> int: ...


read_messages: Callable[[BytesLike, int, list[Event], bool, int], int]
build_frame: Callable[[int, BytesLike | str, bytes | None], bytes]
build_header: Callable[[int, int, bytes | None], bytes]
MessageBuffer: Callable[[], MessageBufferType]
if speedups is not None:
    read_messages = speedups.read_messages
    build_frame = speedups.build_frame
    build_header = speedups.build_header
    MessageBuffer = speedups.MessageBuffer
else:
    read_messages = _read_messages_python
    build_frame = _build_frame_python
    build_header = _build_header_python
    MessageBuffer = _MessageBufferPython


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
