"""What answers a request: the route table on the loop, or the WSGI app in a worker thread.

A plain request goes to the WSGI app (:func:`answer`); in route-table mode the server
answers it itself (404, or 426 for a WebSocket-only URL).  An upgrade request is decided by
the application (:func:`decide_upgrade`): a WSGI app sees it as a plain request, with its own
routing, authentication and Origin rules, and accepts through
``environ["stargate.websocket"]``.  The upgrade happens only if the app's answer stands:
accepted, no exception, a 2xx status; otherwise the app's own response (a redirect, an
error, or a 500) is sent and no handler runs, or a 404 when it answered with a page.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import handshake
from ..extras import install_hint
from ..headers import Headers
from .metrics import CONTENT_TYPE, exposition
from .proxy import ClientView, client_view
from .request import HttpRequest
from .response import http_date, serialize_head, simple_response
from .upgrade import ENVIRON_KEY, Upgrade
from .wsgi import WSGIResponse, build_environ, run_wsgi

if TYPE_CHECKING:
    from .channel import HttpChannel

logger = logging.getLogger("stargate.http")

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
    """The client of ``request``: the socket's peer, or whom a trusted proxy names.  The
    host it asked for is the proxy's word, else an absolute-form target's authority (RFC
    9112 section 3.2.2: it replaces Host), else the Host header (``None`` here)."""
    client = client_view(
        request.headers,
        channel.peername,
        secure=channel.secure,
        trusted=channel.state.trusted_proxies,
    )
    authority = request.parsed.authority
    if client.host is None and authority is not None:
        client = replace(client, host=authority)
    return client


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
    started = time.monotonic()
    client = client_of(channel, request)
    path = request.parsed.path
    if request.method in ("GET", "HEAD") and path in (
        state.config.metrics_path,
        state.config.health_path,
    ):
        _answer_itself(channel, request, client, started, _operations(channel, request, path))
        return
    if state.routes is not None:
        # The client's keep-alive decides (HTTP/1.0, Connection: close), as for the app.
        if state.routes.resolve(path) is None:
            status, reason, headers = 404, f"no route for {path}", []
        else:
            status = 426
            reason = (
                "this URL serves WebSocket connections only: a handshake sends "
                "Connection: Upgrade and Upgrade: websocket"
            )
            headers = [("Upgrade", "websocket")]
        keep_alive = request.keep_alive and not state.shutting_down
        data = simple_response(status, reason, keep_alive=keep_alive, headers=headers)
        _answer_itself(channel, request, client, started, (status, data))
        return
    app = state.wsgi_app
    assert app is not None and state.loop is not None
    response = WSGIResponse(channel, request, server=state)
    env = environ(channel, request, client)
    before = channel.bytes_queued

    def record(cut: bool) -> None:
        state.record_http(
            client.remote,
            request.method,
            request.target,
            request.http_version,
            # Cut before the app gave a status: the server was unavailable to it.
            response.status_code or (503 if cut else 500),
            channel.bytes_queued - before,
            started,
            cut,
        )

    # The shutdown's deadline may pass with the app still at it: the line is written then,
    # as the loop may be gone by the time the app returns.
    channel.cut_short_by_shutdown = partial(record, True)

    def done(error: BaseException | None) -> None:
        request.body.close()
        if channel.cut_short_by_shutdown is not None:  # else the shutdown wrote the line
            channel.cut_short_by_shutdown = None
            record(False)
        if response.cut_short:
            channel.reset_on_close()
        channel.request_done(response.keep_alive and error is None)
        state.app_done(error)

    state.run_in_thread(partial(run_wsgi, app, env, response), done)


def _answer_itself(
    channel: HttpChannel,
    request: HttpRequest,
    client: ClientView,
    started: float,
    answer: tuple[int, bytes],
) -> None:
    """A response the server makes itself, on the loop: sent, logged, done."""
    status, data = answer
    if request.method == "HEAD":
        data = data.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    channel.respond(data)
    state = channel.state
    state.record_http(
        client.remote,
        request.method,
        request.target,
        request.http_version,
        status,
        len(data),
        started,
    )
    channel.request_done(request.keep_alive)


def _operations(channel: HttpChannel, request: HttpRequest, path: str) -> tuple[int, bytes]:
    """The metrics exposition or the readiness answer (see ``ServerConfig``)."""
    state = channel.state
    keep_alive = request.keep_alive and not state.shutting_down
    if path == state.config.health_path:
        if state.ready:
            return 200, simple_response(200, "ready", keep_alive=keep_alive)
        why = "shutting down" if state.shutting_down else "the group broker is disconnected"
        return 503, simple_response(503, f"not ready: {why}", keep_alive=keep_alive)
    try:
        body = exposition(state)
    except ImportError:
        logger.error("metrics_path is set but prometheus_client is not installed")
        reason = f"metrics need prometheus_client: {install_hint('prometheus')}"
        return 500, simple_response(500, reason, keep_alive=keep_alive)
    head = serialize_head(
        "200 OK",
        [
            ("Content-Type", CONTENT_TYPE),
            ("Content-Length", str(len(body))),
            ("Date", http_date()),
            ("Server", "stargate"),
            ("Connection", "keep-alive" if keep_alive else "close"),
        ],
    )
    return 200, head + body


def handshake_request(request: HttpRequest) -> handshake.Request:
    """The sans-I/O core's view of an upgrade request: the target as the client wrote it
    (an empty query too), without its fragment or an absolute form's authority."""
    return handshake.Request(
        method=request.method,
        target=request.parsed.resource,
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
            reason = f"no WebSocket route for {hs_request.path}"
            channel.upgrade_refused(simple_response(404, reason), client, 404, reason)
        else:
            channel.upgrade_accepted(hs_request, acceptance, client)
        return
    app = state.wsgi_app
    assert app is not None and state.loop is not None
    upgrade = Upgrade(hs_request)
    env = environ(channel, request, client)
    env[ENVIRON_KEY] = upgrade
    sink = _HeldSink()
    # If the app's answer is sent, it is a refusal, and the server closes after it: the
    # head says so (RFC 9112 section 9.6), which the response writes itself for a
    # request that is not kept alive.
    response = WSGIResponse(sink, request, keep_alive=False)
    response.upgrade_accepted = lambda: upgrade.acceptance is not None

    def decided(error: BaseException | None) -> None:
        channel.cut_short_by_shutdown = None
        state.app_done(error)
        # Taken from the environ's Upgrade: left there, the handler (often a method of the
        # app's view, which holds the request, which holds the environ) would tie them all
        # into a reference cycle outliving the connection until the cycle collector runs.
        acceptance, upgrade.acceptance = upgrade.acceptance, None
        # A Pyramid exception view or tween that turns an accepted view's answer into a
        # redirect, a 403 or a 500 must not let the handler run anyway.
        stands = (
            acceptance is not None
            and not response.failed
            and error is None
            and response.status_code < 300
        )
        if stands:
            assert acceptance is not None
            channel.upgrade_accepted(hs_request, acceptance, client)
        elif response.failed:
            # Whatever the app had answered before it failed is held, never sent: the 500
            # of any failed answer (a head it had produced would promise a whole one).
            answer = simple_response(500, "Internal Server Error")
            channel.upgrade_refused(answer, client, 500, "the application failed")
        elif response.status_code >= 300:
            # The app's own answer: an error, or a redirect (a login page, a moved URL),
            # which RFC 6455 section 4.1 lets a handshake's answer be.
            status = response.status_code
            if status < 400:
                reason = "redirected by the application"
            else:
                reason = "refused by the application"
            channel.upgrade_refused(bytes(sink.data), client, status, reason)
        else:  # a page, not a WebSocket: most likely a wrong URL, which 404 says better
            reason = (
                f"no WebSocket handler for {hs_request.path} "
                f"(the application answered {response.status_code} without accepting "
                "the upgrade)"
            )
            channel.upgrade_refused(simple_response(404, reason), client, 404, reason)

    if state.config.upgrade_on_loop:
        # The application said its upgrade decisions never block (no database, no file):
        # no thread hop, which is a third of a handshake through a WSGI framework.
        try:
            run_wsgi(app, env, response)
        except (SystemExit, KeyboardInterrupt) as exc:  # answered 500; the server stops
            decided(exc)
            return
        except BaseException as exc:  # run_wsgi turns the app's exceptions into a 500
            decided(exc)
            raise
        decided(None)
        return
    # The shutdown's deadline may pass before the app decides: its line is written then.
    channel.cut_short_by_shutdown = partial(
        state.record_refusal,
        client.remote,
        "GET",
        request.target,
        503,
        "the server stopped before the app decided on the upgrade",
        websocket=True,
    )
    state.run_in_thread(partial(run_wsgi, app, env, response), decided)
