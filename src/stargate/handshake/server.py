"""The opening handshake of every WebSocket generation, sans-I/O, for both roles.

Server side: :func:`parse_request` (or a Request built by the server's HTTP parser), then
:func:`accept`, which either returns the exact bytes to write or raises
:class:`~stargate.errors.HandshakeError`, which :func:`reject_response` turns into an HTTP error.
Client side: :class:`ClientHandshake`.

Generations handled:

* RFC 6455 (``Sec-WebSocket-Version: 13``) and its drafts hybi-07/hybi-08 (versions 7 and 8,
  which name the origin ``Sec-WebSocket-Origin``), section 4 of the RFC;
* draft-hixie-thewebsocketprotocol-76 (``Sec-WebSocket-Key1``/``Key2`` plus 8 bytes of key3
  after the head, answered by 16 bytes of MD5), sections 4.1 and 5.2 of the draft;
* draft-hixie-thewebsocketprotocol-75 (no key at all), section 4 of the draft.

Nothing here does I/O: every function takes bytes or parsed values and returns bytes or values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http
import random
import re
import secrets
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from .errors import HandshakeError, InvalidHandshakeResponse
from .headers import Headers, has_token, is_token, parse_extensions, split_tokens
from .protocol import ProtocolVersion

__all__ = [
    "ALL_VERSIONS",
    "RFC_VERSIONS",
    "Accepted",
    "ClientAccepted",
    "ClientHandshake",
    "OriginPolicy",
    "Request",
    "Response",
    "ServerExtension",
    "accept",
    "accept_key",
    "detect_version",
    "hixie76_answer",
    "key3_length",
    "parse_request",
    "parse_response",
    "reject_response",
]

#: Every protocol generation Stargate speaks.
ALL_VERSIONS: frozenset[ProtocolVersion] = frozenset(ProtocolVersion)
#: The generations with a ``Sec-WebSocket-Version`` header and RFC 6455 framing.
RFC_VERSIONS: frozenset[ProtocolVersion] = frozenset(
    {ProtocolVersion.HYBI_07, ProtocolVersion.HYBI_08, ProtocolVersion.RFC6455}
)

#: RFC 6455 section 1.3: the GUID appended to Sec-WebSocket-Key before hashing.
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Highest version first: the order of the Sec-WebSocket-Version list sent with a 426.
_RFC_ORDER = (ProtocolVersion.RFC6455, ProtocolVersion.HYBI_08, ProtocolVersion.HYBI_07)
_VERSION_BY_HEADER = {v.value: v for v in _RFC_ORDER}
_MAX_UINT32 = 0xFFFFFFFF
_MAX_UINT32_DIGITS = len(str(_MAX_UINT32))  # 10
_DIGITS = frozenset("0123456789")  # not str.isdigit(): latin-1 has superscript digits
#: How much of a refusal's body the client keeps to show the user.
_BODY_PREFIX = 1024

# RFC 7230 section 3.1.1 request-line; the target is any visible ASCII (section 5.3).
_REQUEST_LINE_RE = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])")
# RFC 7230 section 3.1.2 status-line; a missing SP before an empty reason is tolerated.
_STATUS_LINE_RE = re.compile(r"HTTP/([0-9]\.[0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
# RFC 7230 section 3.2 field-value: VCHAR, obs-text, SP and HTAB; no other control character.
_FIELD_VALUE_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# RFC 7230 section 5.4 Host = uri-host [ ":" port ] (RFC 3986 reg-name or IP-literal).
_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::([0-9]*))?")

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


# --------------------------------------------------------------------------------------------
# Parsing request and response heads


def _resource_name(target: str) -> str:
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
        return _resource_name(self.target).partition("?")[0]

    @property
    def query(self) -> str:
        """The part of the resource name after ``?`` (``""`` if none)."""
        return _resource_name(self.target).partition("?")[2]


@dataclass(frozen=True)
class Response:
    """An HTTP response head, as read by :func:`parse_response`."""

    status: int
    reason: str
    headers: Headers


def _find_head_end(data: bytes | bytearray, max_header_size: int, start: int = 0) -> int | None:
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
        if _FIELD_VALUE_RE.fullmatch(value) is None:
            raise HandshakeError(400, f"control character in the value of header {name!r}")
        headers.add(name, value)
    return headers


def _split_head(data: bytes | bytearray, max_header_size: int) -> tuple[str, list[str], int] | None:
    end = _find_head_end(data, max_header_size)
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
    one fuzz target covers both; :class:`ClientHandshake` turns it into
    :class:`InvalidHandshakeResponse`.
    """
    head = _split_head(data, max_header_size)
    if head is None:
        return None
    start_line, lines, end = head
    match = _STATUS_LINE_RE.fullmatch(start_line)
    if match is None:
        raise HandshakeError(400, f"invalid status line {start_line[:100]!r}")
    _version, status, reason = match.groups()
    return Response(int(status), reason or "", _parse_fields(lines)), end


# --------------------------------------------------------------------------------------------
# Version detection


