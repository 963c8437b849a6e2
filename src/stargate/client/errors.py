"""Why a client connection could not be opened: one exception class per way it can fail.

Every class here derives from :class:`ConnectError` (itself a
:class:`~stargate.errors.StargateError`), so ``except ConnectError`` catches any failure to
open a connection.  Each also derives from the standard exception a caller may already
catch: network failures are :class:`OSError` subclasses (``ConnectionRefusedError``,
``TimeoutError``), and a refused or invalid handshake is an
:class:`~stargate.errors.InvalidHandshakeResponse` with the HTTP ``status`` and the first
bytes of the response ``body``.

Once the connection is open, failures are reported as usual: a method called on a closed
connection raises :class:`~stargate.errors.ConnectionClosed` with the close code (1006 when
the transport was lost).

======================  ===========================================================
exception               raised when
======================  ===========================================================
``InvalidURL``          the URL is not ``ws://`` or ``wss://``, has a fragment, a bad
                        port ... (also a ``ValueError``)
``DNSError``            the host name does not resolve (``socket.gaierror``)
``ConnectionRefused``   every address of the host refused the TCP connection
``ConnectionFailed``    any other network error before the handshake completed
                        (unreachable, reset, ...)
``TLSError``            the TLS handshake failed; ``verify_message`` tells why a
                        certificate was not trusted
``OpenTimeout``         the TCP connection, TLS handshake or WebSocket handshake did
                        not complete within ``open_timeout``; ``phase`` says which
``InvalidStatus``       the server answered with a status other than 101
``RedirectError``       ... a 3xx redirect, refused (``follow_redirects=0``, the
                        default) or one too many; ``location`` is where it points
``InvalidAccept``       the 101 response has a wrong ``Sec-WebSocket-Accept`` (or a
                        wrong hixie-76 challenge answer)
``InvalidResponse``     any other invalid response: malformed, a missing
                        ``Upgrade``, an extension or subprotocol we did not offer,
                        the connection closed before the response was complete
======================  ===========================================================
"""

from __future__ import annotations

from ..errors import InvalidHandshakeResponse, StargateError
from ..headers import Headers

__all__ = [
    "ConnectError",
    "ConnectionFailed",
    "ConnectionRefused",
    "DNSError",
    "InvalidAccept",
    "InvalidResponse",
    "InvalidStatus",
    "InvalidURL",
    "OpenTimeout",
    "RedirectError",
    "TLSError",
]


class ConnectError(StargateError):
    """The base of every failure to open a client connection; ``url`` is what was opened,
    with the password of its ``user:password@`` masked (it ends up in logs)."""

    def __init__(self, message: str, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class InvalidURL(ConnectError, ValueError):
    """The URL cannot be opened: not ``ws://`` or ``wss://``, no host, a bad port, or a
    fragment (RFC 6455 section 3: fragments MUST NOT be used in WebSocket URIs)."""


class DNSError(ConnectError, OSError):
    """The host name could not be resolved (the ``socket.gaierror`` is ``__cause__``)."""

    def __init__(self, message: str, url: str = "", host: str = "") -> None:
        super().__init__(message, url)
        self.host = host


class ConnectionRefused(ConnectError, ConnectionRefusedError):
    """Nobody listens: every address of the host refused the TCP connection."""


class ConnectionFailed(ConnectError, OSError):
    """A network error other than a refusal before the handshake completed (network
    unreachable, connection reset ...); the ``OSError`` is ``__cause__``."""


class TLSError(ConnectError, OSError):
    """The TLS handshake failed: most often the server's certificate is not trusted
    (self-signed, expired, for another host name).  ``verify_message`` is OpenSSL's
    explanation when certificate verification failed, else ``""``.

    Pass ``ssl=`` a context that trusts the certificate (``load_verify_locations``), or for
    testing only one with verification turned off (the CLI's ``--insecure``).
    """

    def __init__(self, message: str, url: str = "", verify_message: str = "") -> None:
        super().__init__(message, url)
        self.verify_message = verify_message


class OpenTimeout(ConnectError, TimeoutError):
    """The connection was not open within ``open_timeout`` seconds.

    ``phase`` is where it stalled: ``"dns"``, ``"connect"`` (TCP), ``"tls"`` or
    ``"handshake"`` (the server accepted TCP but did not answer the upgrade in time).
    """

    def __init__(self, message: str, url: str = "", phase: str = "") -> None:
        super().__init__(message, url)
        self.phase = phase


class InvalidResponse(ConnectError, InvalidHandshakeResponse):
    """The server's answer to the upgrade request does not open a WebSocket connection.

    ``status`` is the HTTP status (0 if none was read), ``headers`` the response's header
    fields (empty if none were parsed), ``body`` the first bytes (at most 1 KiB) of the
    response body.
    """

    def __init__(
        self,
        reason: str,
        url: str = "",
        *,
        status: int = 0,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        InvalidHandshakeResponse.__init__(self, reason, status, body)
        self.url = url
        self.headers = headers if headers is not None else Headers()

    def __str__(self) -> str:
        text = f"{self.reason} (status {self.status})" if self.status else self.reason
        return f"{text}: {self.url}" if self.url else text


class InvalidStatus(InvalidResponse):
    """The server refused the upgrade: it answered with ``status`` instead of 101.

    ``body`` holds the first bytes of what it said (an error page, a JSON error ...).
    """

    def __str__(self) -> str:
        text = super().__str__()
        if self.body:
            snippet = self.body[:200].decode("utf-8", "replace").strip()
            text += f"; body: {snippet!r}"
        return text


class RedirectError(InvalidStatus):
    """The server answered with a 3xx redirect to ``location``; redirects are refused
    unless ``follow_redirects`` allows them (and this one was one too many, or pointed from
    ``wss://`` to ``ws://``, or to a URL that is not a WebSocket URL)."""

    def __init__(
        self,
        reason: str,
        url: str = "",
        *,
        status: int = 0,
        headers: Headers | None = None,
        body: bytes = b"",
        location: str = "",
    ) -> None:
        super().__init__(reason, url, status=status, headers=headers, body=body)
        self.location = location


class InvalidAccept(InvalidResponse):
    """The 101 response's ``Sec-WebSocket-Accept`` is missing or is not the hash of our key
    (RFC 6455 section 4.1: the client MUST fail), or a hixie-76 server's challenge answer is
    wrong: the server is not a (correct) WebSocket server, or something in between altered
    the response."""
