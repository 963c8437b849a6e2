"""How an application accepts an upgrade (stargate.server.upgrade), seen from a WSGI app:
``is_websocket`` tells an upgrade from a page, ``offered_subprotocols`` lets the app choose
before it accepts, and what it accepts with reaches the handshake."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from stargate.server import ENVIRON_KEY, Upgrade, WebSocket, is_websocket
from stargate.server.upgrade import is_async_handler
from stargate.server.wsgi import StartResponse

from .support import TIMEOUT, StartServer, get, validated


async def hello(ws: WebSocket) -> None:
    await ws.send(json.dumps({"subprotocol": ws.subprotocol}))


def choosing_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """Pages say they are pages; an upgrade is accepted only with a subprotocol the client
    offered that the app knows, the app's own pick among them (the last offered)."""
    if not is_websocket(environ):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"a page"]
    upgrade: Upgrade = environ[ENVIRON_KEY]
    known = [name for name in upgrade.offered_subprotocols if name.startswith("chat.")]
    if not known:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"offer a chat subprotocol"]
    upgrade.accept(hello, subprotocols=[known[-1]], headers=[("X-Chosen", known[-1])])
    return []


@pytest.mark.asyncio
async def test_the_app_tells_upgrades_from_pages_and_picks_a_subprotocol(
    start_server: StartServer,
) -> None:
    server = await start_server(validated(choosing_app))
    assert (await get(server.port, "/")).body == b"a page"
    offered = [Subprotocol(name) for name in ("other", "chat.v1", "chat.v2")]
    async with connect(
        f"ws://127.0.0.1:{server.port}/", subprotocols=offered, open_timeout=TIMEOUT
    ) as client:
        assert client.subprotocol == "chat.v2"
        assert client.response is not None
        assert client.response.headers["X-Chosen"] == "chat.v2"
        said = json.loads(await asyncio.wait_for(client.recv(), TIMEOUT))
        assert said == {"subprotocol": "chat.v2"}


@pytest.mark.asyncio
async def test_an_upgrade_without_a_subprotocol_the_app_knows_gets_its_answer(
    start_server: StartServer,
) -> None:
    """What the app answers an upgrade it does not accept (here 400 with its reason) is
    what the client gets."""
    server = await start_server(validated(choosing_app))
    with pytest.raises(InvalidStatus) as info:
        async with connect(
            f"ws://127.0.0.1:{server.port}/",
            subprotocols=[Subprotocol("other")],
            open_timeout=TIMEOUT,
        ):
            pass
    response = info.value.response
    assert response.status_code == 400
    assert response.body == b"offer a chat subprotocol"


def test_offered_subprotocols_are_the_tokens_and_only_tokens_are_accepted() -> None:
    """RFC 6455 section 4.1: each element of Sec-WebSocket-Protocol is a token.  An element
    that is not one is not offered to the app (which may echo what it is offered), and an
    app or a route table that names one is told at once: no 101 may carry it."""
    from stargate.handshake import Request
    from stargate.headers import Headers
    from stargate.server import Routes

    offer = 'chat, a b, "x", ok\x85\x9b, v1.json'
    request = Request("GET", "/", Headers([("Host", "h"), ("Sec-WebSocket-Protocol", offer)]))
    upgrade = Upgrade(request)
    assert upgrade.offered_subprotocols == ["chat", "v1.json"]
    with pytest.raises(ValueError, match="not a token"):
        upgrade.accept(hello, subprotocols=["a b"])
    assert upgrade.acceptance is None
    with pytest.raises(ValueError, match="not a token"):
        Routes(default=hello, subprotocols=["chat", ""])
    with pytest.raises(TypeError, match="not one string"):
        upgrade.accept(hello, subprotocols="chat")
    upgrade.accept(hello, subprotocols=["chat"])
    assert upgrade.acceptance is not None and upgrade.acceptance.subprotocols == ("chat",)


def test_handlers_async_or_not_whatever_their_form() -> None:
    """Coroutine functions run on the loop, anything else in a thread: callable objects
    with an ``async def __call__`` count as async, and objects that cannot be weakly
    referenced (a bound method's ``__call__`` of a slotted class) are still told apart."""

    class AsyncCallable:
        async def __call__(self, ws: WebSocket) -> None:
            pass

    class Slotted:
        __slots__ = ()

        def __call__(self, ws: object) -> None:
            pass

    async def coroutine(ws: WebSocket) -> None:
        pass

    def plain(ws: object) -> None:
        pass

    for _ in range(2):  # the second time from what was remembered
        assert is_async_handler(coroutine) and is_async_handler(AsyncCallable())
        assert not is_async_handler(plain) and not is_async_handler(Slotted())


def test_a_bound_method_is_remembered_by_its_function() -> None:
    """A Pyramid view's ``self.handler`` is a new bound method on every access: the answer is
    kept for its function, so a second view instance is answered from what was remembered."""
    from stargate.server import upgrade

    class View:
        async def handler(self, ws: WebSocket) -> None:
            pass

        def blocking(self, ws: object) -> None:
            pass

    first, second = View(), View()
    assert is_async_handler(first.handler) and not is_async_handler(first.blocking)
    assert upgrade._async_handlers[View.handler] is True
    assert upgrade._async_handlers[View.blocking] is False
    assert is_async_handler(second.handler) and not is_async_handler(second.blocking)
