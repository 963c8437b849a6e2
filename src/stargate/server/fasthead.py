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

The split of the head (its syntax, the limits, the fields the request needs) has a C twin,
``stargate._speedups.split_upgrade_head``, chosen as the core's are (see
:mod:`stargate.masking`); tests check the twins agree on every input above and more.  With it
the upgrade read costs about a quarter of its Python twin's instructions: 36k fewer of a
handshake's 453k (``bench/bench_handshake.py --instructions``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..headers import TCHAR, has_token
from ..masking import speedups
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


#: ``(target, fields, host, connection_close, head_end)``: what the head says that the
#: request needs, ``head_end`` where the bytes after it (early frames) begin.
SplitHead = tuple[str, list[tuple[str, str]], str, bool, int]


def _split_upgrade_head_python(
    data: bytes, max_header_size: int, max_headers: int
) -> SplitHead | None:
    """The common upgrade head at the start of ``data``, split into what the request
    needs; ``None`` when it is not the common form, not all in ``data``, or past a limit.
    The C twin (``stargate._speedups.split_upgrade_head``) returns the same for every input,
    and raises the same ValueError for a negative limit (a caller's error, not the head's).
    """
    if max_header_size < 0:
        raise ValueError("max_header_size must not be negative")
    if max_headers < 0:
        raise ValueError("max_headers must not be negative")
    # The limits first, with bytes.find and bytes.count (loops in C): a head that passes
    # one is the reader's to refuse, and a failed attempt must cost less than the reader's
    # own (a value holds no CR, so the first empty line ends the head, and the CRLFs before
    # it end its request line and all but its last field line).
    end = data.find(b"\r\n\r\n", 0, max_header_size)
    if end == -1 or data.count(b"\r\n", 0, end) > max_headers:
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
    # What makes llhttp call the request an upgrade, and the reader a WebSocket one.
    if not host or not has_token(connection, "upgrade") or not has_token(upgrade, "websocket"):
        return None
    target = match.group(1).decode("latin-1")
    return target, headers, host, has_token(connection, "close"), match.end()


split_upgrade_head: Callable[[bytes, int, int], SplitHead | None] = (
    speedups.split_upgrade_head if speedups is not None else _split_upgrade_head_python
)


def read_upgrade_head(data: bytes, config: ServerConfig) -> tuple[HttpRequest, bytes] | None:
    """The upgrade request whose head begins ``data``, as the reader would have built it,
    and the bytes after the head (early frames); ``None`` when the head is not the common
    form, is not all in ``data``, or passes a limit (the reader then answers it)."""
    split = split_upgrade_head(data, config.max_header_size, config.max_headers)
    if split is None:
        return None
    target, headers, host, connection_close, head_end = split
    # RFC 9112 section 3.2: exactly one Host, host[:port] (the reader's 400 otherwise).
    if not valid_authority(host):
        return None
    request = HttpRequest(
        method="GET",
        target=target,
        http_version="1.1",
        headers=headers,
        keep_alive=not connection_close and config.keepalive_timeout > 0,
        upgrade=True,
        parsed=parse_target("GET", target),
    )
    return request, data[head_end:]
