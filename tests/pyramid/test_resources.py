"""``WebSocketAwareResource``: listeners kept by a resource, pushes from any thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyramid.config import Configurator
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from stargate.groups import Group
from stargate.pyramid import WebSocketAwareResource, WebSocketView
from stargate.pyramid.testing import ServerThread
from stargate.server import SyncWebSocket, WebSocket

Serve = Callable[..., ServerThread]
TIMEOUT = 5.0


def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


class Topic(WebSocketAwareResource):
    def __init__(self, name: str) -> None:
        self.__name__ = name


class Root:
    __name__ = ""
    __parent__ = None

    def __init__(self) -> None:
        self.topics = {name: Topic(name) for name in ("news", "sport")}

    def __getitem__(self, name: str) -> Topic:
        return self.topics[name]


class SyncListen(WebSocketView):
    """Adds the connection and returns: the connection stays open, listening."""

    def handler(self, websocket: SyncWebSocket) -> None:
        self.context.add_listener(websocket)
        websocket.send("listening")


class AsyncListen(WebSocketView):
    """Listens while the client talks; ``stop`` leaves the listeners, then the handler ends."""

    async def handler(self, websocket: WebSocket) -> None:
        self.context.add_listener(websocket)
        await websocket.send("listening")
        async for message in websocket:
            if message == "stop":
                self.context.remove_listener(websocket)
                await websocket.send("stopped")


def make_app(root: Root) -> Any:
    with Configurator(root_factory=lambda request: root) as config:
        config.include("stargate.pyramid")
        config.add_view(SyncListen, context=Topic, websocket=True)
        config.add_view(AsyncListen, context=Topic, name="talk", websocket=True)
        return config.make_wsgi_app()


@contextlib.contextmanager
def listen(server: ServerThread, path: str) -> Iterator[ClientConnection]:
    with connect(server.ws_url(path), open_timeout=TIMEOUT) as ws:
        assert ws.recv(TIMEOUT) == "listening"
        yield ws


# -- in process ---------------------------------------------------------------------------------


def test_group_is_created_on_first_use_and_named_after_the_resource() -> None:
    topic = Topic("news")
    assert "_stargate_listeners" not in vars(topic)
    group = topic.listener_group
    assert isinstance(group, Group) and group.name == "news"
    assert topic.listener_group is group
    assert topic.listeners == frozenset()


def test_a_resource_without_a_name_and_without_init() -> None:
    class Anonymous(WebSocketAwareResource):
        pass

    assert Anonymous().listener_group.name == "Anonymous"


def test_one_group_however_many_threads_ask() -> None:
    topic = Topic("race")
    groups: list[Group] = []
    barrier = threading.Barrier(8)

    def ask() -> None:
        barrier.wait()
        groups.append(topic.listener_group)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(group) for group in groups}) == 1


def test_resources_do_not_share_listeners() -> None:
    assert Topic("a").listener_group is not Topic("a").listener_group


def test_send_without_listeners_does_nothing() -> None:
    Topic("empty").send("nobody hears this")


# -- over real sockets --------------------------------------------------------------------------


def test_send_reaches_every_listener_from_another_thread(serve: Serve) -> None:
    root = Root()
    server = serve(make_app(root))
    news = root["news"]
    with listen(server, "/news") as a, listen(server, "/news") as b, listen(server, "/sport") as c:
        eventually(lambda: len(news.listeners) == 2)
        assert all(isinstance(ws, WebSocket) for ws in news.listeners)
        news.send("headline")  # from the test's thread
        news.send(b"\x01\x02")
        for ws in (a, b):
            assert ws.recv(TIMEOUT) == "headline"
            assert ws.recv(TIMEOUT) == b"\x01\x02"
        root["sport"].send("goal")
        assert c.recv(TIMEOUT) == "goal"  # and nothing of the news before it


def test_listener_stays_open_after_a_sync_handler_returns(serve: Serve) -> None:
    root = Root()
    server = serve(make_app(root), websocket=_no_keepalive())
    with listen(server, "/news") as ws:
        time.sleep(0.2)  # the handler has long returned
        root["news"].send("still here")
        assert ws.recv(TIMEOUT) == "still here"


def test_closed_listener_leaves_by_itself(serve: Serve) -> None:
    root = Root()
    server = serve(make_app(root))
    news = root["news"]
    with listen(server, "/news") as keep:
        with listen(server, "/news"):
            eventually(lambda: len(news.listeners) == 2)
        eventually(lambda: len(news.listeners) == 1)
        news.send("to the one left")
        assert keep.recv(TIMEOUT) == "to the one left"
    eventually(lambda: not news.listeners)


def test_remove_listener(serve: Serve) -> None:
    root = Root()
    server = serve(make_app(root))
    news = root["news"]
    with listen(server, "/news/talk") as ws:
        eventually(lambda: len(news.listeners) == 1)
        ws.send("stop")
        assert ws.recv(TIMEOUT) == "stopped"
        eventually(lambda: not news.listeners)
        news.send("not for you")
        ws.send("ping")  # still open: its handler still runs
        ws.close()
        with pytest.raises(ConnectionClosed):
            ws.recv(TIMEOUT)


def test_removing_the_last_hold_closes_a_connection_whose_handler_returned(
    serve: Serve,
) -> None:
    root = Root()
    server = serve(make_app(root))
    news = root["news"]
    with listen(server, "/news") as ws:
        eventually(lambda: len(news.listeners) == 1)
        (member,) = news.listeners
        news.remove_listener(member)
        with pytest.raises(ConnectionClosed):
            ws.recv(TIMEOUT)
        assert ws.close_code == 1000


def test_many_threads_send_at_once(serve: Serve) -> None:
    root = Root()
    server = serve(make_app(root))
    news = root["news"]
    with listen(server, "/news") as ws:
        eventually(lambda: len(news.listeners) == 1)

        def burst(n: int) -> None:
            for i in range(25):
                news.send(f"{n}:{i}")

        threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        received = [ws.recv(TIMEOUT) for _ in range(100)]
        assert sorted(received) == sorted(f"{n}:{i}" for n in range(4) for i in range(25))
        for n in range(4):  # each thread's messages in its order
            mine = [m for m in received if isinstance(m, str) and m.startswith(f"{n}:")]
            assert mine == [f"{n}:{i}" for i in range(25)]


def _no_keepalive() -> Any:
    from stargate.server import WebSocketOptions

    return WebSocketOptions(ping_interval=None)