def _supported_header(versions: Collection[ProtocolVersion]) -> list[tuple[str, str]]:
    offered = [v.value for v in _RFC_ORDER if v in versions]
    return [("Sec-WebSocket-Version", ", ".join(offered))] if offered else []


def _single(request: Request, name: str) -> str | None:
    """The value of a field that MUST NOT appear more than once (RFC 6455 section 11.3)."""
    values = request.headers.get_all(name)
    if len(values) > 1:
        raise HandshakeError(400, f"{name} header sent more than once")
    return values[0] if values else None


def detect_version(request: Request) -> ProtocolVersion:
    """Tell which protocol generation an upgrade request speaks.

    ``Sec-WebSocket-Version`` 13, 8 or 7 name RFC 6455, hybi-08 and hybi-07.  Without it,
    ``Sec-WebSocket-Key1``/``Key2`` mark hixie-76 and a bare ``Upgrade: WebSocket`` hixie-75.
    An unknown version gets 426 with the versions we speak (RFC 6455 section 4.4), as does a
    request that is not a WebSocket upgrade at all (RFC 7231 section 6.5.15).
    """
    headers = request.headers
    version = _single(request, "Sec-WebSocket-Version")
    if version is not None:
        detected = _VERSION_BY_HEADER.get(version.strip())
        if detected is None:
            raise HandshakeError(
                426,
                f"unsupported Sec-WebSocket-Version {version!r}",
                _supported_header(ALL_VERSIONS),
            )
        return detected
    if "Sec-WebSocket-Key" in headers:
        raise HandshakeError(
            426,
            "Sec-WebSocket-Key without Sec-WebSocket-Version (RFC 6455 section 4.1 item 9)",
            _supported_header(ALL_VERSIONS),
        )
    if "Sec-WebSocket-Key1" in headers or "Sec-WebSocket-Key2" in headers:
        return ProtocolVersion.HIXIE_76
    if has_token(headers.get_all("Upgrade"), "websocket"):
        return ProtocolVersion.HIXIE_75
    raise HandshakeError(426, "not a WebSocket upgrade request", _supported_header(ALL_VERSIONS))


def key3_length(request: Request) -> int:
    """How many bytes follow the head as part of the handshake: 8 for hixie-76, else 0.

    draft-hixie-76 section 4.1 sends key3 after the blank line without a Content-Length, so the
    server must read those 8 bytes itself before calling :func:`accept`.  Never raises: a
    request that :func:`detect_version` refuses needs no extra bytes.
    """
    headers = request.headers
    if "Sec-WebSocket-Version" in headers or "Sec-WebSocket-Key" in headers:
        return 0
    if "Sec-WebSocket-Key1" in headers or "Sec-WebSocket-Key2" in headers:
        return 8
    return 0


# --------------------------------------------------------------------------------------------
# Origin policy


def _split_host_port(hostport: str) -> tuple[str, int | None] | None:
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


def _parse_entry(text: str) -> tuple[str | None, str, int | None] | None:
    """``(scheme or None, lower-cased host, port or None)`` of ``[scheme://]host[:port]``.

    With a scheme, a missing port is the scheme's default (RFC 6454 section 4 step 5), and a
    scheme without a known default needs an explicit port.  None when malformed.
    """
    scheme: str | None = None
    rest = text
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        rest = rest.rstrip("/")
        if not scheme or "/" in rest or "@" in rest:
            return None
    hostport = _split_host_port(rest)
    if hostport is None:
        return None
    host, port = hostport
    if scheme is not None and port is None:
        port = _DEFAULT_PORTS.get(scheme)
        if port is None:
            return None
    return scheme, host, port


