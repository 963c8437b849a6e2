"""A request as the channel reads it: its framing measured, its target parsed.

The channel parses bytes into :class:`HttpRequest` with llhttp, which reports fields but
not where in a read they were, nor the bytes of chunk extensions.  The meters here
(:class:`HeadMeter`, :class:`LengthMeter`, :class:`ChunkMeter`) find the end of each part
of a request (head, body) in the bytes as received, so that the channel feeds the parser
one part at a time and every size limit holds at the same byte however TCP cut them.

:func:`parse_target` decides what the request-target names (RFC 9112 section 3.2) before
anything else sees it, so neither the WSGI environ nor the upgrade decision ever gets
``http://host/x`` as a path or a ``#fragment`` in it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import urlsplit

#: RFC 9110 section 4.2.1 / RFC 3986 section 3.2: host (an IP-literal in brackets or a
#: reg-name) and an optional port of digits; no userinfo, nothing that could end a header.
_AUTHORITY = re.compile(r"(\[[0-9A-Za-z:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)(:[0-9]*)?\Z")


def valid_authority(value: str) -> bool:
    """``uri-host [":" port]`` (RFC 9112 section 3.2): what a Host field or an absolute-form
    target may name, and nothing (userinfo, a path, quotes) that could smuggle past it."""
    return _AUTHORITY.match(value) is not None


class BadTarget(ValueError):
    """The request-target is of no form this server serves (400, or 405 for CONNECT)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    """What a request-target names: ``path`` (still percent-encoded), ``query``, and for the
    absolute form the ``authority`` that replaces the Host header (RFC 9112 3.2.2)."""

    path: str
    query: str
    authority: str | None = None
    #: Whether the target had a ``?``, even with nothing after it: ``/demo?`` is not
    #: ``/demo`` (RFC 3986 section 6.2.3), and a hixie client compares the Location it
    #: gets with the URL it opened.
    has_query: bool = False

    @property
    def resource(self) -> str:
        """Path and query as the client wrote them (the fragment and any authority aside)."""
        return f"{self.path}?{self.query}" if self.has_query or self.query else self.path


def parse_target(method: str, target: str) -> Target:
    """The four forms of RFC 9112 section 3.2.

    - origin-form ``/path?query``: the usual one;
    - absolute-form ``http://host/path?query``: path and query from it, and its authority
      stands for the Host header, which the server MUST then ignore (section 3.2.2);
    - asterisk-form ``*``: only for a server-wide ``OPTIONS`` (section 3.2.4);
    - authority-form ``host:port``: only for ``CONNECT``, which a server that is no proxy
      refuses (405).

    A fragment is not part of a request-target (section 3.2); a client that sends one
    anyway gets it dropped rather than seen as part of the path.
    """
    if method == "CONNECT":
        raise BadTarget("CONNECT is not supported: this server is not a proxy", 405)
    target = target.partition("#")[0]
    if target.startswith("/"):
        path, question, query = target.partition("?")
        return Target(path, query, has_query=bool(question))
    if target == "*":
        if method != "OPTIONS":
            raise BadTarget("the asterisk-form target is for OPTIONS only")
        return Target("*", "")
    scheme, sep, _ = target.partition("://")
    if sep and scheme.lower() in ("http", "https", "ws", "wss"):
        try:
            parts = urlsplit(target)
        except ValueError as exc:
            raise BadTarget(f"malformed absolute-form target: {exc}") from None
        if not valid_authority(parts.netloc):
            # It replaces the Host header (section 3.2.2): a host, no userinfo.
            raise BadTarget(f"absolute-form authority {parts.netloc[:80]!r} is not host[:port]")
        return Target(parts.path or "/", parts.query, parts.netloc, has_query="?" in target)
    raise BadTarget(f"request-target {target[:80]!r} is of no known form")


@dataclass(slots=True)
class HttpRequest:
    """A request as the channel hands it over: head parsed, body complete."""

    method: str
    target: str
    http_version: str
    headers: list[tuple[str, str]]
    #: The body, readable from its start: in memory, or a temporary file if it was large.
    body: IO[bytes] = field(default_factory=io.BytesIO)
    body_size: int = 0
    keep_alive: bool = True
    upgrade: bool = False
    #: Bytes that followed an upgrade request's head (hixie-76 key3, early frames).
    trailing: bytearray = field(default_factory=bytearray)
    #: The parsed target; the channel sets it from ``target`` (``parse_target``).
    parsed: Target = field(default_factory=lambda: Target("/", ""))


