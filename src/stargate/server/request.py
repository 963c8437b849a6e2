"""A parsed HTTP request and the request-target forms of RFC 9112 section 3.2.

The channel parses bytes into :class:`HttpRequest`; :func:`parse_target` decides what the
target names before anything else sees it, so neither the WSGI environ nor the upgrade
decision ever gets ``http://host/x`` as a path or a ``#fragment`` in it.
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
        if not _AUTHORITY.match(parts.netloc):
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
