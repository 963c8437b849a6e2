import urllib.error
import urllib.request

import pytest
from app import main

from stargate.testing import run_app


def receive_until(ws, expected):
    """Whether ``expected`` is among the next two messages (the first may be older)."""
    return any(ws.receive(timeout=5) == expected for _ in range(2))


def test_every_listener_hears_every_message():
    with run_app(main({})) as server, server.connect("/") as one, server.connect("/") as two:
        one.send("first")  # one hears it only once its handler listens
        assert one.receive(timeout=5) == "first"
        two.send("second")  # two may hear "first" before, if it listened in time
        assert receive_until(two, "second")
        assert one.receive(timeout=5) == "second"


def test_a_plain_request_does_not_match_the_websocket_view():
    with run_app(main({})) as server, pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.url("/", scheme="http"))
    assert refused.value.code == 404  # websocket=True: only upgrade requests match