# -- the framing of a request, measured as it arrives ----------------------------------------

#: The empty line that ends a head: the last field line's CRLF and its own (RFC 9112 2.1).
_HEAD_END = b"\r\n\r\n"
#: Empty lines before a request line: ignored (RFC 9112 section 2.2), and llhttp skips any
#: mix of CR and LF there.
_EMPTY_LINES = re.compile(rb"[\r\n]*")
_HEX_DIGITS = re.compile(rb"[0-9A-Fa-f]*")
#: The framing between two chunks, whole: the CRLF after data, the next size line.
_NEXT_CHUNK = re.compile(rb"\r\n([0-9A-Fa-f]*)[^\n]*\n")
#: A chunk size past this overflows llhttp (which refuses it): no need to count further.
_SIZE_OVERFLOW = 1 << 64
#: What a meter answers when the parser goes on past the end it found: it cannot happen
#: with llhttp's grammar (the fuzz targets check that it never does), and if it did,
#: guessing where the next request starts would be request smuggling's opening, so the
#: connection is refused instead.
UNFRAMED = (400, "cannot tell where the request ends")


def _matched(pattern: re.Pattern[bytes], data: bytes, start: int, end: int) -> int:
    """Where a match of ``pattern`` (one that may be empty) at ``start`` ends."""
    match = pattern.match(data, start, end)
    return start if match is None else match.end()


