"""WebSocket URLs (RFC 6455 section 3): parsed for opening, compared by origin, redirected.

The password of ``user:password@`` never shows: not in :class:`WebSocketURL`'s repr, not in
an :class:`~stargate.client.errors.InvalidURL` message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urljoin, urlsplit

from ..redact import redact_url
from .errors import InvalidURL

__all__ = ["DEFAULT_PORTS", "WebSocketURL", "parse_url", "redirect_target", "same_origin"]

#: The port of each WebSocket scheme when the URL names none.
DEFAULT_PORTS = {"ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True)
class WebSocketURL:
    """A parsed ``ws://`` or ``wss://`` URL (RFC 6455 section 3)."""

    secure: bool
    host: str  # without the brackets of an IPv6 literal
    port: int
    resource: str  # path and query: what goes in the request line
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"


def parse_url(url: str) -> WebSocketURL:
    """Parse a WebSocket URL; :class:`InvalidURL` (its password masked) if it cannot be opened."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"invalid URL {shown!r}: {exc}", shown) from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidURL(f"not a ws:// or wss:// URL: {shown!r}", shown)
    if not parts.hostname:
        raise InvalidURL(f"no host in {shown!r}", shown)
    if parts.fragment or url.endswith("#"):
        raise InvalidURL(f"a WebSocket URL has no fragment (RFC 6455 section 3): {shown!r}", shown)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    # Spaces and non-ASCII characters are sent percent-encoded (RFC 3986 section 2.1);
    # what is already encoded, and the delimiters, stay as they are.
    resource = quote(resource, safe="!#$%&'()*+,/:;=?@[]~")
    host = parts.hostname
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")  # the DNS (punycode) form
        except UnicodeError as exc:
            raise InvalidURL(f"invalid host name in {shown!r}: {exc}", shown) from None
    return WebSocketURL(
        secure=scheme == "wss",
        host=host,
        port=port if port is not None else DEFAULT_PORTS[scheme],
        resource=resource,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def same_origin(a: WebSocketURL, b: WebSocketURL) -> bool:
    """Whether two URLs are of one origin: scheme, host and port (RFC 6454 sections 4-5)."""
    return (a.secure, a.host, a.port) == (b.secure, b.host, b.port)


def redirect_target(url: str, location: str) -> str:
    """The WebSocket URL a redirect from ``url`` points to; ValueError saying why when it
    cannot be followed.

    ``location`` may be relative (RFC 7231 section 7.1.2) and may name an http(s) URL: that
    is the same resource over ws(s) (RFC 6455 section 3).  Never from ``wss`` to ``ws``.
    """
    if not location:
        raise ValueError("the Location is empty")
    # The URL as parse_url read it: urlsplit drops leading spaces and control characters,
    # which a test of the string itself would take for another scheme than wss.
    parts = urlsplit(url)
    secure = parts.scheme.lower() == "wss"
    target = urljoin(parts._replace(scheme="https" if secure else "http").geturl(), location)
    scheme, sep, rest = target.partition("://")
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
    if scheme not in DEFAULT_PORTS:
        raise ValueError("it is not a WebSocket URL")
    if secure and scheme == "ws":
        raise ValueError("it leaves TLS (wss: to ws:), which is never followed")
    if urlsplit(target).fragment or target.endswith("#"):
        raise ValueError("it has a fragment, which a WebSocket URL has not (RFC 6455 section 3)")
    return f"{scheme}{sep}{rest}"
