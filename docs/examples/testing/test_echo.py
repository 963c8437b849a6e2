import urllib.error
import urllib.request

import pytest

from stargate import TextMessage
from stargate.server import Routes
from stargate.testing import connection_pair, run_app, serve_app, transfer

routes = Routes()  # the app under test: here a route table, any WSGI app works the same


@routes.route("/echo")
async def echo(ws):
    async for message in ws:
        await ws.send(message)


@pytest.mark.asyncio  # pytest-asyncio: the server runs on the test's own event loop
async def test_echo_async():
    async with serve_app(routes) as server, server.connect("/echo") as ws:
        await ws.send("hello")
        assert await ws.receive() == "hello"


def test_echo_sync():  # the server runs in a background thread
    with run_app(routes, max_body_size=1024) as server, server.connect("/echo") as ws:
        ws.send(b"\x00\x01")
        assert ws.receive(timeout=5) == b"\x00\x01"


def test_a_page_of_a_route_table_gets_426():
    with run_app(routes) as server, pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.url("/echo", scheme="http"))
    assert refused.value.code == 426


def test_the_core_in_memory():  # no sockets, no loop: bytes from one Connection to the other
    client, server = connection_pair()
    client.send_text("hi")
    assert transfer(client, server) == [TextMessage("hi")]
