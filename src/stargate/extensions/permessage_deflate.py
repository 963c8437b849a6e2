"""permessage-deflate (RFC 7692): negotiation and per-message compression, sans-I/O.

Memory is the cost that matters with many connections, so the server's defaults are small:
a 4 KiB compression window (``server_max_window_bits=12``) and ``mem_level=5`` make the
compressor about 32 KiB (zlib: ``2**(wbits+2) + 2**(mem_level+9)``), and browsers that offer
``client_max_window_bits`` are asked for 12 too, so the decompressor keeps a 4 KiB window
plus about 7 KiB of state.  Decompression never produces more than the message size limit:
a deflate bomb fails with 1009 after at most that many bytes.

zlib state exists only while it is needed: the compressor and decompressor are made for
the first message that needs them (an idle connection with the extension negotiated holds
neither: measured in tests/extensions/test_permessage_deflate.py, a few hundred bytes), are
dropped after each message in a direction without context takeover, and
:meth:`PerMessageDeflate.release` drops them between messages otherwise (an I/O layer calls
it on an idle connection): our compressor may start afresh at any message (section 7.2.1
lets a sender use less context than agreed), and the decompressor is rebuilt from the last
window of what the peer sent (``zdict``), which is all its compressor can refer back to.
"""

from __future__ import annotations

import re
import sys
import zlib
from dataclasses import dataclass

from ..errors import InvalidPayload, MessageTooBig

NAME = "permessage-deflate"

#: RFC 7692 section 7.2.1: the four bytes a sync flush ends with, stripped on the wire.
_TAIL = b"\x00\x00\xff\xff"
_WINDOW_BITS = re.compile(r"(?:[89]|1[0-5])\Z")  # 8-15, no leading zero (section 7.1.2)


