"""HTTP/1.1 heads of the opening handshake: parse a request or response head, write one.

The handshake is an HTTP exchange (RFC 6455 section 4, RFC 7230 sections 3 and 5), but only its
head matters: a start line and header fields, ended by an empty line.  The parsers here are
strict where the RFCs say MUST (CRLF line ends, no obs-fold, no whitespace before the colon, no
control characters in values) and bounded (``max_header_size``), because they face the network.
The server's own HTTP parser (httptools) builds :class:`Request` directly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import HandshakeError
from ..headers import TCHAR, Headers, is_token

__all__ = [
    "Request",
    "Response",
    "find_head_end",
    "is_field_value",
    "parse_http_version",
    "parse_request",
    "parse_response",
    "resource_name",
    "serialize_fields",
    "serialize_head",
    "split_host_port",
]

# RFC 7230 section 3.1.1 request-line; the target is any visible ASCII (section 5.3).
_REQUEST_LINE_RE = re.compile("(" + TCHAR + r"+) ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])")
# RFC 7230 section 3.1.2 status-line; a missing SP before an empty reason is tolerated.
_STATUS_LINE_RE = re.compile(r"HTTP/([0-9]\.[0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
# RFC 7230 section 3.2 field-value: VCHAR, obs-text, SP and HTAB; no other control character.
_FIELD_VALUE_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# RFC 7230 section 5.4 Host = uri-host [ ":" port ] (RFC 3986 reg-name or IP-literal).
_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::([0-9]*))?")


def is_field_value(value: str) -> bool:
    """Whether ``value`` is a valid field value (RFC 7230 section 3.2): no CR, LF, NUL ..."""
    return _FIELD_VALUE_RE.fullmatch(value) is not None


def split_host_port(hostport: str) -> tuple[str, int | None] | None:
    """``(lower-cased host, port or None)`` of ``host[:port]``; None when malformed."""
    match = _HOST_RE.fullmatch(hostport)
    if match is None:
        return None
    host, port = match.groups()
    if port:
        if len(port) > 5 or int(port) > 65535:
            return None
        return host.lower(), int(port)
    return host.lower(), None


def resource_name(target: str) -> str:
    """The resource name (path and query) of an origin-form or absolute-form target.

    RFC 6455 section 4.1 item 2 (server side, RFC 7230 section 5.3.2) allows an absolute http(s)
    URI as the request target; the resource name is then its path and query.
    """
    if target.startswith("/") or "://" not in target:
        return target
    parts = urlsplit(target)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


@dataclass(frozen=True)
class Request:
    """An HTTP request head: what the server's HTTP parser (or :func:`parse_request`) read."""

    method: str
    target: str
    headers: Headers
    http_version: str = "1.1"

    @property
    def path(self) -> str:
        """The path of the resource name, without the query."""
        return resource_name(self.target).partition("?")[0]

    @property
    def query(self) -> str:
        """The part of the resource name after ``?`` (``""`` if none)."""
        return resource_name(self.target).partition("?")[2]


@dataclass(frozen=True)
class Response:
    """An HTTP response head, as read by :func:`parse_response`."""

    status: int
    reason: str
    headers: Headers
    #: The status line's HTTP-version digits (``"1.1"``): a 101 must not come as HTTP/1.0.
    http_version: str = "1.1"


def find_head_end(data: bytes | bytearray, max_header_size: int, start: int = 0) -> int | None:
    """Offset just past the CRLFCRLF ending the head, or None while incomplete.

    The head (start line, fields, blank line) may be at most ``max_header_size`` bytes; the limit
    is enforced while the head is still incomplete, so a peer cannot make us buffer more.
    ``start`` lets a stateful caller resume the search instead of rescanning (no quadratic time).
    """
    index = data.find(b"\r\n\r\n", max(0, start - 3), max_header_size)
    if index >= 0:
        return index + 4
    if len(data) >= max_header_size:
        raise HandshakeError(431, f"header block larger than {max_header_size} bytes")
    return None


