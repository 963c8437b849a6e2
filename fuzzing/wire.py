"""An independent reader of the bytes on the wire: requests as a client sent them, responses
as the server wrote them.

The server targets check the server's output with this module, never with the server's own
code (``stargate.server.response`` could share a bug with its checker).  A response must have
a status line of RFC 9112 section 4, header fields with token names and values free of CR,
LF, NUL and other controls (RFC 9110 section 5.5, so nothing can split it), and framing a
client can follow (RFC 9112 section 6.3): never Content-Length beside Transfer-Encoding,
one Content-Length value, ``chunked`` as the only coding, well-formed chunks, no body after
a HEAD or in a 1xx/204/304, and a body read to the end of the connection only when the
response says ``Connection: close``.

The request side is deliberately naive (a head ends at the first CRLFCRLF; values lose their
surrounding white space as RFC 9110 section 5.5 says): it tells what a client meant to send,
so that an upgrade's ``Sec-WebSocket-Accept`` and Origin can be checked against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) ([\t\x20-\x7e\x80-\xff]*)\Z")
_FIELD_LINE = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*\Z"
)
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(;[\t\x20-\x7e\x80-\xff]*)?\Z")


class Malformed(AssertionError):
    """The server wrote something a client cannot read as HTTP/1.1 responses."""


class Truncated(Malformed):
    """The bytes end inside a response."""


@dataclass
class Response:
    """One response as a client reads it."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    #: The exact bytes of the response (head and body) in the stream.
    raw: bytes = b""

    def get_all(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    def tokens(self, name: str) -> list[str]:
        """The comma-separated tokens of every ``name`` field, lower-cased."""
        return [
            token.strip().lower()
            for value in self.get_all(name)
            for token in value.split(",")
            if token.strip()
        ]

    @property
    def closes(self) -> bool:
        """Whether the server says the connection ends after this response."""
        return "close" in self.tokens("Connection")


@dataclass
class Stream:
    """What a client read: interim (1xx) and final responses in order, and what followed a
    ``101 Switching Protocols`` (no longer HTTP)."""

    interim: list[Response] = field(default_factory=list)
    final: list[Response] = field(default_factory=list)
    switched: Response | None = None
    after_switch: bytes = b""
    #: The bytes ended inside a response (allowed only when not ``complete``).
    truncated: bool = False


def _head(data: bytes, pos: int) -> tuple[Response, int]:
    end = data.find(b"\r\n\r\n", pos)
    if end < 0:
        raise Truncated(f"incomplete response head at offset {pos}: {data[pos : pos + 200]!r}")
    lines = data[pos:end].split(b"\r\n")
    for line in lines:
        if b"\r" in line or b"\n" in line or b"\0" in line:
            raise Malformed(f"bare CR, LF or NUL in a response head line: {line!r}")
    status = _STATUS_LINE.match(lines[0])
    if status is None:
        raise Malformed(f"malformed status line {lines[0]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        match = _FIELD_LINE.match(line)
        if match is None:
            raise Malformed(f"malformed header line {line!r}")
        headers.append((match.group(1).decode("latin-1"), match.group(2).decode("latin-1")))
    response = Response(int(status.group(1)), status.group(2).decode("latin-1"), headers)
    return response, end + 4


def _chunked(data: bytes, pos: int) -> tuple[bytes, int]:
    """A chunked body (RFC 9112 section 7.1) from ``pos``: its content and where it ends."""
    body = bytearray()
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise Truncated("incomplete chunk size line")
        match = _CHUNK_SIZE.match(data[pos:eol])
        if match is None:
            raise Malformed(f"malformed chunk size line {data[pos:eol][:80]!r}")
        size = int(match.group(1), 16)
        pos = eol + 2
        if size == 0:
            break
        if len(data) < pos + size + 2:
            raise Truncated("incomplete chunk")
        body += data[pos : pos + size]
        if data[pos + size : pos + size + 2] != b"\r\n":
            raise Malformed("chunk data not followed by CRLF")
        pos += size + 2
    # The trailer section: field lines, then an empty line.
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise Truncated("incomplete trailer section")
        line = data[pos:eol]
        pos = eol + 2
        if not line:
            return bytes(body), pos
        if _FIELD_LINE.match(line) is None:
            raise Malformed(f"malformed trailer line {line!r}")


def _framing(response: Response) -> tuple[int | None, bool]:
    """``(Content-Length or None, chunked)``, refusing what a client cannot frame."""
    lengths = response.get_all("Content-Length")
    codings = response.tokens("Transfer-Encoding")
    if lengths and codings:
        raise Malformed("Content-Length and Transfer-Encoding in one response")
    if codings and codings != ["chunked"]:
        raise Malformed(f"Transfer-Encoding {codings!r}: chunked is the only coding sent")
    if not lengths:
        return None, bool(codings)
    if len(set(lengths)) != 1 or not lengths[0].isdigit() or not lengths[0].isascii():
        raise Malformed(f"Content-Length {lengths!r} is not one number")
    return int(lengths[0]), False


def read_responses(
    data: bytes,
    *,
    head_request: Callable[[int], bool],
    refused: bool = False,
    complete: bool = True,
) -> Stream:
    """Read ``data`` as a client would: every response complete and framed (the last one
    may be cut short if not ``complete``: the client went away).

    ``head_request(i)`` tells whether the ``i``-th final response answers a HEAD (its head
    says how long a body would have been, and none follows).  When the server also refused
    something (``refused``), the last response may be that refusal, which has a body even if
    it stands where a HEAD's answer would: the reader tries both.
    """
    stream = Stream()
    try:
        _read(data, stream, head_request, refused)
    except Truncated:
        if complete:
            raise
        stream.truncated = True
    return stream


def _read(
    data: bytes,
    stream: Stream,
    head_request: Callable[[int], bool],
    refused: bool,
) -> None:
    pos = 0
    while pos < len(data):
        response, body_at = _head(data, pos)
        if response.status == 101:
            response.raw = data[pos:body_at]
            stream.switched = response
            stream.after_switch = data[body_at:]
            return
        if response.status < 200:
            if response.get_all("Content-Length") or response.get_all("Transfer-Encoding"):
                raise Malformed(f"a {response.status} response with framing headers")
            response.raw = data[pos:body_at]
            stream.interim.append(response)
            pos = body_at
            continue
        length, chunked = _framing(response)
        index = len(stream.final)
        end = body_at
        bodiless = response.status in (204, 304) or head_request(index)
        if bodiless and response.status in (204, 304) and (length or chunked):
            raise Malformed(f"a {response.status} response announcing a body")
        if (
            bodiless
            and head_request(index)
            and refused
            and body_at < len(data)
            and not data.startswith(b"HTTP/1.1 ", body_at)
        ):
            bodiless = False  # not a HEAD's answer: the refusal behind it, with its body
        if not bodiless:
            if chunked:
                response.body, end = _chunked(data, body_at)
            elif length is not None:
                end = body_at + length
                if end > len(data):
                    raise Truncated(f"body shorter than its Content-Length {length}")
                response.body = data[body_at:end]
            else:
                if not response.closes:
                    raise Malformed(
                        f"a {response.status} response without Content-Length, chunked "
                        "coding or Connection: close: the client cannot find its end"
                    )
                end = len(data)
                response.body = data[body_at:]
        response.raw = data[pos:end]
        stream.final.append(response)
        pos = end
        if response.closes and pos < len(data):
            raise Malformed(
                f"{len(data) - pos} bytes after a response that said Connection: close: "
                f"{data[pos : pos + 80]!r}"
            )


@dataclass
class SentRequest:
    """A request head as the client sent it (the naive reading: see the module docstring)."""

    request_line: str
    headers: list[tuple[str, str]]
    #: The bytes after the head (hixie-76 key3, a body, frames, further requests).
    rest: bytes

    def get_all(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]

    @property
    def method(self) -> str:
        return next(iter(self.request_line.split()), "")


def sent_requests(data: bytes) -> list[SentRequest]:
    """The heads in ``data`` one after another, skipping bodies framed by Content-Length.

    Values keep their trailing white space: :func:`ows` is left to the caller.
    """
    requests: list[SentRequest] = []
    pos = 0
    while pos < len(data):
        # RFC 9112 section 2.2: empty lines before a request line are ignored (the server
        # does so too).
        while pos < len(data) and data[pos] in b"\r\n":
            pos += 1
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        lines = data[pos:end].decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers.append((name, value.lstrip(" \t")))
        rest = data[end + 4 :]
        requests.append(SentRequest(lines[0], headers, rest))
        lengths = [v for n, v in headers if n.lower() == "content-length"]
        length = (
            int(lengths[0].strip()) if len(lengths) == 1 and lengths[0].strip().isdigit() else 0
        )
        pos = end + 4 + length
    return requests


def ows(value: str) -> str:
    """A field value without its surrounding white space (RFC 9110 section 5.5)."""
    return value.strip(" \t")
