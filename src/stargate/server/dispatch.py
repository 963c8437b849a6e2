"""What answers a request: the route table on the loop, or the WSGI app in a worker thread.

A plain request goes to the WSGI app (:func:`answer`); in route-table mode the server
answers it itself (404, or 426 for a WebSocket-only URL).  An upgrade request is decided by
the application (:func:`decide_upgrade`): a WSGI app sees it as a plain request, with its own
routing, authentication and Origin rules, and accepts through
``environ["stargate.websocket"]``.  The upgrade happens only if the app's answer stands:
accepted, no exception, no error status; otherwise the app's own response (or a 500) is
sent and no handler runs.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .. import handshake
from ..headers import Headers
from .proxy import ClientView, client_view
from .request import HttpRequest
from .response import simple_response
from .upgrade import ENVIRON_KEY, Upgrade
from .wsgi import WSGIResponse, build_environ, run_wsgi

if TYPE_CHECKING:
    from .channel import HttpChannel

#: An app's answer to an upgrade request is held until it is known whether it stands; more
#: than this is not an error page but a misuse, and becomes a 500.
MAX_REFUSAL = 1024 * 1024


class _HeldSink:
    """Holds an app's answer to an upgrade request until the decision."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write_from_thread(self, data: bytes) -> None:
        if len(self.data) + len(data) > MAX_REFUSAL:
            raise ValueError("the app's answer to an upgrade request exceeds 1 MiB")
        self.data += data


def client_of(channel: HttpChannel, request: HttpRequest) -> ClientView:
    """The client of ``request``: the socket's peer, or whom a trusted proxy names."""
    return client_view(
        request.headers,
        channel.peername,
        secure=channel.secure,
        trusted=channel.state.trusted_proxies,
    )


def environ(channel: HttpChannel, request: HttpRequest, client: ClientView) -> dict[str, Any]:
    """The WSGI environ of ``request`` from ``client`` (see :func:`client_of`)."""
    state = channel.state
    env = build_environ(
        request,
        server_name=state.host,
        server_port=state.port,
        remote=client.remote,
        url_scheme=client.scheme,
        multiprocess=state.multiprocess,
    )
    if client.host is not None:
        env["HTTP_HOST"] = client.host
    return env


def answer(channel: HttpChannel, request: HttpRequest) -> None:
    """Answer a plain HTTP request; ``channel.request_done`` is called once it is."""
    state = channel.state
    if state.routes is not None:
        # The client's keep-alive decides (HTTP/1.0, Connection: close), as for the app.
        keep_alive = request.keep_alive
        path = request.parsed.path
        if state.routes.resolve(path) is None:
            data = simple_response(404, f"no route for {path}", keep_alive=keep_alive)
        else:
            data = simple_response(
                426,
                "this URL serves WebSocket connections only",
                keep_alive=keep_alive,
                headers=[("Upgrade", "websocket")],
            )
        channel.respond(data)
        channel.request_done(keep_alive)
        return
    app = state.wsgi_app
    assert app is not None and state.loop is not None
    response = WSGIResponse(channel, request)
    env = environ(channel, request, client_of(channel, request))
    future = state.loop.run_in_executor(state.executor, run_wsgi, app, env, response)

    def done(f: asyncio.Future[None]) -> None:
        request.body.close()
        channel.request_done(response.keep_alive and f.exception() is None)

    future.add_done_callback(done)


def handshake_request(request: HttpRequest) -> handshake.Request:
    """The sans-I/O core's view of an upgrade request (target without its fragment)."""
    target = request.parsed
    return handshake.Request(
        method=request.method,
        target=f"{target.path}?{target.query}" if target.query else target.path,
        headers=Headers(request.headers),
        http_version=request.http_version,
    )


def decide_upgrade(channel: HttpChannel, request: HttpRequest) -> None:
    """Let the route table or the app decide about an upgrade request; the channel hears
    the outcome through ``upgrade_accepted`` or ``upgrade_refused``."""
    state = channel.state
    hs_request = handshake_request(request)
    client = client_of(channel, request)
    if state.routes is not None:
        acceptance = state.routes.resolve(hs_request.path)
        if acceptance is None:
            channel.upgrade_refused(
                simple_response(404, f"no WebSocket route for {hs_request.path}")
            )
        else:
            channel.upgrade_accepted(hs_request, acceptance, client)
        return
    app = state.wsgi_app
    assert app is not None and state.loop is not None
    upgrade = Upgrade(hs_request)
    env = environ(channel, request, client)
    env[ENVIRON_KEY] = upgrade
    sink = _HeldSink()
    response = WSGIResponse(sink, request)
    response.upgrade_accepted = lambda: upgrade.acceptance is not None
    future = state.loop.run_in_executor(state.executor, run_wsgi, app, env, response)

    def decided(f: asyncio.Future[None]) -> None:
        # A Pyramid exception view or tween that turns an accepted view's answer into a
        # 403 or 500 must not let the handler run anyway.
        stands = (
            upgrade.acceptance is not None
            and not response.failed
            and f.exception() is None
            and response.status_code < 400
        )
        if stands:
            assert upgrade.acceptance is not None
            channel.upgrade_accepted(hs_request, upgrade.acceptance, client)
        elif response.status_code >= 400 or response.failed:
            channel.upgrade_refused(bytes(sink.data))
        else:
            channel.upgrade_refused(
                simple_response(404, f"no WebSocket handler for {hs_request.path}")
            )

    future.add_done_callback(decided)
