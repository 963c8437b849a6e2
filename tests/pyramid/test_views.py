"""``WebSocketView``: accepting the upgrade, settings, security, sync and async handlers.

In process with WebTest first (what the view hands the server), then over real sockets
(what a client sees: the handshake, 403 from Pyramid's security, 403 for a foreign Origin).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import webtest
from pyramid.authorization import ACLHelper, Allow, Authenticated, Everyone
from pyramid.config import Configurator
from pyramid.threadlocal import get_current_registry, get_current_request
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin, Subprotocol

from stargate.handshake import OriginPolicy
from stargate.pyramid import WebSocketView
from stargate.pyramid.testing import ServerThread
from stargate.server import ENVIRON_KEY, SyncWebSocket, WebSocket, WebSocketOptions
from stargate.server.upgrade import is_async_handler

UpgradeEnviron = Callable[..., dict[str, Any]]
Serve = Callable[..., ServerThread]
TIMEOUT = 5.0


class TokenPolicy:
    """Pyramid 2 security policy: ``Authorization: Token <name>`` identifies ``name``."""

    def identity(self, request: Any) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return token if scheme == "Token" and token else None

    def authenticated_userid(self, request: Any) -> str | None:
        return self.identity(request)

    def permits(self, request: Any, context: Any, permission: str) -> Any:
        principals = [Everyone]
        if self.identity(request) is not None:
            principals.append(Authenticated)
        return ACLHelper().permits(context, principals, permission)

    def remember(self, request: Any, userid: str, **kw: Any) -> list[tuple[str, str]]:
        return []

    def forget(self, request: Any, **kw: Any) -> list[tuple[str, str]]:
        return []


class Root:
    __name__ = ""
    __parent__ = None
    __acl__ = ((Allow, Authenticated, "listen"),)


class Greeter(WebSocketView):
    """Async: says who it is talking to, then echoes."""

    async def handler(self, websocket: WebSocket) -> None:
        await websocket.send(f"hello {self.request.authenticated_userid}")
        async for message in websocket:
            await websocket.send(message)


class SyncGreeter(WebSocketView):
    """Sync, in a worker thread: Pyramid's thread locals are this request's."""

    def handler(self, websocket: SyncWebSocket) -> None:
        current = get_current_request()
        assert current is self.request
        assert get_current_registry() is self.request.registry
        websocket.send(f"hello {self.request.authenticated_userid} from a thread")
        for message in websocket:
            websocket.send(message)


class Chat(WebSocketView):
    subprotocols = ("chat.v2", "chat.v1")

    async def handler(self, websocket: WebSocket) -> None:
        await websocket.send(str(websocket.subprotocol))


class Configured(WebSocketView):
    origin_policy = OriginPolicy(allowed=("https://class.example",))
    options = WebSocketOptions(ping_interval=None)

    async def handler(self, websocket: WebSocket) -> None:
        pass


class Abstract(WebSocketView):
    pass


class Leftovers(WebSocketView):
    """Says which of what only answering the request needed its request still holds."""

    async def handler(self, websocket: WebSocket) -> None:
        held = [name for name in SPENT if name in vars(self.request)]
        await websocket.send(",".join(held) or "none")


class SyncLeftovers(WebSocketView):
    def handler(self, websocket: SyncWebSocket) -> None:
        held = [name for name in SPENT if name in vars(self.request)]
        websocket.send(",".join(held) or "none")


SPENT = ("response", "response_callbacks", "finished_callbacks")


def make_app(settings: dict[str, Any] | None = None) -> Any:
    with Configurator(settings=settings or {}, root_factory=lambda request: Root()) as config:
        config.include("stargate.pyramid")
        config.set_security_policy(TokenPolicy())
        config.add_view(Greeter, name="greet", websocket=True)
        config.add_view(SyncGreeter, name="sync", websocket=True)
        config.add_view(Greeter, name="private", websocket=True, permission="listen")
        config.add_view(SyncGreeter, name="private-sync", websocket=True, permission="listen")
        config.add_view(Chat, name="chat", websocket=True)
        config.add_view(Configured, name="configured", websocket=True)
        config.add_view(Greeter, name="any", permission="listen")  # no predicate: 426/501
        config.add_view(Abstract, name="abstract", websocket=True)
        config.add_view(Leftovers, name="leftovers", websocket=True)
        config.add_view(SyncLeftovers, name="sync-leftovers", websocket=True)
        return config.make_wsgi_app()


# -- in process -------------------------------------------------------------------------------


def accepted(app: Any, path: str, environ: dict[str, Any], **kw: Any) -> Any:
    webtest.TestApp(app).get(path, extra_environ=environ, **kw)
    return environ[ENVIRON_KEY].acceptance


def test_accepts_with_the_handler(upgrade_environ: UpgradeEnviron) -> None:
    acceptance = accepted(make_app(), "/greet", upgrade_environ("/greet"))
    assert acceptance is not None
    assert is_async_handler(acceptance.handler)
    # Nothing configured: the server's own origin policy and options apply.
    assert acceptance.origin_policy is None and acceptance.options is None
    assert acceptance.subprotocols == ()


def test_sync_handler_is_wrapped_for_a_worker_thread(upgrade_environ: UpgradeEnviron) -> None:
    acceptance = accepted(make_app(), "/sync", upgrade_environ("/sync"))
    assert not is_async_handler(acceptance.handler)


def test_settings_apply(upgrade_environ: UpgradeEnviron) -> None:
    app = make_app(
        {
            "stargate.allowed_origins": "https://a.example\n*.b.example",
            "stargate.subprotocols": "x.v1, x.v2",
            "stargate.max_message_size": "64KiB",
            "stargate.ping_interval": "off",
        }
    )
    acceptance = accepted(app, "/greet", upgrade_environ("/greet"))
    assert acceptance.subprotocols == ("x.v1", "x.v2")
    assert acceptance.origin_policy == OriginPolicy(allowed=("https://a.example", "*.b.example"))
    assert acceptance.options.limits.max_message_size == 64 * 1024
    assert acceptance.options.ping_interval is None


def test_a_view_class_with_subprotocols_as_one_string_fails_when_defined() -> None:
    """``subprotocols = "chat"`` would speak "c", "h", "a", "t": refused at the class
    statement, not at every upgrade."""
    with pytest.raises(TypeError, match="not one string"):

        class Wrong(WebSocketView):
            subprotocols = "chat"

    with pytest.raises(ValueError, match="not a token"):

        class Spaced(WebSocketView):
            subprotocols = ("chat v1",)


def test_class_attributes_override_the_settings(upgrade_environ: UpgradeEnviron) -> None:
    app = make_app({"stargate.subprotocols": "x.v1", "stargate.allowed_origins": "a.example"})
    chat = accepted(app, "/chat", upgrade_environ("/chat"))
    assert chat.subprotocols == ("chat.v2", "chat.v1")
    configured = accepted(app, "/configured", upgrade_environ("/configured"))
    assert configured.origin_policy == Configured.origin_policy
    assert configured.options == Configured.options
    assert configured.subprotocols == ("x.v1",)


def test_unauthenticated_upgrade_is_forbidden_in_process(upgrade_environ: UpgradeEnviron) -> None:
    """Pyramid's security refuses before the view runs: 403 and no acceptance."""
    environ = upgrade_environ("/private")
    assert accepted(make_app(), "/private", environ, status=403) is None


