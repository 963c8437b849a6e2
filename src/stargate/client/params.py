"""The keywords of ``connect()``, in one place: :class:`ConnectParams`.

:func:`stargate.connect`, :func:`stargate.sync_connect`, the ``stargate client`` command line
and :mod:`stargate.testing` all take or build one; :func:`keywords_of` gives an opener of
``(url, params)`` the keyword signature of its fields, for type checkers and for ``help()``.
"""

from __future__ import annotations

import base64
import functools
import inspect
import ssl as ssl_module
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Concatenate, ParamSpec, TypeVar

from ..extensions.permessage_deflate import PerMessageDeflateClientOffer
from ..handshake import ClientHandshake
from ..limits import Limits
from ..protocol import ProtocolVersion
from .urls import WebSocketURL
from .websocket import ClientOptions

__all__ = [
    "CREDENTIAL_HEADERS",
    "DEFAULT_COMPRESSION",
    "USER_AGENT",
    "ConnectParams",
    "keywords_of",
]


def _user_agent() -> str:
    try:
        version = metadata.version("stargate")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        version = "dev"
    return f"stargate/{version}"


#: Sent as ``User-Agent`` unless ``user_agent=`` says otherwise (``None``: no header).
USER_AGENT = _user_agent()
#: The permessage-deflate offer made unless ``compression=`` says otherwise.
DEFAULT_COMPRESSION = PerMessageDeflateClientOffer()

#: Request headers that carry credentials: sent to the origin the caller opened, never to
#: another origin a redirect points to (what browsers and HTTP clients do for the same reason).
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


