"""Response heads: what an application hands over is checked before it reaches the wire.

Every response the server sends (a WSGI app's, an error it answers itself) has its head
written by :func:`serialize_head`, after :func:`check_status` and :func:`check_field` have
made sure nothing can end the head early.  A status or header with CR, LF or NUL in it is
what response splitting is made of (a forged ``Set-Cookie``, a second response on a
keep-alive connection); invalid input raises :class:`InvalidResponse`, which the WSGI layer
turns into a logged 500.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus

from ..headers import TCHAR

#: RFC 9110 section 7.6.1 and PEP 3333: the connection's business, never an app's.
#: ``Connection: close`` is the one exception (see :func:`check_app_headers`).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

#: RFC 9110 section 5.6.2: token = 1*tchar.
_TOKEN = re.compile(TCHAR + r"+\Z")
#: RFC 9110 section 5.5: field-value = *( field-vchar / SP / HTAB ), obs-text included; a
#: value is also trimmed of surrounding white space by the recipient, so keep it as given.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")
#: RFC 9112 section 4: status-code SP [ reason-phrase ], the reason of the same characters.
_STATUS = re.compile(r"([1-5][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*\Z")


class InvalidResponse(ValueError):
    """What the application handed over cannot be sent as it is."""


def check_status(status: object) -> int:
    """The code of a WSGI status string such as ``"200 OK"``; final statuses only.

    PEP 3333 leaves 1xx responses to the server (``100 Continue``, ``101``), so an app's
    status must be 200-599.
    """
    if not isinstance(status, str):
        raise InvalidResponse(f"status {status!r} is not a str")
    match = _STATUS.match(status)
    if match is None:
        raise InvalidResponse(f"malformed status {status!r}")
    code = int(match.group(1))
    if code < 200:
        raise InvalidResponse(f"status {status!r}: an application cannot send 1xx responses")
    return code


def check_field(name: object, value: object) -> None:
    """One header field: a token name and a value with no CR, LF, NUL or other control."""
    if not isinstance(name, str) or not isinstance(value, str):
        raise InvalidResponse(f"header {name!r}: {value!r}: name and value must be str")
    if not _TOKEN.match(name):
        raise InvalidResponse(f"header name {name!r} is not an RFC 9110 token")
    if not _FIELD_VALUE.match(value):
        raise InvalidResponse(f"header {name}: value {value!r} has a control character")


def check_app_headers(code: int, headers: Iterable[tuple[str, str]]) -> int | None:
    """Check an application's headers; return its Content-Length, if it gave one.

    Hop-by-hop headers are refused as waitress refuses them (PEP 3333), except
    ``Connection: close`` (a request to close after this response, which the server honours)
    and ``Upgrade`` on a 426 answer (RFC 9110 section 15.5.22 requires it there).
    """
    content_length: int | None = None
    for name, value in headers:
        check_field(name, value)
        lower = name.lower()
        if lower == "content-length":
            # 18 digits is an exabyte; more is no length but a way to make int() raise.
            if not value.isdigit() or not value.isascii() or len(value) > 18:
                raise InvalidResponse(f"Content-Length {value[:40]!r} is not a number of bytes")
            length = int(value)
            if content_length is not None and length != content_length:
                raise InvalidResponse("two different Content-Length headers")
            content_length = length
        elif lower in HOP_BY_HOP:
            if lower == "connection" and value.strip().lower() == "close":
                continue
            if lower == "upgrade" and code == 426:
                continue
            raise InvalidResponse(
                f"{name} is a hop-by-hop header: the server frames the response itself (PEP 3333)"
            )
    return content_length


def reason_phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header's value (RFC 9110 section 6.6.1), formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def serialize_head(status: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """``HTTP/1.1 <status>`` and the header lines, for fields already checked."""
    lines = [f"HTTP/1.1 {status}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def simple_response(
    code: int, reason: str, *, keep_alive: bool = False, headers: Iterable[tuple[str, str]] = ()
) -> bytes:
    """A complete plain-text response, for what the server answers itself (errors, 426)."""
    body = (reason + "\n").encode("utf-8")
    extra = list(headers)
    connection = "keep-alive" if keep_alive else "close"
    if any(name.lower() == "upgrade" for name, _ in extra):
        connection = "upgrade, " + connection  # RFC 9110 section 7.8, as for a 426
    fields = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Date", http_date()),
        ("Server", "stargate"),
        *extra,
        ("Connection", connection),
    ]
    for name, value in fields:
        check_field(name, value)
    return serialize_head(f"{code} {reason_phrase(code)}", fields) + body
