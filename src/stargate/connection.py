"""The WebSocket connection state machine, sans-I/O: bytes in, events out.

A :class:`Connection` is created once the opening handshake is done.  The I/O layer feeds it
received bytes (:meth:`Connection.receive_data`), acts on the events it returns, and writes
whatever :meth:`Connection.data_to_send` yields: replies the connection owes the peer (pongs,
the close echo, a close frame after a protocol error) as well as what the application sent.

Whole single-frame messages, the common case, go through :func:`~stargate.frames.read_messages`
(one C pass: header, unmask, UTF-8 check, event).  Every other frame takes the general path
here, which owns every protocol decision.  Data frames are consumed as they arrive, so a large
frame split across many reads is unmasked chunk by chunk: a binary message straight into its
final ``bytes`` (:class:`~stargate.frames.MessageBuffer`, one copy in all), a text message
through an incremental UTF-8 decoder, so invalid text fails fast, before the frame is
complete (RFC 6455 section 8.1).

Sending: :meth:`Connection.encode_message` returns one frame as ``bytes``;
:meth:`Connection.encode_message_parts` returns its header and payload apart, so that an
I/O layer can write a large payload with ``transport.writelines([header, payload])``
without copying it into the frame.
"""

from __future__ import annotations

import codecs
import enum
import os
from collections.abc import Callable, Sequence

from . import hixie
from .errors import ConnectionClosed, InvalidPayload, MessageTooBig, ProtocolError
from .events import (
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    Event,
    Ping,
    Pong,
    ProtocolViolation,
    TextMessage,
)
from .extensions.permessage_deflate import PerMessageDeflate
from .frames import (
    FIN,
    FIN_BINARY,
    FIN_TEXT,
    RSV1,
    RSV_BITS,
    FrameHeader,
    MessageBuffer,
    MessageBufferType,
    build_frame,
    build_header,
    encode_close_payload,
    encode_frame,
    parse_close_payload,
    parse_header,
    read_messages,
)
from .limits import Limits
from .masking import BytesLike, apply_mask
from .protocol import CloseCode, Opcode, ProtocolVersion, Role

_utf8_decoder: Callable[[], codecs.IncrementalDecoder] = codecs.getincrementaldecoder("utf-8")

#: A text message received in many small pieces (tiny fragments or reads) would cost one
#: ``str`` per piece, 50 to 80 bytes of overhead each: 50 times max_message_size for a message
#: sent in 1-byte fragments.  Every _JOIN_PARTS pieces, the recent ones are joined into one
#: when they average under _SMALL_PART bytes, which bounds the overhead to a few percent.
#: (Binary pieces go into one MessageBuffer: no object per piece.)
_JOIN_PARTS = 256
_SMALL_PART = 1024