def test_authenticated_upgrade_is_accepted_in_process(upgrade_environ: UpgradeEnviron) -> None:
    environ = {**upgrade_environ("/private"), "HTTP_AUTHORIZATION": "Token ann"}
    assert accepted(make_app(), "/private", environ) is not None


def test_plain_request_to_a_websocket_view_gets_426() -> None:
    response = webtest.TestApp(make_app()).get(
        "/any",
        headers={"Authorization": "Token ann"},
        extra_environ={"SERVER_SOFTWARE": "stargate"},
        status=426,
    )
    assert response.headers["Upgrade"] == "websocket"


def test_plain_request_under_waitress_gets_501_not_a_500() -> None:
    """waitress refuses an app's hop-by-hop ``Upgrade`` header (PEP 3333) with a 500, and
    could not switch protocols anyway: the view says what to do instead."""
    import http.client

    import waitress.server

    server = waitress.server.create_server(make_app(), host="127.0.0.1", port=0, threads=1)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        port = server.socket.getsockname()[1]
        for headers in ({}, {"Upgrade": "websocket", "Connection": "Upgrade"}):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/any", headers={"Authorization": "Token ann", **headers})
            response = connection.getresponse()
            body = response.read()
            connection.close()
            assert response.status == 501, body
            assert b"serve the app with stargate" in body
    finally:
        server.close()
        thread.join(10)