def _parse_fields(lines: list[str]) -> Headers:
    """Parse header field lines (RFC 7230 section 3.2) into :class:`Headers`."""
    headers = Headers()
    for line in lines:
        if line[:1] in (" ", "\t"):
            # RFC 7230 section 3.2.4: obs-fold in a request MUST be rejected (or unfolded).
            raise HandshakeError(400, "obsolete line folding in header block")
        name, colon, value = line.partition(":")
        if not colon:
            raise HandshakeError(400, f"header line without a colon: {line[:80]!r}")
        if not is_token(name):
            # Includes whitespace before the colon, which section 3.2.4 says MUST be refused.
            raise HandshakeError(400, f"invalid header name {name[:80]!r}")
        value = value.strip(" \t")
        if not is_field_value(value):
            raise HandshakeError(400, f"control character in the value of header {name!r}")
        headers.add(name, value)
    return headers


def _split_head(data: bytes | bytearray, max_header_size: int) -> tuple[str, list[str], int] | None:
    end = find_head_end(data, max_header_size)
    if end is None:
        return None
    # Latin-1 maps every byte to a character: decoding cannot fail, and field values are
    # historically ISO-8859-1 (RFC 7230 section 3.2.4).
    lines = bytes(data[: end - 4]).decode("latin-1").split("\r\n")
    return lines[0], lines[1:], end


def parse_request(data: bytes | bytearray, *, max_header_size: int) -> tuple[Request, int] | None:
    """Parse a request head from the start of ``data``.

    Returns ``(request, bytes consumed)``, or None when the head is not complete yet (call again
    with more data).  Bytes after the head (hixie-76's key3, early frames) are not consumed.
    Raises :class:`HandshakeError` 400 for a malformed request line or header field and 431 when
    the head is (or, still incomplete, already is) longer than ``max_header_size``.

    Lines must end with CRLF (RFC 7230 section 3); a bare LF is not accepted as a terminator.
    """
    head = _split_head(data, max_header_size)
    if head is None:
        return None
    start_line, lines, end = head
    match = _REQUEST_LINE_RE.fullmatch(start_line)
    if match is None:
        raise HandshakeError(400, f"invalid request line {start_line[:100]!r}")
    method, target, version = match.groups()
    return Request(method, target, _parse_fields(lines), version), end


def parse_response(data: bytes | bytearray, *, max_header_size: int) -> tuple[Response, int] | None:
    """Parse a response head from the start of ``data``; the twin of :func:`parse_request`.

    Raises :class:`HandshakeError` (400 malformed, 431 too large) like :func:`parse_request`, so
    one fuzz target covers both; :class:`~stargate.handshake.ClientHandshake` turns it into
    :class:`~stargate.handshake.MalformedResponse`.
    """
    head = _split_head(data, max_header_size)
    if head is None:
        return None
    start_line, lines, end = head
    match = _STATUS_LINE_RE.fullmatch(start_line)
    if match is None:
        raise HandshakeError(400, f"invalid status line {start_line[:100]!r}")
    version, status, reason = match.groups()
    return Response(int(status), reason or "", _parse_fields(lines), version), end


def parse_http_version(text: str) -> tuple[int, int]:
    """``(major, minor)`` of an HTTP-version's digits (``"1.1"``); 400 when malformed."""
    major, dot, minor = text.partition(".")
    if not (dot and major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit()):
        raise HandshakeError(400, f"invalid HTTP version {text!r}")
    return int(major), int(minor)


def serialize_head(start_line: str, fields: Sequence[tuple[str, str]]) -> bytes:
    """A complete head: the start line, every field, the empty line (RFC 7230 section 3).

    Raises ValueError for a field name that is not a token or a value with a control character:
    no value may smuggle in a field or end the head (response splitting).
    """
    return start_line.encode("ascii") + serialize_fields(fields)  # a start line is ASCII


def serialize_fields(fields: Sequence[tuple[str, str]]) -> bytes:
    """The end of a head after its start line (or after a field the caller wrote): CRLF,
    every field, the empty line.  Raises ValueError as :func:`serialize_head` does."""
    text = ["\r\n"]
    for name, value in fields:
        if not is_token(name):
            raise ValueError(f"invalid header name {name!r}")
        if not is_field_value(value):
            raise ValueError(f"invalid character in the value of header {name!r}")
        text += (name, ": ", value, "\r\n")
    text.append("\r\n")
    return "".join(text).encode("latin-1")