class PerMessageDeflate:
    """The negotiated extension on one connection: compresses what we send, decompresses
    what we receive.

    ``inflate_*`` describe the peer's compressor, ``deflate_*`` ours.  Without context
    takeover, a fresh (de)compressor serves every message.
    """

    __slots__ = (
        "_deflate_nct",
        "_deflater",
        "_inflate_bits",
        "_inflate_nct",
        "_inflate_window",
        "_inflater",
        "deflate_bits",
        "level",
        "mem_level",
        "min_size",
    )

    def __init__(
        self,
        *,
        inflate_window_bits: int = 15,
        inflate_no_context_takeover: bool = False,
        deflate_window_bits: int = 15,
        deflate_no_context_takeover: bool = False,
        level: int = 6,
        mem_level: int = 8,
        min_size: int = 0,
    ) -> None:
        if not (8 <= deflate_window_bits <= 15 and 8 <= inflate_window_bits <= 15):
            raise ValueError("window bits must be 8 to 15")
        if deflate_window_bits == 8:
            # zlib cannot compress with a 256-byte window.  Section 6 lets a sender leave
            # any message uncompressed, so an agreed 8-bit window means: never compress.
            min_size = sys.maxsize
            deflate_window_bits = 9
        # A stream made with an 8-bit window inflates fine with a 9-bit one; zlib refuses 8
        # for raw deflate in some versions.
        self._inflate_bits = max(inflate_window_bits, 9)
        self._inflate_nct = inflate_no_context_takeover
        self.deflate_bits = deflate_window_bits
        self._deflate_nct = deflate_no_context_takeover
        self.level = level
        self.mem_level = mem_level
        #: Messages shorter than this are sent uncompressed (RSV1 clear), which section 6
        #: allows per message: compressing a few bytes costs more than it saves.
        self.min_size = min_size
        # Made when first needed (see the module docstring).  With context takeover from
        # the peer, _inflate_window keeps the last 2**bits bytes it sent once the
        # decompressor is released, to rebuild it.
        self._inflater: zlib._Decompress | None = None
        self._deflater: zlib._Compress | None = None
        self._inflate_window = b""

    def _new_deflater(self) -> zlib._Compress:
        return zlib.compressobj(self.level, zlib.DEFLATED, -self.deflate_bits, self.mem_level)

    def _new_inflater(self) -> zlib._Decompress:
        if self._inflate_window:
            return zlib.decompressobj(-self._inflate_bits, zdict=self._inflate_window)
        return zlib.decompressobj(-self._inflate_bits)

    def release(self) -> None:
        """Free the zlib state between messages (never while a compressed message is being
        received); the next message that needs it makes it again.  Keeps at most the
        peer's last window (``2**inflate_window_bits`` bytes) when it takes context over."""
        self._deflater = None
        self._inflater = None

    @property
    def allocated(self) -> bool:
        """Whether any zlib state is held now."""
        return self._deflater is not None or self._inflater is not None

    @property
    def shared_key(self) -> str | None:
        """Equal for connections whose compressed frames are interchangeable (no context
        takeover on our side and the same settings), so a broadcast compresses once."""
        if not self._deflate_nct:
            return None
        return f"deflate:{self.deflate_bits}:{self.level}:{self.mem_level}:{self.min_size}"

    def inflate(self, data: bytes, last: bool, limit: int) -> bytes:
        """Decompress the next piece of a compressed message (section 7.2.2).

        ``last`` marks the message's end, where the stripped tail is put back; ``limit`` is
        how many more bytes the message may grow by.  Output beyond it is never produced.
        """
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = self._new_inflater()
        if last:
            data += _TAIL
        try:
            # One byte past the limit tells that it was passed; max_length is a C ssize_t.
            out = inflater.decompress(data, min(limit + 1, sys.maxsize))
        except zlib.error as exc:
            raise InvalidPayload(f"invalid compressed data: {exc}") from exc
        if len(out) > limit:
            raise MessageTooBig("decompressed message exceeds max_message_size")
        if self._inflate_nct:
            if last:
                self._inflater = None  # a fresh one per message: nothing to keep between
        elif last and inflater.eof:
            # The peer ended its stream with BFINAL (7.2.3.4): the next message starts a
            # new stream, with no history to refer to.
            self._inflater = None
            self._inflate_window = b""
        elif out:
            window = 1 << self._inflate_bits
            if len(out) >= window:
                self._inflate_window = out[-window:]
            else:
                self._inflate_window = self._inflate_window[len(out) - window :] + out
        return out

    def deflate(self, data: bytes) -> bytes:
        """Compress one whole message (section 7.2.1)."""
        deflater = self._deflater
        if deflater is None:
            deflater = self._new_deflater()
            if not self._deflate_nct:
                self._deflater = deflater
        out = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(_TAIL) else out


def _parse_params(params: list[tuple[str, str | None]]) -> dict[str, str | None] | None:
    """Parameters of one offer, or None when section 7 says to decline it: an unknown or
    repeated parameter, or an invalid value."""
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name in seen:
            return None
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None
        elif name == "server_max_window_bits":
            if value is None or not _WINDOW_BITS.match(value):
                return None
        elif name == "client_max_window_bits":
            if value is not None and not _WINDOW_BITS.match(value):
                return None
        else:
            return None
        seen[name] = value
    return seen


