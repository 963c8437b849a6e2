"""The Origin policy: which web pages may open a WebSocket to this server.

Browsers send cookies with a cross-site WebSocket request and leave the decision to the server
(RFC 6455 sections 4.2.1 item 8 and 10.2); :class:`OriginPolicy` makes it, comparing origins
as RFC 6454 says (scheme, host and port).
"""

from __future__ import annotations

from dataclasses import dataclass

from .heads import split_host_port

__all__ = ["DEFAULT_PORTS", "OriginPolicy", "parse_origin", "server_origin"]

#: The default port of each scheme an origin (or a WebSocket URL) may have.
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


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
    hostport = split_host_port(rest)
    if hostport is None:
        return None
    host, port = hostport
    if scheme is not None and port is None:
        port = DEFAULT_PORTS.get(scheme)
        if port is None:
            return None
    return scheme, host, port


def _can_match(entry: str) -> bool:
    """Whether some Origin can match an ``allowed`` entry: a pattern, ``*`` or ``null``, or
    an origin whose scheme has no default port (``chrome-extension://id``), matched as
    written."""
    if entry in ("*", "null") or _parse_entry(entry) is not None:
        return True
    scheme, separator, rest = entry.partition("://")
    return bool(
        separator
        and scheme
        and "/" not in rest
        and "@" not in rest
        and split_host_port(rest) is not None
    )


def parse_origin(origin: str) -> tuple[str, str, int] | None:
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


def server_origin(authority: str, secure: bool) -> tuple[str, str, int] | None:
    """The origin of the server itself: its scheme plus the ``host[:port]`` it is reached at.

    An http(s) page served from the same place has this origin (RFC 6454 section 4), so an
    upgrade served over TLS (``wss``) is same-origin with ``https`` pages, a plain one with
    ``http`` pages; a ``Host`` without a port means the scheme's default port.
    """
    scheme = "https" if secure else "http"
    hostport = split_host_port(authority)
    if hostport is None:
        return None
    host, port = hostport
    return scheme, host, DEFAULT_PORTS[scheme] if port is None else port


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
      port it is reached at: the ``Host`` header, or the ``authority`` given to
      :func:`~stargate.handshake.server.accept` (for a trusted proxy's forwarded host).  Behind
      a proxy that rewrites ``Host`` or terminates TLS, pass those, or list the public origin
      in ``allowed``.
    * ``allow_missing``: requests without an Origin header (not sent by a browser, so no ambient
      cookies were lent to an attacker) pass.  An Origin header that is present but empty is
      not "missing": no browser sends one (RFC 6454 section 7.1 gives it no meaning), and it
      is refused unless ``"*"`` is allowed.
    """

    allowed: tuple[str, ...] = ()
    same_origin: bool = True
    allow_missing: bool = True

    def __post_init__(self) -> None:
        """An entry that no Origin can match (a path, an unknown scheme without a port,
        a typo) is refused here: silently never matching, it would lock out the very
        origin it was meant to let in, and say so only as a 403 to the browser."""
        for entry in self.allowed:
            if not _can_match(entry):
                raise ValueError(
                    f"allowed origin {entry!r} can never match: write scheme://host[:port] "
                    "(no path), host[:port], *.host[:port], 'null' or '*'"
                )

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
        parsed = parse_origin(origin)
        if parsed is None:  # "null" or garbage: only an exact entry (checked above) allows it
            return False
        if self.same_origin and host is not None and parsed == server_origin(host, secure):
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