#: The defaults :class:`ConnectParams` shares with the connection's options.
_OPTIONS = ClientOptions()

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectParams:
    """The keyword arguments of :func:`stargate.connect` and :func:`stargate.sync_connect`.

    Each field is a keyword of both (:func:`keywords_of` gives them this signature); the
    ``stargate client`` command line builds one from its options, and :mod:`stargate.testing`
    from its keywords.  Checked when made: a mistake fails at the call, not at the first
    connection attempt.  ``options`` is what the open connection needs of them.

    * ``subprotocols``: offered in order; the server's choice is ``ws.subprotocol``.
    * ``extra_headers``: more request headers (pairs or a mapping), e.g. cookies or an
      ``Authorization``.  ``user:password@`` in the URL sends HTTP Basic credentials.  A
      redirect to the same origin gets them all again; a redirect to another origin (another
      scheme, host or port) gets none of :data:`CREDENTIAL_HEADERS` nor the URL's credentials.
      ``origin`` sends an ``Origin`` header.
    * ``compression``: the permessage-deflate offer (RFC 7692), on by default; ``None``
      turns it off.  ``ws.compression`` tells whether the server agreed.
    * ``limits``: message, frame and response-head sizes (:class:`~stargate.limits.Limits`:
      1 MiB messages by default, larger ones close the connection with 1009).
    * ``ssl``: the TLS context for ``wss://``; by default the system's trusted certificates,
      verified, with the URL's host name (or ``server_hostname``) checked.
    * ``version``: ``ProtocolVersion.HIXIE_76`` (or ``HIXIE_75``, ``HYBI_07``, ``HYBI_08``)
      speaks a legacy draft, for testing old servers: text only, no ping, no compression.
    * ``open_timeout`` bounds DNS, TCP, TLS and the handshake together; ``close_timeout``
      the closing handshake; ``ping_interval``/``ping_timeout`` are the keepalive (a ping
      every 20 s, close with 1011 when its pong is 20 s late); ``None`` turns either off.
    * ``max_queue`` unread messages pause reading; ``send()`` waits while more than
      ``write_high_water`` bytes are waiting to be sent.
    * ``follow_redirects``: how many 3xx redirects to follow (default 0: a redirect raises
      :class:`~stargate.client.errors.RedirectError` naming its ``Location``); never from
      ``wss://`` to ``ws://``.
    * ``user_agent``: the ``User-Agent`` header (``None``: none is sent).
    """

    subprotocols: Sequence[str] = ()
    # Not in the repr: it may hold an Authorization or a Cookie.
    extra_headers: Sequence[tuple[str, str]] | Mapping[str, str] = field(default=(), repr=False)
    origin: str | None = None
    compression: PerMessageDeflateClientOffer | None = DEFAULT_COMPRESSION
    limits: Limits | None = None
    ssl: ssl_module.SSLContext | None = None
    server_hostname: str | None = None
    version: ProtocolVersion = ProtocolVersion.RFC6455
    open_timeout: float | None = _OPTIONS.open_timeout
    close_timeout: float = _OPTIONS.close_timeout
    ping_interval: float | None = _OPTIONS.ping_interval
    ping_timeout: float | None = _OPTIONS.ping_timeout
    max_queue: int = _OPTIONS.max_queue
    write_high_water: int = _OPTIONS.write_high_water
    follow_redirects: int = 0
    user_agent: str | None = USER_AGENT

    # What the open connection needs of these parameters (made once, and checked by
    # ClientOptions: a mistake fails here, at the call).
    options: ClientOptions = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.subprotocols, str):
            raise TypeError("subprotocols must be a sequence of strings, not a string")
        if self.version.is_hixie and len(self.subprotocols) > 1:
            raise ValueError("the hixie drafts offer at most one subprotocol")
        if self.follow_redirects < 0:
            raise ValueError("follow_redirects must be 0 or more")
        options = ClientOptions(
            limits=self.limits or Limits(),
            # The hixie drafts have no extensions.
            compression=None if self.version.is_hixie else self.compression,
            open_timeout=self.open_timeout,
            close_timeout=self.close_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            max_queue=self.max_queue,
            write_high_water=self.write_high_water,
        )
        object.__setattr__(self, "options", options)  # frozen: set once, here

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """``extra_headers`` as ``(name, value)`` pairs."""
        headers = self.extra_headers
        return tuple(headers.items() if isinstance(headers, Mapping) else headers)

    def with_url_credentials(self, target: WebSocketURL) -> ConnectParams:
        """These parameters with the ``user:password@`` of ``target`` as HTTP Basic
        credentials (RFC 7617), unless an ``Authorization`` header is given already.

        Folded into the headers so that they follow the same rule as an explicit
        ``Authorization`` on redirects: kept for the same origin, dropped for another.
        """
        headers = self.headers
        if target.username is None or any(n.lower() == "authorization" for n, _ in headers):
            return self
        credentials = f"{target.username}:{target.password or ''}".encode()
        basic = ("Authorization", "Basic " + base64.b64encode(credentials).decode())
        return replace(self, extra_headers=(*headers, basic))

    def for_another_origin(self) -> ConnectParams:
        """These parameters after a redirect to another origin: no
        :data:`CREDENTIAL_HEADERS`, and no ``server_hostname`` (named for the first host: the
        next one's certificate must match its own name)."""
        headers = tuple((n, v) for n, v in self.headers if n.lower() not in CREDENTIAL_HEADERS)
        return replace(self, extra_headers=headers, server_hostname=None)

    def handshake(self, target: WebSocketURL) -> ClientHandshake:
        """The core's handshake for one attempt (a fresh key each time)."""
        headers = list(self.headers)
        if self.user_agent is not None and not any(n.lower() == "user-agent" for n, _ in headers):
            headers.append(("User-Agent", self.user_agent))
        options = self.options
        return ClientHandshake(
            target.host_header,
            target.resource,
            secure=target.secure,
            version=self.version,
            subprotocols=self.subprotocols,
            extensions=[options.compression] if options.compression is not None else [],
            origin=self.origin,
            extra_headers=headers,
            max_header_size=options.limits.max_header_size,
        )


def keywords_of(
    factory: Callable[_P, ConnectParams],
) -> Callable[[Callable[[str, ConnectParams], _R]], Callable[Concatenate[str, _P], _R]]:
    """Give an opener of ``(url, params)`` the signature ``(url, **keywords of factory)``.

    So that the keyword list of :func:`stargate.connect` and :func:`stargate.sync_connect` is
    written once, as the fields of :class:`ConnectParams`: type checkers see each keyword with its
    type (a ParamSpec), and ``help()`` and documentation tools see the same signature.
    """

    def decorate(opener: Callable[[str, ConnectParams], _R]) -> Callable[Concatenate[str, _P], _R]:
        @functools.wraps(opener)
        def open_url(url: str, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            return opener(url, factory(*args, **kwargs))

        url = inspect.Parameter("url", inspect.Parameter.POSITIONAL_ONLY, annotation="str")
        keywords = inspect.signature(factory).parameters.values()
        returns = inspect.signature(opener).return_annotation
        open_url.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [url, *keywords], return_annotation=returns
        )
        return open_url

    return decorate
