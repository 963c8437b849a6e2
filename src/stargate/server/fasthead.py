"""The common WebSocket upgrade request, read in one pass instead of through llhttp.

A browser's or a client library's upgrade request comes whole in the connection's first
read and has the plainest form HTTP/1.1 allows: ``GET /path HTTP/1.1``, a dozen field
lines of visible ASCII, no body.  Reading it through llhttp costs one Python callback per
field and the reader's bookkeeping for bodies, pipelining and limits that such a request
never needs: about a tenth of a handshake's server CPU.

:func:`read_upgrade_head` recognizes that form and nothing else: a *strict subset* of what
llhttp and :class:`~stargate.server.reader.RequestReader` accept together, for which it
returns the request the reader would have built (tests check both agree on the fuzzing
corpus, its mutations and heads built to probe the edges).  Anything else (another
method, a split or oversized head, obs-text, folding, a body's framing fields, an
``Expect``) returns ``None`` and goes to the reader, which stays the only judge of what
is refused and why.
"""

from __future__ import annotations

import re

from ..headers import TCHAR, has_token
from .config import ServerConfig
from .request import HttpRequest, parse_target, valid_authority

#: The request line and field lines of RFC 9112 sections 3 and 5, narrowed: method GET,
#: an origin-form target of visible ASCII (llhttp accepts every one of those bytes in a
#: target), HTTP/1.1, field names that are tokens followed at once by the colon (RFC 9112
#: section 5.1 forbids whitespace there), values of HTAB, SP and visible ASCII only.
_HEAD = re.compile(
    rb"GET (/[!-~]*) HTTP/1\.1\r\n"
    rb"((?:" + TCHAR.encode() + rb"+:[\t -~]*\r\n)*)"
    rb"\r\n"
)
#: Fields whose presence needs the reader: a body's framing (an upgrade with one is
#: refused there), an expectation, llhttp's own reading of ``Proxy-Connection``, and
#: ``Content-Type`` (the reader counts it).
_READER_FIELDS = frozenset(
    ("content-length", "transfer-encoding", "expect", "proxy-connection", "content-type")
)


def read_upgrade_head(data: bytes, config: ServerConfig) -> tuple[HttpRequest, bytes] | None:
    """The upgrade request whose head begins ``data``, as the reader would have built it,
    and the bytes after the head (early frames); ``None`` when the head is not the common
    form, is not all in ``data``, or passes a limit (the reader then answers it)."""
    # The limits first, in C: a head that passes one is the reader's to refuse, and a
    # failed attempt must cost less than the reader's own (a value holds no CR, so the
    # first empty line ends the head, and the CRLFs before it end its request line and
    # all but its last field line).
    end = data.find(b"\r\n\r\n", 0, config.max_header_size)
    if end == -1 or data.count(b"\r\n", 0, end) > config.max_headers:
        return None
    match = _HEAD.match(data, 0, end + 4)
    if match is None:
        return None
    lines = match.group(2).decode("latin-1").split("\r\n")
    lines.pop()  # the block ends with a CRLF: an empty string after it
    headers: list[tuple[str, str]] = []
    host: str | None = None
    upgrade: list[str] = []
    connection: list[str] = []
    for line in lines:
        name, _, value = line.partition(":")
        # RFC 9112 section 5: the whitespace around a value is not part of it.
        value = value.strip(" \t")
        headers.append((name, value))
        lower = name.lower()
        if lower == "host":
            if host is not None:
                return None  # the reader refuses two Host fields
            host = value
        elif lower == "upgrade":
            upgrade.append(value)
        elif lower == "connection":
            connection.append(value)
        elif lower in _READER_FIELDS:
            return None
    # RFC 9112 section 3.2: exactly one Host, host[:port] (the reader's 400 otherwise).
    if not host or not valid_authority(host):
        return None
    # What makes llhttp call the request an upgrade, and the reader a WebSocket one.
    if not has_token(connection, "upgrade") or not has_token(upgrade, "websocket"):
        return None
    target = match.group(1).decode("latin-1")
    request = HttpRequest(
        method="GET",
        target=target,
        http_version="1.1",
        headers=headers,
        keep_alive=not has_token(connection, "close") and config.keepalive_timeout > 0,
        upgrade=True,
        parsed=parse_target("GET", target),
    )
    return request, data[match.end() :]
