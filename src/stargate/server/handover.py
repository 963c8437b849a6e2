"""Handing a connection over from HTTP to a WebSocket, and running its handler.

Once the application has accepted an upgrade (:mod:`stargate.server.dispatch`) and the
channel has the bytes the handshake needs (hixie-76's key3), :func:`handshake` builds the
101 response, or the refusal to send instead.  :func:`hand_over` then gives the transport
to a new :class:`~stargate.server.websocket.WebSocket` and starts the application's handler:
an ``async def`` handler as one task on the loop, a plain ``def`` handler in a worker thread
with the blocking facade.  From then on the WebSocket owns the connection.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from .. import handshake
from ..connection import Connection
from ..errors import ConnectionClosed, HandshakeError
from ..extensions.permessage_deflate import NAME as PERMESSAGE_DEFLATE
from ..extensions.permessage_deflate import PerMessageDeflate
from ..protocol import Role
from .response import simple_response
from .state import ServerState
from .sync import SyncWebSocket
from .upgrade import Acceptance, Handler, is_async_handler
from .websocket import WebSocket, WebSocketProtocol

logger = logging.getLogger("stargate.server")


@dataclass(frozen=True, slots=True)
class Refused:
    """The handshake failed: the complete HTTP response to send before closing."""

    response: bytes
    status: int
    reason: str


def handshake_response(
    state: ServerState,
    request: handshake.Request,
    acceptance: Acceptance,
    key3: bytes,
    *,
    secure: bool,
    authority: str | None = None,
) -> handshake.Accepted | Refused:
    """Check the upgrade request against the application's acceptance and the server's
    settings; the accepted handshake (its 101 response and negotiated parameters) or the
    response that refuses it (400, 403, 426 with a reason, or 500 for headers the
    application gave that cannot be sent).

    ``secure`` and ``authority`` are the scheme and ``host[:port]`` the client reached us at
    (a trusted proxy's forwarded ones), for the same-origin check.
    """
    options = acceptance.options or state.config.websocket
    compression = options.compression
    try:
        return handshake.accept(
            request,
            key3=key3,
            secure=secure,
            subprotocols=acceptance.subprotocols,
            origin_policy=acceptance.origin_policy or state.origin_policy,
            versions=state.versions,
            extra_headers=acceptance.headers,
            extensions=[compression] if compression is not None else [],
            authority=authority,
        )
    except HandshakeError as exc:
        return Refused(handshake.reject_response(exc), exc.status, exc.reason)
    except ValueError as exc:  # the app's extra headers cannot be sent (CR/LF in them)
        logger.error("cannot accept the upgrade of %s: %s", request.target, exc)
        reason = "invalid handshake headers from the app"
        return Refused(simple_response(500, reason), 500, reason)


def extension_names(extensions: list[object]) -> list[str]:
    """The registered names of negotiated extensions (for the access log)."""
    return [
        PERMESSAGE_DEFLATE if isinstance(ext, PerMessageDeflate) else type(ext).__name__
        for ext in extensions
    ]


def hand_over(
    state: ServerState,
    transport: asyncio.Transport,
    request: handshake.Request,
    accepted: handshake.Accepted,
    acceptance: Acceptance,
    *,
    remote_address: tuple[str, int] | None,
    write_paused: bool,
) -> WebSocket:
    """Send the 101 response and give the transport to a new WebSocket.

    ``write_paused`` is the transport's write state as the HTTP channel last heard it: a
    transport tells its protocol only changes, so the new one must be told the current one.
    The caller then registers the WebSocket, starts the handler (:func:`start_handler`) and
    feeds it what followed the request head (early frames).
    """
    assert state.loop is not None
    options = acceptance.options or state.config.websocket
    connection = Connection(
        Role.SERVER, accepted.version, limits=options.limits, extensions=accepted.extensions
    )
    ws = WebSocket(
        connection,
        request,
        loop=state.loop,
        options=options,
        subprotocol=accepted.subprotocol,
        remote_address=remote_address,
    )
    transport.write(accepted.response)
    transport.set_protocol(WebSocketProtocol(ws))
    ws.attach(transport, writing_paused=write_paused)
    return ws


def start_handler(state: ServerState, ws: WebSocket, handler: Handler) -> None:
    """An ``async def`` handler becomes one task; a ``def`` handler one worker thread."""
    loop = state.loop
    assert loop is not None
    future: asyncio.Future[Any]
    if is_async_handler(handler):
        future = loop.create_task(_run_async(handler, ws, state))
    else:
        assert state.handler_executor is not None
        future = loop.run_in_executor(
            state.handler_executor, _run_sync, handler, SyncWebSocket(ws, loop), loop, state
        )
    state.track_handler(future)


async def _run_async(handler: Handler, ws: WebSocket, state: ServerState) -> None:
    try:
        await handler(ws)  # type: ignore[arg-type,misc]
    except ConnectionClosed:
        ws.handler_returned()
    except Exception:
        logger.exception("%r: handler failed", ws)
        ws.handler_failed()
    except (SystemExit, KeyboardInterrupt) as exc:  # the process is to end
        ws.handler_failed()
        state.handler_exits(exc)
    else:
        ws.handler_returned()


def _run_sync(
    handler: Handler, sync: SyncWebSocket, loop: asyncio.AbstractEventLoop, state: ServerState
) -> None:
    """In a worker thread; what the WebSocket must learn goes back through the loop."""
    ws = sync.ws
    try:
        handler(sync)  # type: ignore[arg-type]
    except ConnectionClosed:
        loop.call_soon_threadsafe(ws.handler_returned)
    except Exception:
        logger.exception("%r: handler failed", ws)
        loop.call_soon_threadsafe(ws.handler_failed)
    except (SystemExit, KeyboardInterrupt) as exc:  # as from a task: the process is to end
        loop.call_soon_threadsafe(ws.handler_failed)
        loop.call_soon_threadsafe(state.handler_exits, exc)
    else:
        loop.call_soon_threadsafe(ws.handler_returned)
