import os
import urllib.request

import pytest

from stargate.testing import run_app


@pytest.fixture(scope="module")
def application(tmp_path_factory):
    os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    os.environ["BOARD_DATABASE"] = str(tmp_path_factory.mktemp("db") / "board.sqlite3")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from mysite.wsgi import application

    return application


def receive_until(ws, expected):
    """Whether ``expected`` is among the next two messages (the first may be older)."""
    return any(ws.receive(timeout=5) == expected for _ in range(2))


def test_a_note_is_stored_and_pushed_to_everyone(application):
    from board.models import Note

    with run_app(application) as server, server.connect("/ws") as one, server.connect("/ws") as two:
        one.send("hello")  # the reply proves one's handler has joined the group
        assert one.receive(timeout=5) == "1: hello"
        two.send("hi")
        assert receive_until(two, "2: hi")
        assert one.receive(timeout=5) == "2: hi"
    assert list(Note.objects.order_by("id").values_list("text", flat=True)) == ["hello", "hi"]


def test_the_page_shows_the_notes_and_its_script_is_served(application):
    from board.models import Note

    Note.objects.create(text="from the ORM")
    with run_app(application) as server:
        with urllib.request.urlopen(server.url("/", scheme="http")) as page:
            html = page.read().decode()
        assert "from the ORM" in html
        assert 'src="/static/board/board.js"' in html
        with urllib.request.urlopen(server.url("/static/board/board.js", scheme="http")) as js:
            assert b"new WebSocket" in js.read()


def test_a_plain_request_to_the_websocket_url_gets_426(application):
    with run_app(application) as server, pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.url("/ws", scheme="http"))
    assert refused.value.code == 426