@dataclass(frozen=True, slots=True)
class PerMessageDeflateOffer:
    """The server's settings for permessage-deflate; a ``ServerExtension`` for the handshake.

    ``server_no_context_takeover`` makes us compress each message alone (no memory kept
    between messages, and broadcasts compressed once); ``client_no_context_takeover`` asks
    the client for the same.  ``server_max_window_bits`` is our window;
    ``client_max_window_bits`` is what we ask of a client that offers to limit its window.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 12
    client_max_window_bits: int | None = 12
    compress_level: int = 6
    mem_level: int = 5
    min_size: int = 16

    def __post_init__(self) -> None:
        if not 9 <= self.server_max_window_bits <= 15:
            raise ValueError("server_max_window_bits must be 9-15 (zlib cannot do 8)")
        if self.client_max_window_bits is not None and not (8 <= self.client_max_window_bits <= 15):
            raise ValueError("client_max_window_bits must be 8-15")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("mem_level must be 1-9")
        if not 0 <= self.compress_level <= 9:
            raise ValueError("compress_level must be 0-9")

    @property
    def name(self) -> str:
        return NAME

    def accept(self, params: list[tuple[str, str | None]]) -> tuple[str, object] | None:
        """Accept one client offer (RFC 7692 section 7.1), or decline it with None."""
        offer = _parse_params(params)
        if offer is None:
            return None
        response = [NAME]
        server_nct = self.server_no_context_takeover or "server_no_context_takeover" in offer
        if server_nct:
            response.append("server_no_context_takeover")
        client_nct = self.client_no_context_takeover or "client_no_context_takeover" in offer
        if client_nct:
            response.append("client_no_context_takeover")
        server_bits = self.server_max_window_bits
        requested = offer.get("server_max_window_bits")
        if requested is not None:
            server_bits = min(server_bits, int(requested))  # 8: we send uncompressed
        if server_bits < 15 or requested is not None:
            response.append(f"server_max_window_bits={server_bits}")
        client_bits = 15
        if "client_max_window_bits" in offer:
            limit = offer["client_max_window_bits"]
            wanted = self.client_max_window_bits
            if limit is not None:
                wanted = min(wanted or 15, int(limit))
            if wanted is not None:
                client_bits = wanted
                response.append(f"client_max_window_bits={client_bits}")
        session = PerMessageDeflate(
            inflate_window_bits=client_bits,
            inflate_no_context_takeover=client_nct,
            deflate_window_bits=server_bits,
            deflate_no_context_takeover=server_nct,
            level=self.compress_level,
            mem_level=self.mem_level,
            min_size=self.min_size,
        )
        return "; ".join(response), session


@dataclass(frozen=True, slots=True)
class PerMessageDeflateClientOffer:
    """The client's side: what to offer, and checking the server's response (section 7.1).

    By default the client offers ``client_max_window_bits`` (so the server may ask for a
    smaller window) and accepts any server settings.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = 15
    compress_level: int = 6
    mem_level: int = 8
    min_size: int = 16

    def __post_init__(self) -> None:
        # Checked here, as the server's settings are: a window outside 8-15 would be
        # offered and declined, and a bad level would fail the first message sent.
        for bits in (self.server_max_window_bits, self.client_max_window_bits):
            if bits is not None and not 8 <= bits <= 15:
                raise ValueError("server_max_window_bits and client_max_window_bits must be 8-15")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("mem_level must be 1-9")
        if not 0 <= self.compress_level <= 9:
            raise ValueError("compress_level must be 0-9")

    @property
    def name(self) -> str:
        return NAME

    def header_value(self) -> str:
        """The ``Sec-WebSocket-Extensions`` offer."""
        parts = [NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            if self.client_max_window_bits == 15:
                parts.append("client_max_window_bits")
            else:
                parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)

    def accept_response(self, params: list[tuple[str, str | None]]) -> PerMessageDeflate:
        """The session the server's response agrees to; ValueError if the response is not
        a valid answer to our offer (the client must then fail the connection)."""
        response = _parse_params(params)
        if response is None:
            raise ValueError("malformed or duplicate permessage-deflate parameters")
        server_bits_value = response.get("server_max_window_bits")
        server_bits = 15 if server_bits_value is None else int(server_bits_value)
        if self.server_max_window_bits is not None and server_bits > self.server_max_window_bits:
            raise ValueError("server_max_window_bits larger than offered")
        if self.server_no_context_takeover and "server_no_context_takeover" not in response:
            raise ValueError("server_no_context_takeover was requested but not accepted")
        client_bits = self.client_max_window_bits or 15
        if "client_max_window_bits" in response:
            value = response["client_max_window_bits"]
            if self.client_max_window_bits is None or value is None:
                raise ValueError("client_max_window_bits was not offered or has no value")
            # Section 7.1.2.2: the server may only narrow the window we offered.
            if int(value) > self.client_max_window_bits:
                raise ValueError("client_max_window_bits larger than offered")
            client_bits = int(value)
        return PerMessageDeflate(
            inflate_window_bits=server_bits,
            inflate_no_context_takeover="server_no_context_takeover" in response,
            deflate_window_bits=client_bits,
            deflate_no_context_takeover=self.client_no_context_takeover
            or "client_no_context_takeover" in response,
            level=self.compress_level,
            mem_level=self.mem_level,
            min_size=self.min_size,
        )
