"""Framing of the legacy drafts hixie-75 and hixie-76 (draft-hixie-thewebsocketprotocol-76,
sections 4.2 and 5.3).

Text travels as ``0x00 <utf-8> 0xFF``.  A frame type with the high bit set carries a length
(7-bit groups, high bit = more) and its data is read and discarded; hixie-76 uses type 0xFF
with length 0 as its closing handshake.  A sentinel frame carries no length, so the size
limit is enforced while scanning for the 0xFF terminator: memory never grows past it.
"""

from __future__ import annotations

from .errors import InvalidPayload, MessageTooBig, ProtocolError
from .events import CloseReceived, Event, TextMessage
from .masking import BytesLike
from .protocol import CloseCode

#: The hixie-76 closing handshake (draft-76 section 4.2, step 4 of "closing").
CLOSING_FRAME = b"\xff\x00"


def encode_text(text: str) -> bytes:
    """A hixie text frame."""
    return b"\x00" + text.encode("utf-8") + b"\xff"


class HixieParser:
    """Incremental parser: feed bytes, get events; raises ProtocolError on bad input."""

    __slots__ = ("_buf", "_closing_frame", "_discard", "_max_size", "_scanned", "closed")

    def __init__(self, max_message_size: int, *, closing_frame: bool = True) -> None:
        """``closing_frame``: whether ``0xFF 0x00`` closes (hixie-76) or is an empty frame
        to discard (hixie-75, which has no closing handshake)."""
        self._closing_frame = closing_frame
        self._buf = bytearray()
        self._max_size = max_message_size
        self._scanned = 0  # bytes of a sentinel frame already known to hold no 0xFF
        self._discard = 0  # bytes of a length-prefixed frame still to skip
        self.closed = False

    def feed(self, data: BytesLike, events: list[Event] | None = None) -> list[Event]:
        """Parse ``data``; returns the events, appended to ``events`` when it is given.

        On a protocol error the events of the frames before it are already in ``events``
        (so pass a list to keep them: the outcome must not depend on how the bytes were
        split), and the buffer is dropped: the connection is failed anyway.
        """
        if events is None:
            events = []
        try:
            self._parse(data, events)
        except ProtocolError:
            self._buf = bytearray()
            raise
        return events

    def _parse(self, data: BytesLike, events: list[Event]) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while pos < len(buf) and not self.closed:
            if self._discard:
                skipped = min(self._discard, len(buf) - pos)
                self._discard -= skipped
                pos += skipped
                continue
            frame_type = buf[pos]
            if frame_type & 0x80:
                consumed = self._length_prefixed(buf, pos, frame_type, events)
                if consumed == 0:
                    break
                pos += consumed
                continue
            end = buf.find(b"\xff", pos + 1 + self._scanned)
            if end < 0:
                self._scanned = len(buf) - pos - 1
                if self._scanned > self._max_size:
                    raise MessageTooBig(f"hixie frame exceeds max_message_size {self._max_size}")
                break
            self._scanned = 0
            if end - pos - 1 > self._max_size:
                raise MessageTooBig(f"hixie frame exceeds max_message_size {self._max_size}")
            if frame_type == 0x00:
                try:
                    text = buf[pos + 1 : end].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InvalidPayload("text frame is not valid UTF-8") from exc
                events.append(TextMessage(text))
            pos = end + 1
        del buf[:pos]

    def _length_prefixed(
        self, buf: bytearray, pos: int, frame_type: int, events: list[Event]
    ) -> int:
        """Parse a length-prefixed frame header; returns bytes consumed (0: incomplete)."""
        length = 0
        i = pos + 1
        while True:
            if i >= len(buf):
                return 0
            b = buf[i]
            i += 1
            length = (length << 7) | (b & 0x7F)
            if length > self._max_size:
                raise MessageTooBig(f"hixie frame exceeds max_message_size {self._max_size}")
            if not b & 0x80:
                break
            if i - pos > 10:
                raise ProtocolError("hixie frame length too long")
        if frame_type == 0xFF and length == 0 and self._closing_frame:
            self.closed = True
            events.append(CloseReceived(CloseCode.NO_STATUS_RCVD, ""))
        else:
            self._discard = length
        return i - pos
