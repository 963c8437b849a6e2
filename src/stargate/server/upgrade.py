"""How an application accepts a WebSocket upgrade.

A WSGI app sees an upgrade request as a plain request, so its own routing, authentication
and Origin rules apply; to accept, it calls ``environ["stargate.websocket"].accept(handler)``.
The server then performs the handshake and owns the connection.  An upgrade nobody accepts
gets the app's own error response, or 404 when the app answered as for a page.
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from ..handshake import OriginPolicy, Request
from .config import WebSocketOptions

if TYPE_CHECKING:
    from .sync import SyncWebSocket
    from .websocket import WebSocket

AsyncHandler: TypeAlias = "Callable[[WebSocket], Awaitable[object]]"
SyncHandler: TypeAlias = "Callable[[SyncWebSocket], object]"
Handler: TypeAlias = "AsyncHandler | SyncHandler"

#: The WSGI environ key under which an upgrade request carries its :class:`Upgrade`.
ENVIRON_KEY = "stargate.websocket"


#: Handlers already looked at (asked once per handshake; ``inspect`` costs microseconds).
_async_handlers: weakref.WeakKeyDictionary[Callable[..., Any], bool] = weakref.WeakKeyDictionary()


def is_async_handler(handler: Callable[..., Any]) -> bool:
    """``async def`` handlers run on the loop; plain ``def`` ones in a worker thread."""
    # A bound method (a Pyramid view's ``self.handler``) is a new object on every access:
    # its function is what stays, and what decides.
    key = getattr(handler, "__func__", handler)
    try:
        return _async_handlers[key]
    except (KeyError, TypeError):  # not seen yet, or not weakly referable
        pass
    call = getattr(key, "__call__", None)  # noqa: B004 - callable objects too
    found = inspect.iscoroutinefunction(key) or inspect.iscoroutinefunction(call)
    with contextlib.suppress(TypeError):
        _async_handlers[key] = found
    return found


@dataclass(frozen=True, slots=True)
class Acceptance:
    """What the application decided for an upgrade request (the arguments of
    :meth:`Upgrade.accept`)."""

    #: What serves the connection: ``async def handler(ws)`` on the loop, a plain ``def``
    #: in a thread of its own.
    handler: Handler
    #: The subprotocols the app speaks, in its order of preference.
    subprotocols: tuple[str, ...] = ()
    #: Overrides the server's Origin policy for this upgrade (``None``: the server's).
    origin_policy: OriginPolicy | None = None
    #: Overrides the server's WebSocket options for this connection (``None``: the server's).
    options: WebSocketOptions | None = None
    #: More headers for the 101 response.
    headers: tuple[tuple[str, str], ...] = ()


class Upgrade:
    """Put in the WSGI environ of an upgrade request; the app calls :meth:`accept`."""

    def __init__(self, request: Request) -> None:
        #: The upgrade request (method, target, headers) the app is asked about.
        self.request = request
        #: What :meth:`accept` recorded, or ``None`` while the app has not accepted (the
        #: server takes it, leaving ``None``, once the app returned).
        self.acceptance: Acceptance | None = None

    @property
    def offered_subprotocols(self) -> list[str]:
        """Subprotocols the client offered, in its order: the elements that are tokens, as
        RFC 6455 section 4.1 requires of them (an app may pass these to :meth:`accept`, and
        the one chosen goes into the 101 and the access log)."""
        from ..headers import is_token, split_tokens

        offered = split_tokens(self.request.headers.get_all("Sec-WebSocket-Protocol"))
        return [name for name in offered if is_token(name)]

    def accept(
        self,
        handler: Handler,
        *,
        subprotocols: Sequence[str] = (),
        origin_policy: OriginPolicy | None = None,
        options: WebSocketOptions | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Accept the upgrade with ``handler`` (``async def`` or ``def``).

        ``subprotocols`` are ours, in preference order; ``origin_policy`` and ``options``
        override the server's for this connection; ``headers`` go into the 101 response.
        """
        self.acceptance = Acceptance(
            handler, checked_subprotocols(subprotocols), origin_policy, options, tuple(headers)
        )


def checked_subprotocols(subprotocols: Sequence[str]) -> tuple[str, ...]:
    """``subprotocols`` as a tuple; :class:`ValueError` for one that is not a token (RFC
    6455 section 4.1), which no 101 may carry, and :class:`TypeError` for a lone string
    (its letters would be taken for names)."""
    from ..headers import is_token

    if isinstance(subprotocols, str):
        raise TypeError(f"subprotocols is a sequence of names, not one string: {subprotocols!r}")
    for name in subprotocols:
        if not isinstance(name, str) or not is_token(name):
            raise ValueError(f"subprotocol {name!r} is not a token (RFC 6455 section 4.1)")
    return tuple(subprotocols)


def is_websocket(environ: dict[str, Any]) -> bool:
    """Whether a WSGI request is a WebSocket upgrade this server can accept."""
    return ENVIRON_KEY in environ