def _parse_origin(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, effective port)`` of a serialized origin (RFC 6454 sections 4 and 6.2).

    Scheme and host are lower-cased (section 4 steps 3-4: they compare case-insensitively); a
    missing port is the scheme's default, so ``http://h`` and ``http://h:80`` are one origin.
    """
    if "://" not in origin:
        return None
    parsed = _parse_entry(origin)
    if parsed is None:
        return None
    scheme, host, port = parsed
    assert scheme is not None and port is not None  # "://" present: _parse_entry fills both
    return scheme, host, port


def _server_origin(authority: str, secure: bool) -> tuple[str, str, int] | None:
    """The origin of the server itself: its scheme plus the ``host[:port]`` it is reached at.

    An http(s) page served from the same place has this origin (RFC 6454 section 4), so an
    upgrade served over TLS (``wss``) is same-origin with ``https`` pages, a plain one with
    ``http`` pages; a ``Host`` without a port means the scheme's default port.
    """
    scheme = "https" if secure else "http"
    hostport = _split_host_port(authority)
    if hostport is None:
        return None
    host, port = hostport
    return scheme, host, _DEFAULT_PORTS[scheme] if port is None else port


@dataclass(frozen=True)
class OriginPolicy:
    """Which browser origins may open a WebSocket: the defence against cross-site hijacking.

    Browsers attach cookies to cross-site WebSocket requests and do not apply the same-origin
    policy to them, so the server must check ``Origin`` itself (RFC 6455 sections 4.2.1 item 8
    and 10.2).  Origins are compared as RFC 6454 section 5 says: scheme, host and port must all
    be equal, scheme and host case-insensitively, a missing port being the scheme's default.

    * ``allowed``, each entry one of:

      - an origin with a scheme (``https://example.com``, ``http://localhost:8080``; default
        ports may be written or omitted): scheme, host and port must all match, so
        ``https://example.com`` does not allow ``http://example.com`` nor port 8443;
      - a scheme and a host pattern (``https://*.example.com``): every subdomain of
        ``example.com`` over that scheme and port (default or given), not ``example.com``
        itself;
      - a host or host pattern WITHOUT a scheme (``example.com``, ``example.com:8080``,
        ``*.example.com``): that host over ANY scheme, and over any port unless one is given.
        This is the documented meaning these entries always had; write the scheme to pin it.
      - ``"null"`` allows the opaque origin browsers send from sandboxed frames and ``file:``
        pages (refused otherwise);
      - ``"*"`` allows every request that carries an Origin, whatever its value (see
        :meth:`any`).

    * ``same_origin``: an Origin equal to the server's own origin passes.  That origin is the
      server's scheme (``http`` for ``ws``, ``https`` for ``wss``: ``secure``) with the host and
      port it is reached at: the ``Host`` header, or the ``authority`` given to :func:`accept`
      (for a trusted proxy's forwarded host).  Behind a proxy that rewrites ``Host`` or
      terminates TLS, pass those, or list the public origin in ``allowed``.
    * ``allow_missing``: requests without an Origin header (not sent by a browser, so no ambient
      cookies were lent to an attacker) pass.  An Origin header that is present but empty is
      not "missing": no browser sends one (RFC 6454 section 7.1 gives it no meaning), and it
      is refused unless ``"*"`` is allowed.
    """

    allowed: tuple[str, ...] = ()
    same_origin: bool = True
    allow_missing: bool = True

    @classmethod
    def any(cls) -> OriginPolicy:
        """A policy that allows every origin (for public, cookie-less endpoints)."""
        return cls(allowed=("*",))

    def check(self, origin: str | None, host: str | None, *, secure: bool = False) -> bool:
        """Whether a request with this ``Origin`` may be accepted by the server at ``host``.

        ``origin`` is the Origin header's value (None when absent); ``host`` is the
        ``host[:port]`` the server is reached at (the Host header unless overridden) and
        ``secure`` its scheme: True for https/wss, False for http/ws.
        """
        if origin is None:
            return self.allow_missing
        if "*" in self.allowed:
            return True
        if not origin.strip(" \t"):
            return False  # present but empty: not an origin, not "missing" either
        if origin in self.allowed:  # exact entries, including "null"
            return True
        parsed = _parse_origin(origin)
        if parsed is None:  # "null" or garbage: only an exact entry (checked above) allows it
            return False
        if self.same_origin and host is not None and parsed == _server_origin(host, secure):
            return True
        return any(self._matches(entry, parsed) for entry in self.allowed)

    @staticmethod
    def _matches(entry: str, origin: tuple[str, str, int]) -> bool:
        parsed = _parse_entry(entry)
        if parsed is None:
            return False
        entry_scheme, pattern, entry_port = parsed
        scheme, host, port = origin
        if entry_scheme is not None and entry_scheme != scheme:
            return False
        if entry_port is not None and entry_port != port:
            return False
        if pattern.startswith("*."):
            suffix = pattern[1:]  # ".example.com": a label boundary, so no "evilexample.com"
            return host.endswith(suffix) and len(host) > len(suffix)
        return pattern == host


# --------------------------------------------------------------------------------------------
# Server side


class ServerExtension(Protocol):
    """A server-side extension factory (for example permessage-deflate, RFC 7692).

    :func:`accept` calls :meth:`accept` with the parameters of each offer of ``name``, in the
    client's preference order (RFC 6455 section 9.1), until one returns a result.
    """

    @property
    def name(self) -> str:
        """The extension token, compared exactly with the offered names."""
        ...

    def accept(self, params: list[tuple[str, str | None]]) -> tuple[str, object] | None:
        """Return ``(response header value, negotiated extension)`` or None to decline.

        May raise :class:`HandshakeError` 400 for malformed parameters.
        """
        ...


@dataclass(frozen=True)
class Accepted:
    """A successful server handshake: ``response`` is the exact bytes to write."""

    version: ProtocolVersion
    subprotocol: str | None
    extensions: list[object]
    response: bytes


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2 item 5.4)."""
    digest = hashlib.sha1((key + WEBSOCKET_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _hixie76_key_number(name: str, value: str | None) -> int:
    """The 32-bit part a Sec-WebSocket-KeyN encodes (draft-hixie-76 section 5.2 steps 4-6).

    The key's digits, read as a base-ten number, divided by the count of its spaces.  A client
    never makes that number larger than 4,294,967,295 (section 4.1 steps 17-21), and the answer
    packs the quotient as a 32-bit big-endian integer (section 5.2 step 8), so both are bounded.
    The count of significant digits is bounded BEFORE ``int()``: a header of thousands of digits
    would otherwise hit Python's int-string limit (a ValueError, i.e. a 500) or cost quadratic
    time.  Leading zeros do not change the number and are tolerated.
    """
    if value is None:
        raise HandshakeError(400, f"missing {name} header (draft-hixie-76 section 4.1)")
    digits = "".join(c for c in value if c in _DIGITS)
    spaces = value.count(" ")
    if not digits:
        raise HandshakeError(400, f"{name} contains no digits")
    significant = digits.lstrip("0")
    if len(significant) > _MAX_UINT32_DIGITS:
        raise HandshakeError(
            400,
            f"{name} number has {len(significant)} digits: larger than 2**32-1 "
            "(draft-hixie-76 section 4.1)",
        )
    number = int(significant or "0")  # at most 10 digits: cheap and within every limit
    if number > _MAX_UINT32:
        raise HandshakeError(
            400, f"{name} number {number} is larger than 2**32-1 (draft-hixie-76 section 4.1)"
        )
    if spaces == 0:
        # Section 5.2 step 5: a key without spaces is a symptom of a cross-protocol attack.
        raise HandshakeError(400, f"{name} contains no spaces (draft-hixie-76 section 5.2)")
    if number % spaces:
        raise HandshakeError(
            400,
            f"{name} number {number} is not a multiple of its {spaces} spaces "
            "(draft-hixie-76 section 5.2)",
        )
    part = number // spaces  # <= number <= 2**32-1: fits the 32 bits of section 5.2 step 8
    return part


def hixie76_answer(number1: int, number2: int, key3: bytes) -> bytes:
    """The 16-byte MD5 challenge answer of draft-hixie-76 section 5.2 step 8."""
    return hashlib.md5(struct.pack(">II", number1, number2) + key3).digest()


def _check_rfc_key(value: str | None) -> str:
    """Sec-WebSocket-Key must be base64 of 16 bytes (RFC 6455 section 4.1 item 7, 4.2.1 item 5)."""
    if value is None:
        raise HandshakeError(400, "missing Sec-WebSocket-Key header")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise HandshakeError(400, f"Sec-WebSocket-Key {value[:40]!r} is not base64") from None
    # Re-encoding rejects non-canonical forms (non-zero padding bits) that decode leniently.
    if len(raw) != 16 or base64.b64encode(raw).decode("ascii") != value:
        raise HandshakeError(
            400, f"Sec-WebSocket-Key {value[:40]!r} does not encode exactly 16 bytes"
        )
    return value


def _header_line(name: str, value: str) -> bytes:
    """One ``name: value`` line; refuses what would split the header block (injection)."""
    if not is_token(name):
        raise ValueError(f"invalid header name {name!r}")
    if _FIELD_VALUE_RE.fullmatch(value) is None:
        raise ValueError(f"invalid character in the value of header {name!r}")
    return f"{name}: {value}\r\n".encode("latin-1")


def _head_bytes(status_line: str, fields: Sequence[tuple[str, str]]) -> bytes:
    return (
        status_line.encode("ascii")
        + b"\r\n"
        + b"".join(_header_line(n, v) for n, v in fields)
        + b"\r\n"
    )


def _http_version(request: Request) -> tuple[int, int]:
    major, dot, minor = request.http_version.partition(".")
    if not (dot and major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit()):
        raise HandshakeError(400, f"invalid HTTP version {request.http_version!r}")
    return int(major), int(minor)


def _origin_of(request: Request) -> str | None:
    """The request's origin: ``Origin``, else hybi-07/08's ``Sec-WebSocket-Origin``.

    ``Origin`` wins for every version: RFC 6455 section 4.2.1 item 8 and the hixie drafts
    (section 5.2) name it, and it is the field browsers set themselves and scripts cannot; a
    hybi-07/08 request carrying both must not pass on a matching ``Sec-WebSocket-Origin`` next
    to a foreign ``Origin``.  ``Sec-WebSocket-Origin`` (hybi-07/08 section 4.1) is the fallback
    for any version, so that a request cannot dodge the check by using the other name.  Either
    field sent twice is refused (RFC 6455 section 11.3).
    """
    origin = _single(request, "Origin")
    fallback = _single(request, "Sec-WebSocket-Origin")
    return origin if origin is not None else fallback


def _select_subprotocol(offered: Sequence[str], ours: Sequence[str]) -> str | None:
    """The first of OUR subprotocols that the client offered (server preference).

    Subprotocol names compare case-sensitively (RFC 7936 section 3).  When nothing matches the
    handshake still succeeds without Sec-WebSocket-Protocol (RFC 6455 section 4.2.2 item 5.4);
    the client then decides whether to go on.
    """
    offered_set = set(offered)
    for candidate in ours:
        if candidate in offered_set:
            return candidate
    return None


def _negotiate_extensions(
    request: Request, extensions: Sequence[ServerExtension]
) -> tuple[list[str], list[object]]:
    """Run the extension hooks over the offers, in the client's order (RFC 6455 section 9.1).

    The header is parsed even when no extension is configured: a malformed one marks a broken
    client and is refused with 400 whatever the configuration.
    """
    offers = parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions"))
    header_values: list[str] = []
    negotiated: list[object] = []
    done: set[str] = set()
    for name, params in offers:
        if name in done:
            continue  # a later offer of an accepted name is a fallback no longer needed
        for extension in extensions:
            if extension.name != name:
                continue
            result = extension.accept(list(params))
            if result is not None:
                header_values.append(result[0])
                negotiated.append(result[1])
                done.add(name)
                break
    return header_values, negotiated


def accept(
    request: Request,
    *,
    key3: bytes = b"",
    secure: bool = False,
    subprotocols: Sequence[str] = (),
    origin_policy: OriginPolicy = OriginPolicy(),  # frozen: a safe shared default
    extensions: Sequence[ServerExtension] = (),
    versions: Collection[ProtocolVersion] = ALL_VERSIONS,
    extra_headers: Sequence[tuple[str, str]] = (),
    authority: str | None = None,
) -> Accepted:
    """Validate an upgrade request and build the exact response that accepts it.

    Every refusal raises :class:`HandshakeError` with the HTTP status, a reason, and the headers
    the status calls for; write :func:`reject_response` of it and close.

    * 426 + ``Sec-WebSocket-Version``: not an upgrade request, an unknown version, or a version
      turned off through ``versions`` (RFC 6455 section 4.4; hixie clients get it too).
    * 405 + ``Allow: GET``: another method (RFC 6455 section 4.1 item 1: the method MUST be GET;
      RFC 7231 section 6.5.5 says which status names that).
    * 400: HTTP/1.0, no or several Host, no ``websocket`` token in Upgrade, no ``upgrade`` token
      in Connection, bad Sec-WebSocket-Key, bad hixie-76 keys or key3, malformed extension offers.
    * 400 also: an ``authority`` that is not ``host[:port]``.
    * 403: the origin is not allowed by ``origin_policy`` (an empty ``Origin`` header included).

    ``key3`` is the 8 bytes following a hixie-76 head (see :func:`key3_length`); ``secure`` says
    the connection is TLS: it picks ``wss:`` for the hixie Location and ``https`` as the scheme
    of the server's own origin for the same-origin check (``http`` otherwise); ``subprotocols``
    is our preference order; ``extra_headers`` are appended to the 101 response.
    ``authority`` is the ``host[:port]`` the server is reached at, for the origin check only
    (default: the ``Host`` header); a server behind a trusted proxy passes the forwarded host
    here and the forwarded scheme as ``secure``.
    """
    version = detect_version(request)
    if version not in versions:
        raise HandshakeError(
            426,
            f"WebSocket protocol {version.value} is disabled on this server",
            _supported_header(versions),
        )
    if request.method != "GET":
        raise HandshakeError(
            405,
            f"method {request.method!r} not allowed: the WebSocket handshake MUST be a GET "
            "(RFC 6455 section 4.1)",
            [("Allow", "GET")],
        )
    if _http_version(request) < (1, 1):
        raise HandshakeError(
            400,
            f"HTTP/{request.http_version} cannot upgrade: the WebSocket handshake requires "
            "HTTP/1.1 or later (RFC 6455 section 4.1)",
        )
    host = _single(request, "Host")  # RFC 7230 section 5.4: several Host headers -> 400
    if host is None:
        raise HandshakeError(400, "missing Host header (RFC 6455 section 4.1 item 4)")
    if _split_host_port(host) is None:
        raise HandshakeError(400, f"invalid Host header {host[:100]!r}")
    if not has_token(request.headers.get_all("Upgrade"), "websocket"):
        raise HandshakeError(
            400, "the Upgrade header does not contain 'websocket' (RFC 6455 section 4.2.1 item 3)"
        )
    if not has_token(request.headers.get_all("Connection"), "upgrade"):
        raise HandshakeError(
            400,
            "the Connection header does not contain 'upgrade' (RFC 6455 section 4.2.1 item 4)",
        )
    resource = _resource_name(request.target)
    if not resource.startswith("/"):
        raise HandshakeError(400, f"invalid request target {request.target[:100]!r}")

    # Syntax first, policy second: a malformed request gets 400 whatever its origin.
    if version is ProtocolVersion.HIXIE_76:
        answer = _hixie76_challenge(request, key3)
    elif not version.is_hixie:
        key = _check_rfc_key(_single(request, "Sec-WebSocket-Key"))

    if authority is not None and _split_host_port(authority) is None:
        raise HandshakeError(400, f"invalid authority {authority[:100]!r} for the origin check")

    origin = _origin_of(request)
    if origin is not None and _FIELD_VALUE_RE.fullmatch(origin) is None:
        raise HandshakeError(400, "control character in the Origin header")
    # RFC 6455 section 4.2.1 item 8 / 10.2: the origin decides whether to accept.
    if not origin_policy.check(origin, host if authority is None else authority, secure=secure):
        if origin is None:
            raise HandshakeError(403, "requests without an Origin header are not allowed")
        if not origin.strip(" \t"):
            raise HandshakeError(403, "an empty Origin header is not an origin (RFC 6454 7.1)")
        raise HandshakeError(403, f"origin {origin!r} is not allowed")

    if version.is_hixie:
        return _accept_hixie(
            request,
            version,
            host,
            resource,
            origin,
            secure,
            subprotocols,
            extra_headers,
            answer if version is ProtocolVersion.HIXIE_76 else b"",
        )

    subprotocol = _select_subprotocol(
        split_tokens(request.headers.get_all("Sec-WebSocket-Protocol")), subprotocols
    )
    extension_values, negotiated = _negotiate_extensions(request, extensions)
    fields = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    if subprotocol is not None:
        fields.append(("Sec-WebSocket-Protocol", subprotocol))
    if extension_values:
        fields.append(("Sec-WebSocket-Extensions", ", ".join(extension_values)))
    fields.extend(extra_headers)
    response = _head_bytes("HTTP/1.1 101 Switching Protocols", fields)
    return Accepted(version, subprotocol, negotiated, response)


def _hixie76_challenge(request: Request, key3: bytes) -> bytes:
    """The 16-byte answer to a hixie-76 request, after validating its keys and key3."""
    number1 = _hixie76_key_number("Sec-WebSocket-Key1", _single(request, "Sec-WebSocket-Key1"))
    number2 = _hixie76_key_number("Sec-WebSocket-Key2", _single(request, "Sec-WebSocket-Key2"))
    if len(key3) != 8:
        raise HandshakeError(
            400, f"hixie-76 key3 must be 8 bytes, got {len(key3)} (draft-hixie-76 section 4.1)"
        )
    return hixie76_answer(number1, number2, key3)


def _accept_hixie(
    request: Request,
    version: ProtocolVersion,
    host: str,
    resource: str,
    origin: str | None,
    secure: bool,
    subprotocols: Sequence[str],
    extra_headers: Sequence[tuple[str, str]],
    answer: bytes,
) -> Accepted:
    """The 101 response of draft-hixie-75 section 4.2 / draft-hixie-76 section 5.2.

    Both drafts fix the status line and the field names; the client compares Location and
    Origin with what it sent, so both are echoed.  The subprotocol is a single string (not a
    list) that is echoed when we speak it.  hixie-76 appends the challenge answer after the head.
    """
    if version is ProtocolVersion.HIXIE_75:
        prefix = "WebSocket-"
        status_line = "HTTP/1.1 101 Web Socket Protocol Handshake"
    else:
        prefix = "Sec-WebSocket-"
        status_line = "HTTP/1.1 101 WebSocket Protocol Handshake"
    offered = request.headers.get(f"{prefix}Protocol")
    subprotocol = offered if offered is not None and offered in subprotocols else None
    fields: list[tuple[str, str]] = [("Upgrade", "WebSocket"), ("Connection", "Upgrade")]
    if origin is not None:
        # Without an Origin (a non-browser client) there is nothing to echo.
        fields.append((f"{prefix}Origin", origin))
    fields.append((f"{prefix}Location", f"{'wss' if secure else 'ws'}://{host}{resource}"))
    if subprotocol is not None:
        fields.append((f"{prefix}Protocol", subprotocol))
    fields.extend(extra_headers)
    return Accepted(version, subprotocol, [], _head_bytes(status_line, fields) + answer)


def reject_response(error: HandshakeError) -> bytes:
    """A complete HTTP/1.1 response that refuses the handshake, with the reason as the body.

    ``Connection: close`` because the connection is not reused after a refused upgrade.  A 426
    MUST carry an ``Upgrade`` field (RFC 7231 section 6.5.15), and whoever sends ``Upgrade`` MUST
    list ``upgrade`` in Connection (RFC 7230 section 6.7): both are added when missing.
    """
    try:
        phrase = http.HTTPStatus(error.status).phrase
    except ValueError:
        phrase = "Error"
    body = (error.reason + "\n").encode("utf-8")
    extra = list(error.headers)
    names = {name.lower() for name, _ in extra}
    if error.status == 426 and "upgrade" not in names:
        extra.insert(0, ("Upgrade", "websocket"))
        names.add("upgrade")
    options = [
        token
        for token in split_tokens(v for n, v in extra if n.lower() == "connection")
        if token.lower() != "close"
    ]
    if "upgrade" in names and not any(t.lower() == "upgrade" for t in options):
        options.append("Upgrade")
    fields = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", ", ".join([*options, "close"])),
    ]
    own = {"connection", "content-length", "content-type"}
    fields.extend((n, v) for n, v in extra if n.lower() not in own)
    return _head_bytes(f"HTTP/1.1 {error.status} {phrase}", fields) + body


# --------------------------------------------------------------------------------------------
# Client side


@dataclass(frozen=True)
class ClientAccepted:
    """A server response that completed the client's handshake."""

    version: ProtocolVersion
    subprotocol: str | None
    extensions: list[tuple[str, list[tuple[str, str | None]]]]
    response: Response


def _hixie76_key(rng: random.Random) -> tuple[str, int]:
    """One Sec-WebSocket-KeyN and the number it encodes (draft-hixie-76 section 4.1 steps 17-21).

    The key hides ``number * spaces`` among random non-digit characters and spaces, so that a
    server must understand the protocol to answer, and no HTTP intermediary can forge it.
    """
    spaces = rng.randint(1, 12)
    number = rng.randint(0, _MAX_UINT32 // spaces)
    key = str(number * spaces)
    noise = [chr(c) for c in (*range(0x21, 0x30), *range(0x3A, 0x7F))]
    for _ in range(rng.randint(1, 12)):
        pos = rng.randint(0, len(key))
        key = key[:pos] + rng.choice(noise) + key[pos:]
    for _ in range(spaces):
        pos = rng.randint(1, len(key) - 1)  # never at the start or the end
        key = key[:pos] + " " + key[pos:]
    return key, number


class ClientHandshake:
    """The client's side of the opening handshake (RFC 6455 section 4.1, hybi-07/08, hixie).

    Write :meth:`request_bytes`, then feed what the server sends to :meth:`receive` until it
    returns a result; failures raise :class:`InvalidHandshakeResponse`.
    """

    def __init__(
        self,
        host: str,
        resource: str = "/",
        *,
        secure: bool = False,
        version: ProtocolVersion = ProtocolVersion.RFC6455,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[str] = (),
        origin: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        key: bytes | None = None,
        rng: random.Random | None = None,
        max_header_size: int = 16384,
    ) -> None:
        if not resource.startswith("/"):
            raise ValueError(f"resource {resource!r} must start with '/'")
        if version.is_hixie and len(subprotocols) > 1:
            raise ValueError("the hixie drafts offer at most one subprotocol")
        if version.is_hixie and extensions:
            raise ValueError("the hixie drafts have no extensions")
        self.host = host
        self.resource = resource
        self.secure = secure
        self.version = version
        self.subprotocols = tuple(subprotocols)
        self.extensions = tuple(extensions)
        self.origin = origin
        self.extra_headers = tuple(extra_headers)
        self.max_header_size = max_header_size
        try:
            self._offered_extensions = {name for name, _ in parse_extensions(self.extensions)}
        except HandshakeError as exc:
            raise ValueError(exc.reason) from None
        self._buffer = bytearray()
        self._done = False
        self._response: Response | None = None  # set once the head is parsed
        self._head_end = 0
        self.key = ""
        self._expected_accept = ""
        self.key1 = self.key2 = ""
        self.key3 = b""
        self._expected_answer = b""
        if version.is_hixie:
            if version is ProtocolVersion.HIXIE_76:
                rng = rng if rng is not None else random.SystemRandom()
                self.key1, number1 = _hixie76_key(rng)
                self.key2, number2 = _hixie76_key(rng)
                self.key3 = bytes(rng.getrandbits(8) for _ in range(8))
                self._expected_answer = hixie76_answer(number1, number2, self.key3)
        else:
            # RFC 6455 section 4.1 item 7: a fresh random 16-byte nonce per connection.
            nonce = key if key is not None else secrets.token_bytes(16)
            if len(nonce) != 16:
                raise ValueError("the Sec-WebSocket-Key nonce must be 16 bytes")
            self.key = base64.b64encode(nonce).decode("ascii")
            self._expected_accept = accept_key(self.key)

    @property
    def location(self) -> str:
        """The ws:// or wss:// URL this handshake opens (what hixie servers echo as Location)."""
        return f"{'wss' if self.secure else 'ws'}://{self.host}{self.resource}"

    def request_bytes(self) -> bytes:
        """The exact bytes of the upgrade request (for hixie-76 including key3)."""
        fields: list[tuple[str, str]] = [("Host", self.host)]
        version = self.version
        if version.is_hixie:
            fields += [("Upgrade", "WebSocket"), ("Connection", "Upgrade")]
            prefix = "WebSocket-" if version is ProtocolVersion.HIXIE_75 else "Sec-WebSocket-"
            if self.origin is not None:
                fields.append(("Origin", self.origin))
            if self.subprotocols:
                fields.append((f"{prefix}Protocol", self.subprotocols[0]))
            if version is ProtocolVersion.HIXIE_76:
                fields += [("Sec-WebSocket-Key1", self.key1), ("Sec-WebSocket-Key2", self.key2)]
        else:
            fields += [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", self.key),
                ("Sec-WebSocket-Version", version.value),
            ]
            if self.origin is not None:
                origin_name = (
                    "Origin" if version is ProtocolVersion.RFC6455 else ("Sec-WebSocket-Origin")
                )
                fields.append((origin_name, self.origin))
            if self.subprotocols:
                fields.append(("Sec-WebSocket-Protocol", ", ".join(self.subprotocols)))
            if self.extensions:
                fields.append(("Sec-WebSocket-Extensions", ", ".join(self.extensions)))
        fields.extend(self.extra_headers)
        return _head_bytes(f"GET {self.resource} HTTP/1.1", fields) + self.key3

    def receive(self, data: bytes) -> tuple[ClientAccepted, int] | None:
        """Feed the next bytes from the server.

        Returns None while more bytes are needed, else ``(accepted, n)`` where ``n`` is how many
        bytes of THIS ``data`` belonged to the handshake: ``data[n:]`` are the first frame bytes.
        Raises :class:`InvalidHandshakeResponse` if the response does not accept our request.
        """
        if self._done:
            raise RuntimeError("the handshake is already complete or failed")
        before = len(self._buffer)
        self._buffer += data
        try:
            result = self._advance()
        except InvalidHandshakeResponse:
            self._done = True
            self._buffer = bytearray()
            raise
        if result is None:
            return None
        self._done = True
        self._buffer = bytearray()
        accepted, end = result
        return accepted, end - before

    def _advance(self) -> tuple[ClientAccepted, int] | None:
        """Try to complete the handshake with the bytes buffered so far."""
        if self._response is None:
            try:
                # Resume the search where the previous call stopped: linear in total.
                end = _find_head_end(self._buffer, self.max_header_size, self._head_end)
                if end is None:
                    self._head_end = len(self._buffer)
                    return None
                parsed = parse_response(self._buffer, max_header_size=self.max_header_size)
            except HandshakeError as exc:
                raise InvalidHandshakeResponse(f"malformed response: {exc.reason}") from None
            assert parsed is not None  # the head is complete
            self._response, self._head_end = parsed
            if self._response.status != 101:
                raise InvalidHandshakeResponse(
                    f"the server refused the upgrade: {self._response.status} "
                    f"{self._response.reason}".rstrip(),
                    self._response.status,
                    bytes(self._buffer[self._head_end : self._head_end + _BODY_PREFIX]),
                )
        end = self._head_end
        if self.version is ProtocolVersion.HIXIE_76:
            end += 16  # draft-hixie-76 section 4.1: the challenge answer follows the head
            if len(self._buffer) < end:
                return None
        answer = bytes(self._buffer[self._head_end : end])
        return self._check(self._response, answer), end

    def _fail(self, reason: str) -> InvalidHandshakeResponse:
        return InvalidHandshakeResponse(reason, 101)

    def _check(self, response: Response, answer: bytes) -> ClientAccepted:
        headers = response.headers
        upgrade = split_tokens(headers.get_all("Upgrade"))
        if [t.lower() for t in upgrade] != ["websocket"]:
            # RFC 6455 section 4.1 (client's step 2 after the response): MUST _Fail_.
            raise self._fail(f"Upgrade header is {headers.get('Upgrade')!r}, not 'websocket'")
        if not has_token(headers.get_all("Connection"), "upgrade"):
            raise self._fail(
                f"Connection header {headers.get('Connection')!r} lacks the 'upgrade' token"
            )
        if self.version.is_hixie:
            return self._check_hixie(response, answer)
        accept_values = headers.get_all("Sec-WebSocket-Accept")
        if not accept_values:
            raise self._fail("missing Sec-WebSocket-Accept header")
        if accept_values != [self._expected_accept]:
            raise self._fail(
                f"incorrect Sec-WebSocket-Accept {accept_values[0]!r}, "
                f"expected {self._expected_accept!r}"
            )
        try:
            extensions = parse_extensions(headers.get_all("Sec-WebSocket-Extensions"))
        except HandshakeError as exc:
            raise self._fail(exc.reason) from None
        for name, _ in extensions:
            # RFC 6455 section 4.1: an extension not requested by the client MUST fail.
            if name not in self._offered_extensions:
                raise self._fail(f"the server accepted extension {name!r}, which was not offered")
        protocols = split_tokens(headers.get_all("Sec-WebSocket-Protocol"))
        if len(protocols) > 1:
            raise self._fail(f"the server selected several subprotocols: {protocols!r}")
        subprotocol = protocols[0] if protocols else None
        if subprotocol is not None and subprotocol not in self.subprotocols:
            # RFC 6455 section 4.1: a subprotocol not requested by the client MUST fail.
            raise self._fail(f"the server selected subprotocol {subprotocol!r}, not offered")
        return ClientAccepted(self.version, subprotocol, extensions, response)

    def _check_hixie(self, response: Response, answer: bytes) -> ClientAccepted:
        headers = response.headers
        prefix = "WebSocket-" if self.version is ProtocolVersion.HIXIE_75 else "Sec-WebSocket-"
        location = headers.get(f"{prefix}Location")
        if location != self.location:
            raise self._fail(f"{prefix}Location is {location!r}, expected {self.location!r}")
        if self.origin is not None:
            origin = headers.get(f"{prefix}Origin")
            if origin != self.origin:
                raise self._fail(f"{prefix}Origin is {origin!r}, expected {self.origin!r}")
        subprotocol = headers.get(f"{prefix}Protocol")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise self._fail(f"the server selected subprotocol {subprotocol!r}, not offered")
        if self.version is ProtocolVersion.HIXIE_76 and answer != self._expected_answer:
            # draft-hixie-76 section 4.1 step 42: a wrong challenge answer MUST fail.
            raise self._fail("incorrect hixie-76 challenge answer")
        return ClientAccepted(self.version, subprotocol, [], response)
