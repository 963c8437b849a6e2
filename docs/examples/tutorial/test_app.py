import urllib.request

from app import app

from stargate.testing import run_app


def test_the_page_is_served():
    with run_app(app) as server, urllib.request.urlopen(server.url("/", scheme="http")) as page:
        assert b"new WebSocket" in page.read()


def test_an_announcement_reaches_every_listener():
    with run_app(app) as server, server.connect("/ws") as one, server.connect("/ws") as two:
        assert one.receive(timeout=5).startswith("welcome")
        assert two.receive(timeout=5).startswith("welcome")
        request = urllib.request.Request(
            server.url("/announce", scheme="http"), data=b"Deploy finished", method="POST"
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 204
        assert one.receive(timeout=5) == "Deploy finished"
        assert two.receive(timeout=5) == "Deploy finished"
