"""``WebSocketAwareResource``: listeners kept by a resource, pushes from any thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyramid.config import Configurator
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from stargate.events import BinaryMessage, TextMessage
from stargate.groups import Group
from stargate.handshake import Request
from stargate.headers import Headers
from stargate.pyramid import WebSocketAwareResource, WebSocketView
from stargate.pyramid.resources import listener_group_name
from stargate.pyramid.testing import ServerThread
from stargate.server import SyncWebSocket, WebSocket, WebSocketOptions
from stargate.server.websocket import WebSocketProtocol
from stargate.testing import connection_pair

Serve = Callable[..., ServerThread]
TIMEOUT = 5.0


def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


class Topic(WebSocketAwareResource):
    def __init__(self, name: str, parent: Any = None) -> None:
        self.__name__ = name
        self.__parent__ = parent


class Root:
    __name__ = ""
    __parent__ = None

    def __init__(self) -> None:
        self.topics = {name: Topic(name, self) for name in ("news", "sport")}

    def __getitem__(self, name: str) -> Topic:
        return self.topics[name]


class Node(WebSocketAwareResource):
    """A located resource with children made on first lookup."""

    def __init__(self, name: str | None, parent: Any) -> None:
        self.__name__ = name
        self.__parent__ = parent
        self.children: dict[str, Node] = {}

    def __getitem__(self, name: str) -> Node:
        child = self.children.get(name)
        if child is None:
            child = self.children[name] = Node(name, self)
        return child


class Tree(Node):
    """A root with ``/jobs/1`` and ``/rooms/1``: two resources named ``1`` (also a root
    factory: ``Tree(request)`` builds the tree anew for every request)."""

    #: None: the tree is named after this class.
    listener_namespace: str | None = None

    def __init__(self, request: Any = None) -> None:
        super().__init__("", None)
        self["jobs"]["1"]
        self["rooms"]["1"]


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


def make_app(root: Any, context: type = Topic) -> Any:
    """``root`` is the root, or a factory of the root per request when it is a class."""
    factory = root if isinstance(root, type) else (lambda request: root)
    with Configurator(root_factory=factory) as config:
        config.include("stargate.pyramid")
        config.add_view(SyncListen, context=context, websocket=True)
        config.add_view(AsyncListen, context=context, name="talk", websocket=True)
        return config.make_wsgi_app()


@contextlib.contextmanager
def listen(server: ServerThread, path: str) -> Iterator[ClientConnection]:
    with connect(server.ws_url(path), open_timeout=TIMEOUT) as ws:
        assert ws.recv(TIMEOUT) == "listening"
        yield ws


# -- whose listeners: the group name --------------------------------------------------------


def test_group_is_created_on_first_use_and_named_after_the_tree_and_path() -> None:
    topic = Root()["news"]
    assert "_stargate_listeners" not in vars(topic)
    group = topic.listener_group
    assert isinstance(group, Group)
    assert group.name == f"pyramid:{__name__}.Root:/news"
    assert topic.listener_group is group
    assert topic.listeners == frozenset()


def test_same_name_under_different_parents_is_another_group() -> None:
    """``/jobs/1`` and ``/rooms/1``: both ``__name__`` 1, never one set of listeners."""
    root = Tree()
    job, room = root["jobs"]["1"], root["rooms"]["1"]
    assert job.__name__ == room.__name__ == "1"
    assert listener_group_name(job) == f"pyramid:{__name__}.Tree:/jobs/1"
    assert listener_group_name(room) == f"pyramid:{__name__}.Tree:/rooms/1"


def test_resources_rebuilt_per_request_share_their_listeners() -> None:
    """A root factory that builds the tree for every request: the same place, the same
    listeners (identity alone would give every request an empty set)."""
    assert Tree()["jobs"]["1"].listener_group.name == Tree()["jobs"]["1"].listener_group.name


def test_trees_of_different_root_classes_never_share() -> None:
    class OtherTree(Tree):
        pass

    assert listener_group_name(Tree()["jobs"]["1"]) != listener_group_name(OtherTree()["jobs"]["1"])


def test_trees_of_one_root_class_apart_by_namespace() -> None:
    tenant_a, tenant_b = Tree(), Tree()
    tenant_a.listener_namespace = "tenant-a"
    tenant_b.listener_namespace = "tenant-b"
    assert listener_group_name(tenant_a["jobs"]["1"]) == "pyramid:tenant-a:/jobs/1"
    assert listener_group_name(tenant_b["jobs"]["1"]) == "pyramid:tenant-b:/jobs/1"


def test_a_colon_in_a_namespace_cannot_forge_another_tree() -> None:
    """Namespace ``a:x`` with ``/b`` and namespace ``a`` with a root named ``x:`` above
    ``b`` would both read ``a:x:/b`` unquoted."""
    first, second = Tree(), Node("x:", None)
    first.listener_namespace, second.listener_namespace = "a:x", "a"  # type: ignore[attr-defined]
    assert listener_group_name(Node("b", first)) != listener_group_name(Node("b", second))


def test_namespace_must_be_a_non_empty_string() -> None:
    root = Tree()
    root.listener_namespace = ""
    with pytest.raises(TypeError, match="listener_namespace"):
        listener_group_name(root["jobs"]["1"])


def test_a_slash_in_a_name_cannot_forge_another_path() -> None:
    root = Tree()
    forged = Node("jobs/1", root)
    assert listener_group_name(forged) != listener_group_name(root["jobs"]["1"])
    assert listener_group_name(forged) == f"pyramid:{__name__}.Tree:/jobs%2F1"


def test_a_standalone_named_resource_is_a_root_of_its_class() -> None:
    """URL dispatch: a route factory's resource with a name and no parent (the chat's rooms)."""
    assert listener_group_name(Topic("lobby")) == f"pyramid:{__name__}.Topic:lobby"
    assert listener_group_name(Topic("lobby")) != listener_group_name(Node("lobby", None))


def test_a_very_deep_path_is_hashed() -> None:
    node: Any = Tree()
    for i in range(100):
        node = Node(f"level-{i}", node)
    name = listener_group_name(node)
    assert name is not None and name.startswith("pyramid:sha256:") and len(name) < 100
    assert name != listener_group_name(Node("other", node.__parent__))


def test_an_unlocated_resource_has_listeners_of_its_own() -> None:
    class Anonymous(WebSocketAwareResource):
        pass

    first, second = Anonymous(), Anonymous()
    assert listener_group_name(first) is None
    assert first.listener_group.local and second.listener_group.local
    assert first.listener_group is not second.listener_group
    # A root may leave out its name (it is ""); any other resource without one leaves
    # the resources below it unlocated.
    orphan_parent = Anonymous()
    assert listener_group_name(Node("1", orphan_parent)) == (
        f"pyramid:{__name__}.{Anonymous.__qualname__}:/1"
    )
    assert listener_group_name(Node("1", Node(None, Tree()))) is None


def test_a_root_named_by_something_else_than_a_string_locates_nothing() -> None:
    """A root whose ``__name__`` is not a string (an id number) cannot name a group: its
    resources are unlocated, listeners of their own, never a group another tree shares."""
    root = Node(None, None)
    root.__name__ = 7  # type: ignore[assignment]
    child = Node("1", root)
    assert listener_group_name(root) is None and listener_group_name(child) is None
    assert child.listener_group.local


def test_a_parent_loop_is_an_error() -> None:
    a = Node("a", None)
    b = Node("b", a)
    a.__parent__ = b
    with pytest.raises(ValueError, match="loops"):
        listener_group_name(a)


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


def test_send_without_listeners_does_nothing() -> None:
    Topic("empty").send("nobody hears this")


# -- in process: real WebSocket objects on in-memory transports ---------------------------------


class RecordingTransport(asyncio.Transport):
    """Keeps what the server side writes (the bytes a client would read)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Peer:
    """A server :class:`WebSocket` on a recording transport, and the client that reads it."""

    def __init__(self, path: str) -> None:
        self.client, server = connection_pair()
        request = Request("GET", path, Headers([("Host", "localhost")]))
        self.ws = WebSocket(
            server,
            request,
            loop=asyncio.get_running_loop(),
            options=WebSocketOptions(ping_interval=None),
        )
        self.transport = RecordingTransport()
        self.protocol = WebSocketProtocol(self.ws)
        self.ws.attach(self.transport)

    def received(self) -> list[str | bytes]:
        """The messages that reached the wire so far (as the client decodes them)."""
        data, self.transport.written = bytes(self.transport.written), bytearray()
        events = self.client.receive_data(data)
        return [event.data for event in events if isinstance(event, TextMessage | BinaryMessage)]

    def lose(self) -> None:
        self.protocol.connection_lost(None)


