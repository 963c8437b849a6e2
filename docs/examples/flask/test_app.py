import http.cookiejar
import urllib.request

import pytest
from app import app

from stargate.client import InvalidStatus
from stargate.testing import run_app


def session_cookie(server):
    """Load the page as a browser would, and return the Cookie header it was given."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(server.url("/", scheme="http")) as page:
        assert b"new WebSocket" in page.read()
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


def receive_until(ws, expected):
    """Whether ``expected`` is among the next two messages (the first may be older)."""
    return any(ws.receive(timeout=5) == expected for _ in range(2))


def test_a_message_reaches_everyone_in_the_room():
    with run_app(app) as server:
        cookie = session_cookie(server)
        with (
            server.connect("/ws", extra_headers={"Cookie": cookie}) as one,
            server.connect("/ws", extra_headers={"Cookie": cookie}) as two,
        ):
            one.send("hello")  # a reply from the room proves one's handler has joined
            assert one.receive(timeout=5) == "guest-1: hello"
            two.send("hi")  # two may hear one's hello first, if it joined in time
            assert receive_until(two, "guest-1: hi")
            assert one.receive(timeout=5) == "guest-1: hi"
            request = urllib.request.Request(
                server.url("/announce", scheme="http"), data=b"tea", method="POST"
            )
            with urllib.request.urlopen(request) as response:
                assert response.status == 204
            assert one.receive(timeout=5) == "announcement: tea"
            assert two.receive(timeout=5) == "announcement: tea"


def test_an_upgrade_without_the_session_gets_403():
    with run_app(app) as server, pytest.raises(InvalidStatus) as refused:
        server.connect("/ws")
    assert refused.value.status == 403


def test_a_plain_get_of_the_websocket_url_is_refused():
    with run_app(app) as server, pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.url("/ws", scheme="http"))
    assert refused.value.code == 400  # Werkzeug: a WebSocket-only rule, an HTTP request