class HeadMeter:
    """A request head as it arrives, held to ``limit`` bytes however it is cut into reads.

    The head is the request line, the field lines and the empty line that ends them, each
    line with its CRLF (RFC 9112 section 2.1); empty lines before the request line are not
    part of it (section 2.2).  :meth:`scan` tells where in a read the head ends, or where
    it grows past ``limit``; the parser is fed no byte past that, so the same bytes get the
    same answer in one read or in many: 431, or 414 when the request line alone is longer
    than ``limit`` (RFC 9112 section 3: a target longer than the server parses MUST get
    414 URI Too Long).
    """

    __slots__ = ("_line_ended", "_tail", "complete", "limit", "refusal", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Bytes of the head so far.
        self.size = 0
        #: Whether the head's empty line was scanned.
        self.complete = False
        #: ``(status, reason)`` once the head is too large.
        self.refusal: tuple[int, str] | None = None
        self._line_ended = False  # the request line's LF was scanned
        self._tail = b""  # the last bytes of the head so far: its end may straddle reads

    def scan(self, data: bytes, start: int) -> int:
        """Measure ``data[start:]``: the position after the head's end, or the end of
        ``data`` if the head goes on, or the position where it passes ``limit`` (then
        ``refusal`` is set)."""
        if self.complete:
            self.refusal = UNFRAMED
            return start
        size = len(data)
        if self.size == 0:
            start = _matched(_EMPTY_LINES, data, start, size)
            if start == size:
                return size
        stop = min(size, start + self.limit - self.size)
        end = -1
        if self._tail:  # an end of head begun in the previous read
            at = (self._tail + data[start : start + 3]).find(_HEAD_END)
            if at != -1:
                end = start + at + len(_HEAD_END) - len(self._tail)
        if end == -1:
            at = data.find(_HEAD_END, start, stop)
            if at != -1:
                end = at + len(_HEAD_END)
        if end != -1 and end <= stop:
            self.complete = True
            stop = end
        if not self._line_ended:
            self._line_ended = data.find(b"\n", start, stop) != -1
        if not self.complete and size > stop:
            if self._line_ended:
                self.refusal = (431, "request header block too large")
            else:
                self.refusal = (414, "request-target too long")
        self.size += stop - start
        self._tail = (self._tail + data[max(start, stop - 3) : stop])[-3:]
        return stop


class LengthMeter:
    """A body framed by Content-Length (RFC 9112 section 6.2): it ends ``length`` bytes on."""

    __slots__ = ("left", "refusal")

    def __init__(self, length: int) -> None:
        self.left = length
        self.refusal: tuple[int, str] | None = None

    @property
    def complete(self) -> bool:
        """Whether the whole body was scanned."""
        return not self.left

    def scan(self, data: bytes, start: int) -> int:
        """The position where the body ends in ``data``, or the end of ``data``."""
        if not self.left:
            self.refusal = UNFRAMED
            return start
        end = min(len(data), start + self.left)
        self.left -= end - start
        return end


class ChunkMeter:
    """The framing of a chunked body (RFC 9112 section 7.1), which no byte of data pays for.

    Chunk-size lines (with their extensions and leading zeros), the CRLF after each
    chunk's data, and the trailer section are counted: at most ``limit`` bytes of framing
    between two bytes of data, so a body cannot go on for ever without a byte of it
    counting toward the body limit (RFC 9112 section 7.1.1: a server ought to limit chunk
    extensions and answer 4xx past it).  The channel uses ``max_header_size`` as the
    limit: a chunk line or a trailer section is no larger than a head would be.
    :meth:`scan` also finds where the body ends, so the parser is fed no further.
    """

    __slots__ = ("_digits", "_left", "_line", "_size", "_state", "framing", "limit", "refusal")

    _SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Bytes of framing since the last byte of data.
        self.framing = 0
        self.refusal: tuple[int, str] | None = None
        self._state = self._SIZE
        self._size = 0  # the chunk size read so far
        self._digits = True  # still in the chunk size's hex digits
        self._left = 0  # bytes of the current chunk's data still to come
        self._line = 0  # bytes of the current trailer line

    @property
    def complete(self) -> bool:
        """Whether the last chunk and the trailer section were scanned."""
        return self._state == self._DONE

    def scan(self, data: bytes, start: int) -> int:
        """Measure ``data[start:]``: the position after the body's end, or the end of
        ``data``, or the position where the framing passes ``limit`` (``refusal`` set)."""
        size = len(data)
        i = start
        while i < size:
            state = self._state
            if state == self._DATA or (state == self._DATA_END and not self._line):
                i = self._chunks(data, i)
                if i == size:
                    break
                state = self._state
            if state == self._DONE:
                self.refusal = UNFRAMED
                return i
            # A line of framing, up to its LF, within the room left (also a line the fast
            # path of _chunks leaves: one cut by the end of the read, or too long).
            stop = min(size, i + self.limit - self.framing)
            lf = data.find(b"\n", i, stop)
            end = stop if lf == -1 else lf + 1
            if state == self._SIZE and self._digits:
                digits = _matched(_HEX_DIGITS, data, i, end)
                if digits > i:
                    self._size = (self._size << 4 * (digits - i)) | int(data[i:digits], 16)
                    self._size = min(self._size, _SIZE_OVERFLOW)
                self._digits = digits == end
            self.framing += end - i
            self._line += end - i
            i = end
            if lf == -1:
                if size > stop:
                    self.refusal = (
                        (431, "trailer section too large")
                        if state == self._TRAILER
                        else (413, "chunk framing too large")
                    )
                    return i
                continue
            line, self._line = self._line, 0
            if state == self._SIZE:
                self._left, self._size, self._digits = self._size, 0, True
                self._state = self._DATA if self._left else self._TRAILER
            elif state == self._DATA_END:
                self._state = self._SIZE
            elif line <= 2:  # the empty line (CRLF) that ends the trailer section
                self._state = self._DONE
                return i
        return i

    def _chunks(self, data: bytes, i: int) -> int:
        """The common run, in locals: a chunk's data, then the CRLF after it and the next
        size line in one match, chunk after chunk.  Returns where a line needs
        :meth:`scan`'s careful reading (cut by the end of the read, too long, malformed,
        or the trailer section), or the end of ``data``."""
        size = len(data)
        left = self._left
        framing = self.framing
        while True:
            if left:
                framing = 0
                if left > size - i:
                    left -= size - i
                    i = size
                    state = self._DATA  # the read ends inside the data
                    break
                i += left
                left = 0
            match = _NEXT_CHUNK.match(data, i, i + self.limit - framing)
            if match is None:
                state = self._DATA_END
                break
            end = match.end()
            framing += end - i
            i = end
            digits = match.group(1)
            left = int(digits, 16) if digits else 0
            if left > _SIZE_OVERFLOW:
                left = _SIZE_OVERFLOW
            if not left:
                state = self._TRAILER
                break
        self._state, self._left, self.framing = state, left, framing
        return i