class ConnectionState(enum.Enum):
    """OPEN: messages flow.  CLOSING: we sent a close frame and await the peer's.
    CLOSED: the close handshake is done or the connection failed; the transport should be
    closed once :meth:`Connection.data_to_send` is flushed."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


# Enum member lookups cost ~100 ns each on CPython 3.11: the hot path uses these instead.
_OPEN = ConnectionState.OPEN
_CLOSED = ConnectionState.CLOSED
_TEXT = int(Opcode.TEXT)
_BINARY = int(Opcode.BINARY)
_urandom = os.urandom


class Connection:
    """One WebSocket connection of either role and any protocol version."""

    __slots__ = (
        "_buf",
        "_close_at",
        "_close_received",
        "_close_sent",
        "_compressed",
        "_decoder",
        "_deflate",
        "_expect_mask",
        "_frame",
        "_frame_done",
        "_hixie",
        "_inflated",
        "_mask_out",
        "_max_frame",
        "_max_message",
        "_max_whole",
        "_message",
        "_msg_opcode",
        "_msg_size",
        "_out",
        "_parts_joined",
        "_text_parts",
        "close_code",
        "close_reason",
        "has_data_to_send",
        "limits",
        "role",
        "state",
        "version",
    )

    def __init__(
        self,
        role: Role,
        version: ProtocolVersion = ProtocolVersion.RFC6455,
        *,
        limits: Limits | None = None,
        extensions: Sequence[object] = (),
    ) -> None:
        """``extensions`` are the negotiated extension objects of the handshake (today a
        :class:`~stargate.extensions.PerMessageDeflate` at most)."""
        self.role = role
        self.version = version
        self.limits = limits = limits or Limits()
        self.state = ConnectionState.OPEN
        #: Why the connection ended: the peer's close code, the code we failed it with, or
        #: 1006 when the transport ended first.  ``None`` while open.
        self.close_code: int | None = None
        self.close_reason = ""
        self._max_frame = limits.max_frame_size
        self._max_message = limits.max_message_size
        # A whole single-frame message within both limits takes read_messages' fast path.
        self._max_whole = min(limits.max_frame_size, limits.max_message_size)
        self._expect_mask = role is Role.SERVER
        self._mask_out = role is Role.CLIENT
        self._hixie = (
            hixie.HixieParser(
                limits.max_message_size, closing_frame=version is ProtocolVersion.HIXIE_76
            )
            if version.is_hixie
            else None
        )
        # Buffers are created when first needed: an idle connection holds none of them.
        # _buf: the unconsumed tail of the last read (b"" or a bytearray).
        self._buf: bytes | bytearray = b""
        self._out: list[bytes] | None = None
        #: Whether :meth:`data_to_send` has bytes to give: a field, not a call, because an
        #: echo's read asks it twice and finds nothing nearly every time.
        self.has_data_to_send = False
        self._close_sent = False
        #: Where our close frame is in ``_out`` once queued (see ``data_to_send``).
        self._close_at = 0
        self._close_received = False
        # The data frame whose payload is being received, and how much of it is consumed.
        self._frame: FrameHeader | None = None
        self._frame_done = 0
        # The message being reassembled: its opcode (0: none) and size so far; a binary
        # message's payload, or a text message's decoder and decoded parts.
        self._msg_opcode = 0
        self._msg_size = 0
        self._message: MessageBufferType | None = None
        self._decoder: codecs.IncrementalDecoder | None = None
        self._text_parts: list[str] | None = None
        self._parts_joined = 0  # text parts at the head of the list not to join again
        # permessage-deflate (RFC 7692): the session, whether the message being received is
        # compressed (RSV1 on its first frame) and how many bytes it inflated to so far.
        self._deflate: PerMessageDeflate | None = None
        for extension in extensions:
            if not isinstance(extension, PerMessageDeflate) or self._deflate is not None:
                raise ValueError(f"unsupported extension {extension!r}")
            if version.is_hixie:
                raise ValueError("hixie connections have no extensions")
            self._deflate = extension
        self._compressed = False
        self._inflated = 0

    @property
    def plain_frames(self) -> bool:
        """Whether :meth:`encode_message` makes every message one plain frame (no
        compression, no mask, not hixie): ``build_frame(FIN_TEXT or FIN_BINARY, message,
        None)``, which an I/O layer may then call itself."""
        return self._hixie is None and self._deflate is None and not self._mask_out

    @property
    def inflates(self) -> bool:
        """Whether received messages may be compressed (permessage-deflate negotiated): then
        a few bytes received can become many messages of ``max_message_size`` each."""
        return self._deflate is not None

    # -- receiving -------------------------------------------------------------------

    def receive_data(self, data: BytesLike) -> list[Event]:
        """Parse received bytes into events.  Never raises for anything the peer sends."""
        if self._close_received or self.state is _CLOSED:
            return []  # RFC 6455 section 5.5.1: nothing is processed after a close frame
        events: list[Event] = []
        pos = 0
        if self._frame is None and not self._msg_opcode and not self._buf and self._hixie is None:
            # The common case, whole single-frame messages, in one C call.
            pos = read_messages(data, 0, events, self._expect_mask, self._max_whole)
            if pos == len(data):
                return events
        try:
            if self._hixie is not None:
                self._hixie.feed(data, events)
                if self._hixie.closed:
                    self._on_close_frame(CloseCode.NO_STATUS_RCVD, "")
            else:
                self._receive_frames(data, pos, events)
        except ProtocolError as exc:
            self._fail(exc.code, exc.reason, events)
        return events

    def receive_eof(self) -> list[Event]:
        """The transport ended.  Unless the close handshake was done, that is 1006."""
        self._buf = b""
        if self.state is ConnectionState.CLOSED:
            return []  # already CLOSED, with its close_code: nothing more to report
        self.state = ConnectionState.CLOSED
        self.close_code = CloseCode.ABNORMAL_CLOSURE
        self.close_reason = ""
        return [ConnectionLost()]

    def _receive_frames(self, data: BytesLike, pos: int, events: list[Event]) -> None:
        """Parse ``data[pos:]`` after the unconsumed tail of the last read (``pos`` is 0
        unless there was none)."""
        buf = data
        if self._buf:
            buf = self._buf + data
            self._buf = b""
        end = len(buf)
        while not self._close_received:
            frame = self._frame
            if frame is None:
                if not self._msg_opcode:
                    pos = read_messages(buf, pos, events, self._expect_mask, self._max_whole)
                if end - pos < 2:
                    break
                header = parse_header(
                    buf, pos, expect_mask=self._expect_mask, max_frame_size=self._max_frame
                )
                if header is None:
                    break
                first = header.first
                opcode = header.opcode
                if first & RSV_BITS:
                    self._check_rsv(first & RSV_BITS, opcode)
                length = header.length
                start = pos + header.header_size
                if opcode >= 0x8:
                    if end - start < length:
                        break  # control frames (<= 125 bytes) are handled whole
                    payload = bytes(buf[start : start + length])
                    if header.masking_key is not None:
                        payload = apply_mask(payload, header.masking_key)
                    pos = start + length
                    self._on_control(opcode, payload, events)
                    continue
                if opcode == 0:
                    if not self._msg_opcode:
                        raise ProtocolError("continuation frame without a message to continue")
                    # The message limit is checked from the header too, before any payload
                    # of a frame that would take the message over it is buffered.
                    self._msg_size += length
                    if self._msg_size > self._max_message:
                        raise MessageTooBig(
                            f"fragmented message of {self._msg_size} bytes so far exceeds "
                            f"max_message_size {self._max_message}"
                        )
                elif self._msg_opcode:
                    raise ProtocolError("new data frame inside a fragmented message")
                elif length > self._max_message:
                    raise MessageTooBig(
                        f"message of {length} bytes exceeds max_message_size {self._max_message}"
                    )
                elif first & FIN and end - start >= length:
                    # A whole single-frame message that read_messages left: compressed, or
                    # text that is not UTF-8.
                    key = header.masking_key
                    payload = bytes(buf[start : start + length])
                    if key is not None:
                        payload = apply_mask(payload, key)
                    pos = start + length
                    if first & RSV1:
                        assert self._deflate is not None
                        payload = self._deflate.inflate(payload, True, self._max_message)
                    if opcode == _TEXT:
                        try:
                            events.append(TextMessage(payload.decode("utf-8")))
                        except UnicodeDecodeError as exc:
                            raise InvalidPayload("text message is not valid UTF-8") from exc
                    else:
                        events.append(BinaryMessage(payload))
                    continue
                else:
                    self._msg_opcode = opcode
                    self._msg_size = length
                    self._compressed = bool(first & RSV1)
                    self._inflated = 0
                    if opcode == _TEXT:
                        self._decoder = _utf8_decoder()
                        self._text_parts = []
                    elif self._message is None:
                        self._message = MessageBuffer()
                pos = start
                self._frame = frame = header
                self._frame_done = 0
            # Consume as much of the current data frame's payload as has arrived.
            remaining = frame.length - self._frame_done
            take = min(remaining, end - pos)
            if take == 0 and remaining:
                break
            complete = take == remaining
            if complete:
                self._frame = None
            last = complete and frame.fin
            message = self._message
            if self._decoder is None and not self._compressed:
                # Binary: unmasked straight into the message's final bytes.
                assert message is not None
                # Growth stops at the message's size when this frame ends it.
                limit = self._msg_size if frame.fin else self._max_message
                message.add(buf, pos, pos + take, frame.masking_key, self._frame_done, limit)
                pos += take
                self._frame_done += take
                if last:
                    self._msg_opcode = 0
                    events.append(BinaryMessage(message.take()))
                continue
            chunk = bytes(buf[pos : pos + take])
            pos += take
            key = frame.masking_key
            if key is not None and take:
                rot = self._frame_done & 3
                chunk = apply_mask(chunk, key[rot:] + key[:rot])
            self._frame_done += take
            self._on_payload(chunk, last, events)
        # Keep only the unconsumed tail: at most one header or control frame, since data
        # frame payloads are consumed as they arrive.  After a close frame, nothing.
        if pos < end and not self._close_received:
            self._buf = bytes(buf[pos:])

    def _on_payload(self, chunk: bytes, last: bool, events: list[Event]) -> None:
        """Add a piece of the current text or compressed message; deliver the message when
        ``last``.

        The message size was checked against the limit from the frame headers; a
        compressed message is checked again as it inflates.
        """
        if self._compressed:
            assert self._deflate is not None
            chunk = self._deflate.inflate(chunk, last, self._max_message - self._inflated)
            self._inflated += len(chunk)
            if last:
                self._compressed = False
        decoder = self._decoder
        if decoder is not None:
            try:
                text = decoder.decode(chunk, last)
            except UnicodeDecodeError as exc:
                raise InvalidPayload("text message is not valid UTF-8") from exc
            # CPython's incremental decoder holds back ED A0..ED BF (the start of a UTF-16
            # surrogate, never valid in UTF-8) as if it might still complete; fail now rather
            # than when the next byte arrives (section 8.1 fails fast).  One cheap test per
            # chunk: only a chunk ending in A0..BF can leave such a pending pair.
            if not last and chunk and 0xA0 <= chunk[-1] <= 0xBF:
                pending = decoder.getstate()[0]
                if len(pending) == 2 and pending[0] == 0xED:
                    raise InvalidPayload("text message is not valid UTF-8")
            text_parts = self._text_parts
            assert text_parts is not None
            if text:
                text_parts.append(text)
                if len(text_parts) - self._parts_joined >= _JOIN_PARTS:
                    self._parts_joined = _join_recent(text_parts, self._parts_joined)
            if last:
                self._decoder = None
                self._msg_opcode = 0
                events.append(TextMessage("".join(text_parts)))
                self._text_parts = None
                self._parts_joined = 0
            return
        message = self._message
        assert message is not None
        if chunk:
            message.add(chunk, 0, len(chunk), None, 0, self._max_message)
        if last:
            self._msg_opcode = 0
            events.append(BinaryMessage(message.take()))

    def _check_rsv(self, rsv: int, opcode: int) -> None:
        """RSV bits need a negotiated extension that defines them (RFC 6455 section 5.2);
        permessage-deflate sets RSV1 on the first frame of a data message only (RFC 7692
        section 6)."""
        if self._deflate is None or rsv != RSV1:
            raise ProtocolError("reserved bits set without a negotiated extension")
        if opcode >= 0x8:
            raise ProtocolError("RSV1 set on a control frame")
        if opcode == 0:
            raise ProtocolError("RSV1 set on a continuation frame")

    def _on_control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        if opcode == Opcode.PING:
            if not self._close_sent:
                self._queue(encode_frame(Opcode.PONG, payload, mask=self._mask_out))
            events.append(Ping(payload))
        elif opcode == Opcode.PONG:
            events.append(Pong(payload))
        else:
            code, reason = parse_close_payload(payload)
            self._on_close_frame(code, reason)
            events.append(CloseReceived(code, reason))

    def _on_close_frame(self, code: int, reason: str) -> None:
        """The peer's close frame: echo it unless we started the close (section 5.5.1)."""
        self._close_received = True
        self.close_code = code
        self.close_reason = reason
        if not self._close_sent:
            echo = None if code == CloseCode.NO_STATUS_RCVD else code
            self._queue_close(encode_close_payload(echo))
        self.state = ConnectionState.CLOSED
        self._buf = b""

    def _queue(self, frame: bytes) -> None:
        out = self._out
        if out is None:
            self._out = [frame]
        else:
            out.append(frame)
        self.has_data_to_send = True

    def _queue_close(self, payload: bytes) -> None:
        """Queue our close frame in this version's form (hixie-76's ``0xFF 0x00``; hixie-75
        has none) and remember it is sent."""
        self._close_sent = True
        self._close_at = len(self._out) if self._out else 0
        if self.version is ProtocolVersion.HIXIE_76:
            self._queue(hixie.CLOSING_FRAME)
        elif not self.version.is_hixie:
            self._queue(encode_frame(Opcode.CLOSE, payload, mask=self._mask_out))

    def _fail(self, code: int, reason: str, events: list[Event]) -> None:
        """Fail the WebSocket connection (RFC 6455 section 7.1.7): send a close frame with
        ``code`` unless one was sent, then the transport is to be closed."""
        if not self._close_sent:
            self._queue_close(encode_close_payload(code, _truncate_reason(reason)))
        self.state = ConnectionState.CLOSED
        self.close_code = code
        self.close_reason = reason
        self._buf = b""
        self._frame = None
        self._message = None
        self._text_parts = None
        self._parts_joined = 0
        self._decoder = None
        self._compressed = False
        events.append(ProtocolViolation(code, reason))

    # -- sending ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.state is not _OPEN:
            raise ConnectionClosed(self.close_code or CloseCode.NORMAL_CLOSURE, self.close_reason)

    def encode_message(self, message: str | BytesLike, *, compress: bool = True) -> bytes:
        """The frame bytes that carry ``message`` on this connection, compressed when
        permessage-deflate is on and the message is not tiny (``compress=False``: never).

        With compression and context takeover the result depends on every message sent
        before: write it, or the peer's decompressor falls out of step.
        """
        if self._hixie is not None:
            return self._encode_hixie(message)
        key = _urandom(4) if self._mask_out else None
        if self._deflate is None or not compress:
            # The common case in one C call: header and payload (a str encoded as UTF-8
            # straight into the frame) in one allocation.
            first = FIN_TEXT if isinstance(message, str) else FIN_BINARY
            return build_frame(first, message, key)
        first, data = self._payload(message, compress)
        return build_frame(first, data, key)

    def encode_message_parts(
        self, message: str | BytesLike, *, compress: bool = True
    ) -> tuple[bytes, bytes]:
        """The frame of :meth:`encode_message` as ``(header, payload)``, for an I/O layer
        that writes a large message with ``transport.writelines([header, payload])``
        instead of copying its payload into one frame buffer.

        ``header + payload`` is the frame (for the client role, masked with a fresh key, so
        it differs from one call to the next).  ``payload`` is ``message`` itself when it is
        ``bytes`` and goes out unmasked and uncompressed: no copy.  A ``bytearray`` or
        ``memoryview`` is copied, since the transport may hold the buffer after the call
        returns.  Worth it from a few KiB on; below that, one ``encode_message`` buffer is
        cheaper to write.  hixie frames come whole: ``(frame, b"")``.
        """
        if self._hixie is not None:
            return self._encode_hixie(message), b""
        first, data = self._payload(message, compress)
        if self._mask_out:
            key = _urandom(4)
            return build_header(first, len(data), key), apply_mask(data, key)
        payload = data if type(data) is bytes else bytes(data)
        return build_header(first, len(payload), None), payload

    def _payload(self, message: str | BytesLike, compress: bool) -> tuple[int, BytesLike]:
        """Byte 0 of the frame (FIN, RSV1 when compressed, opcode) and its unmasked payload."""
        if isinstance(message, str):
            first = FIN_TEXT
            data: BytesLike = message.encode("utf-8")
        else:
            first = FIN_BINARY
            data = message
        deflate = self._deflate
        if compress and deflate is not None and len(data) >= deflate.min_size:
            return first | RSV1, deflate.deflate(bytes(data))
        return first, data

    @staticmethod
    def _encode_hixie(message: str | BytesLike) -> bytes:
        if not isinstance(message, str):
            raise TypeError("hixie-75 and hixie-76 carry text messages only")
        return hixie.encode_text(message)

    def encode_shared(self, message: str | BytesLike) -> bytes:
        """The frame for a broadcast: the same bytes serve every server-role connection of
        this :attr:`frame_family`, so a group encodes (and compresses) once.

        Compressed only without context takeover; otherwise sent uncompressed, which RFC
        7692 section 6 allows per message, rather than compressed once per member.
        """
        if self._mask_out:
            raise TypeError("client frames are masked with a fresh key each: never shared")
        deflate = self._deflate
        return self.encode_message(
            message, compress=deflate is not None and deflate.shared_key is not None
        )

    @property
    def frame_family(self) -> str:
        """Connections of one family can share the frames of :meth:`encode_shared`."""
        if self._hixie is not None:
            return "hixie"
        key = self._deflate.shared_key if self._deflate is not None else None
        return f"rfc6455+{key}" if key else "rfc6455"

    def send(self, message: str | BytesLike) -> None:
        """Queue a text (``str``) or binary message as one frame."""
        if self.state is not _OPEN:
            self._check_open()  # raises
        frame = self.encode_message(message)
        out = self._out
        if out is None:
            self._out = [frame]
        else:
            out.append(frame)
        self.has_data_to_send = True

    def send_text(self, text: str) -> None:
        self.send(text)

    def send_binary(self, data: BytesLike) -> None:
        self.send(data)

    def send_encoded(self, frame: bytes) -> None:
        """Queue a frame made by :meth:`encode_shared` of a connection of our family."""
        self._check_open()
        self._queue(frame)

    def send_ping(self, payload: BytesLike = b"") -> None:
        self._send_control(Opcode.PING, payload)

    def send_pong(self, payload: BytesLike = b"") -> None:
        self._send_control(Opcode.PONG, payload)

    def _send_control(self, opcode: Opcode, payload: BytesLike) -> None:
        if self._hixie is not None:
            raise TypeError("hixie-75 and hixie-76 have no ping or pong frames")
        if len(payload) > 125:
            raise ValueError("control frame payload over 125 bytes")
        self._check_open()
        self._queue(encode_frame(opcode, payload, mask=self._mask_out))

    def send_close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake; a second call does nothing, nor a call once the
        connection is closed (after the transport ended, there is nobody to tell).

        ``code=None`` sends a close frame without status.  hixie-75 has no closing
        handshake: the connection is closed at once.
        """
        if self._close_sent or self.state is ConnectionState.CLOSED:
            return
        payload = encode_close_payload(code, reason)  # validates before any state change
        self._queue_close(payload)
        if self.version is ProtocolVersion.HIXIE_75:
            self.state = ConnectionState.CLOSED
        else:
            self.state = ConnectionState.CLOSING
        self.close_code = CloseCode.NO_STATUS_RCVD if code is None else code
        self.close_reason = reason

    def data_to_send(self, *, before_close: bool = False) -> bytes:
        """Everything queued for the peer since the last call (``b""`` if nothing).

        With ``before_close``, our close frame (always the last thing queued) stays queued
        for the next call: a server answering the messages that came before the peer's
        close writes the pongs of that read first, its answers next, the close frame last.
        """
        out = self._out
        if not out:
            return b""
        if before_close and self._close_sent:
            data = b"".join(out[: self._close_at])
            del out[: self._close_at]
            self._close_at = 0
            self.has_data_to_send = bool(out)  # our close frame, left for the next call
            return data
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.has_data_to_send = False
        return data

    def release_memory(self) -> None:
        """Free what an idle connection need not hold: the permessage-deflate zlib state
        (tens of KiB) and empty buffers.  Call it when the connection has been idle for a
        while, e.g. from the keepalive timer; the next message allocates what it needs again.
        Does nothing to a message being received."""
        if self._msg_opcode or self._frame is not None:
            return
        if self._deflate is not None:
            self._deflate.release()
        self._message = None
        if not self._out:
            self._out = None

    @property
    def close_sent(self) -> bool:
        return self._close_sent

    @property
    def close_received(self) -> bool:
        return self._close_received


def _truncate_reason(reason: str) -> str:
    """Shorten a reason to fit a close frame (123 bytes of UTF-8) without splitting a
    character."""
    data = reason.encode("utf-8")
    if len(data) <= 123:
        return reason
    return data[:123].decode("utf-8", "ignore")


def _join_recent(parts: list[str], start: int) -> int:
    """Join ``parts[start:]`` into one part if they are small on average; returns the index
    from which parts count as recent for the next call (amortised O(1) per part)."""
    recent = parts[start:]
    if sum(map(len, recent)) < len(recent) * _SMALL_PART:
        parts[start:] = ["".join(recent)]
    return len(parts)