def test_upgrade_under_a_server_that_cannot_upgrade_gets_501() -> None:
    """waitress and friends pass the Upgrade header but no stargate upgrade object."""
    response = webtest.TestApp(make_app()).get(
        "/greet", headers={"Upgrade": "websocket", "Connection": "Upgrade"}, status=501
    )
    assert "stargate" in response.text


def test_a_malformed_handshake_under_stargate_gets_400() -> None:
    """``Upgrade: websocket`` without ``Connection: Upgrade`` is no upgrade to stargate, so
    the view is reached without one: under stargate (``SERVER_SOFTWARE``) that is the
    client's fault, a 400 that says what is missing, not the 501 for a server that cannot
    upgrade, whose advice (serve with stargate) would be wrong here."""
    response = webtest.TestApp(make_app()).get(
        "/greet",
        headers={"Upgrade": "websocket"},
        extra_environ={"SERVER_SOFTWARE": "stargate"},
        status=400,
    )
    assert "Connection: Upgrade" in response.text


def test_handler_must_be_defined() -> None:
    view = Abstract(None, None)
    with pytest.raises(NotImplementedError, match="Abstract"):
        view.handler(None)


# -- over real sockets --------------------------------------------------------------------------


def test_async_handler_sees_the_request(serve: Serve) -> None:
    server = serve(make_app())
    headers = {"Authorization": "Token ann"}
    with connect(server.ws_url("/greet"), additional_headers=headers, open_timeout=TIMEOUT) as ws:
        assert ws.recv(TIMEOUT) == "hello ann"
        ws.send("echo")
        assert ws.recv(TIMEOUT) == "echo"


def test_a_finished_connection_leaves_no_reference_cycle(
    serve: Serve, cyclic_garbage: Callable[[Callable[[object], bool]], list[str]]
) -> None:
    """Pyramid keeps the view on its request and the view keeps the request; the environ's
    Upgrade held the handler, a method of the view: after each connection, the view, the
    request, its environ and the server's objects were left to the cycle collector."""
    server = serve(make_app())
    headers = {"Authorization": "Token ann"}
    for _ in range(3):
        with connect(
            server.ws_url("/greet"), additional_headers=headers, open_timeout=TIMEOUT
        ) as ws:
            assert ws.recv(TIMEOUT) == "hello ann"
    deadline = time.monotonic() + TIMEOUT
    while server.server.state.websockets and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the handlers' tasks and the transports have finished
    ours = ("stargate.", "pyramid.", "webob.")

    def kept(obj: object) -> bool:
        return isinstance(obj, WebSocketView) or type(obj).__module__.startswith(ours)

    assert cyclic_garbage(kept) == []


@pytest.mark.parametrize("path", ["/leftovers", "/sync-leftovers"])
def test_the_request_kept_by_the_handler_drops_what_answering_it_needed(
    serve: Serve, path: str
) -> None:
    """The handler keeps its view, and the view its request, for the connection's lifetime:
    the unsent response and Pyramid's spent callback queues went with it (2 kB each)."""
    server = serve(make_app())
    with connect(server.ws_url(path), open_timeout=TIMEOUT) as ws:
        assert ws.recv(TIMEOUT) == "none"


def test_sync_handler_sees_the_request_and_thread_locals(serve: Serve) -> None:
    server = serve(make_app())
    headers = {"Authorization": "Token bob"}
    with connect(server.ws_url("/sync"), additional_headers=headers, open_timeout=TIMEOUT) as ws:
        assert ws.recv(TIMEOUT) == "hello bob from a thread"
        ws.send(b"\x00binary")
        assert ws.recv(TIMEOUT) == b"\x00binary"