async def wait_for(predicate: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_a_push_to_one_resource_never_reaches_a_namesake_in_process() -> None:
    root = Tree()
    job, room = root["jobs"]["1"], root["rooms"]["1"]
    job_peer, room_peer = Peer("/jobs/1"), Peer("/rooms/1")
    try:
        job.add_listener(job_peer.ws)
        room.add_listener(room_peer.ws)
        await wait_for(lambda: job_peer.ws in job.listeners and room_peer.ws in room.listeners)
        assert job.listeners == {job_peer.ws}, "the room's connection listens to the job"
        assert room.listeners == {room_peer.ws}, "the job's connection listens to the room"

        job.send("job secret")
        room.send("room news")
        job_received: list[str | bytes] = []
        room_received: list[str | bytes] = []

        def both_arrived() -> bool:
            job_received.extend(job_peer.received())
            room_received.extend(room_peer.received())
            return "job secret" in job_received and "room news" in room_received

        await wait_for(both_arrived)
        assert job_received == ["job secret"]
        assert room_received == ["room news"]  # and never the job's message
    finally:
        job_peer.lose()
        room_peer.lose()
    await wait_for(lambda: not job.listeners and not room.listeners)


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


def assert_hears_only(ws: ClientConnection, resource: WebSocketAwareResource, marker: str) -> None:
    """``ws`` heard nothing before: a message sent to ``resource`` now is the next it reads."""
    resource.send(marker)
    assert ws.recv(TIMEOUT) == marker


def test_a_push_never_reaches_a_namesake_under_another_parent(serve: Serve) -> None:
    """``/jobs/1`` and ``/rooms/1`` (both ``__name__`` 1) over real sockets, both ways."""
    root = Tree()
    job, room = root["jobs"]["1"], root["rooms"]["1"]
    server = serve(make_app(root, Node))
    with listen(server, "/jobs/1") as job_ws, listen(server, "/rooms/1") as room_ws:
        eventually(lambda: bool(job.listeners) and bool(room.listeners))
        job.send("job secret")
        assert job_ws.recv(TIMEOUT) == "job secret"
        assert_hears_only(room_ws, room, "room news")
        room.send(b"room secret")
        assert room_ws.recv(TIMEOUT) == b"room secret"
        assert_hears_only(job_ws, job, "job news")


def test_resources_rebuilt_per_request_reach_each_others_listeners(serve: Serve) -> None:
    """A root factory that builds the tree for every request: each connection's view saw
    another ``/jobs/1`` object, and a third one, built here, reaches both."""
    server = serve(make_app(Tree, Node))
    with (
        listen(server, "/jobs/1") as first,
        listen(server, "/jobs/1") as second,
        listen(server, "/rooms/1") as room_ws,
    ):
        job = Tree()["jobs"]["1"]
        eventually(lambda: len(job.listeners) == 2)
        job.send("to every tab of job 1")
        for ws in (first, second):
            assert ws.recv(TIMEOUT) == "to every tab of job 1"
        assert_hears_only(room_ws, Tree()["rooms"]["1"], "room news")


class OtherTree(Tree):
    """Another app's root class: its ``/jobs/1`` is another resource."""


def test_two_trees_in_one_process_never_share(serve: Serve) -> None:
    """Two apps in one process, same resource paths: roots of different classes, and two
    roots of one class told apart by ``listener_namespace``."""
    team_a, team_b = Tree(), Tree()
    team_a.listener_namespace, team_b.listener_namespace = "team-a", "team-b"
    roots: list[Tree] = [Tree(), OtherTree(), team_a, team_b]
    servers = [serve(make_app(root, Node)) for root in roots]
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(listen(server, "/jobs/1")) for server in servers]
        jobs = [root["jobs"]["1"] for root in roots]
        eventually(lambda: all(len(job.listeners) == 1 for job in jobs))
        for index, (job, ws) in enumerate(zip(jobs, clients, strict=True)):
            job.send(f"only for tree {index}")
            assert ws.recv(TIMEOUT) == f"only for tree {index}"
        for index, (job, ws) in enumerate(zip(jobs, clients, strict=True)):
            assert_hears_only(ws, job, f"nothing of the others before this, tree {index}")


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
    return WebSocketOptions(ping_interval=None)