@pytest.mark.parametrize("path", ["/private", "/private-sync"])
def test_unauthenticated_upgrade_gets_403(serve: Serve, path: str) -> None:
    server = serve(make_app())
    with pytest.raises(InvalidStatus) as info:
        connect(server.ws_url(path), open_timeout=TIMEOUT)
    assert info.value.response.status_code == 403
    assert not server.server.websockets  # never upgraded


@pytest.mark.parametrize("path", ["/private", "/private-sync"])
def test_authenticated_upgrade_is_served(serve: Serve, path: str) -> None:
    server = serve(make_app())
    headers = {"Authorization": "Token cy"}
    with connect(server.ws_url(path), additional_headers=headers, open_timeout=TIMEOUT) as ws:
        assert str(ws.recv(TIMEOUT)).startswith("hello cy")


def test_foreign_origin_gets_403(serve: Serve) -> None:
    """Same-origin by default: a page on another site may not use the visitor's cookies."""
    server = serve(make_app())
    with pytest.raises(InvalidStatus) as info:
        connect(server.ws_url("/greet"), origin=Origin("http://evil.example"), open_timeout=TIMEOUT)
    assert info.value.response.status_code == 403


def test_same_origin_is_allowed(serve: Serve) -> None:
    server = serve(make_app())
    origin = f"http://127.0.0.1:{server.port}"
    with connect(server.ws_url("/greet"), origin=Origin(origin), open_timeout=TIMEOUT) as ws:
        assert ws.recv(TIMEOUT) == "hello None"


def test_allowed_origins_setting(serve: Serve) -> None:
    server = serve(make_app({"stargate.allowed_origins": "https://app.example"}))
    url = server.ws_url("/greet")
    with connect(url, origin=Origin("https://app.example"), open_timeout=TIMEOUT) as ws:
        assert ws.recv(TIMEOUT) == "hello None"
    with pytest.raises(InvalidStatus) as info:
        connect(url, origin=Origin("https://other.example"), open_timeout=TIMEOUT)
    assert info.value.response.status_code == 403


def test_subprotocol_is_negotiated(serve: Serve) -> None:
    server = serve(make_app())
    with connect(
        server.ws_url("/chat"),
        subprotocols=[Subprotocol("chat.v1")],
        open_timeout=TIMEOUT,
    ) as ws:
        assert ws.subprotocol == "chat.v1"
        assert ws.recv(TIMEOUT) == "chat.v1"


def test_max_message_size_setting(serve: Serve) -> None:
    server = serve(make_app({"stargate.max_message_size": "1KiB"}))
    with connect(server.ws_url("/greet"), open_timeout=TIMEOUT) as ws:
        ws.recv(TIMEOUT)
        ws.send("x" * 1000)
        assert ws.recv(TIMEOUT) == "x" * 1000
        ws.send("x" * 2000)
        with pytest.raises(Exception):  # noqa: B017 - closed with 1009, whichever way
            ws.recv(TIMEOUT)
        assert ws.close_code == 1009


def test_thread_locals_do_not_leak_into_the_worker(serve: Serve) -> None:
    """After a sync handler returns, its worker thread has no current request any more."""
    leaked: list[object] = []
    done = threading.Event()

    class Probe(WebSocketView):
        def handler(self, websocket: SyncWebSocket) -> None:
            websocket.send("ok")

    with Configurator() as config:
        config.include("stargate.pyramid")
        config.add_view(Probe, name="probe", websocket=True)
        app = config.make_wsgi_app()
    server = serve(app, threads=1)
    with connect(server.ws_url("/probe"), open_timeout=TIMEOUT) as ws:
        assert ws.recv(TIMEOUT) == "ok"

    def probe() -> None:
        leaked.append(get_current_request())
        done.set()

    loop = server._loop
    assert loop is not None
    asyncio.run_coroutine_threadsafe(_in_executor(server, probe), loop).result(TIMEOUT)
    assert done.wait(TIMEOUT)
    assert leaked == [None]


async def _in_executor(server: ServerThread, func: Callable[[], None]) -> None:
    await asyncio.get_running_loop().run_in_executor(server.server.executor, func)
