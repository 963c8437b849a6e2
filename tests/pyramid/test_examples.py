"""The examples as apps: WebTest in process, then real WebSocket clients (the browser tests in
``tests/browser`` drive them from Chromium)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest
import webtest
from examples import chat, jobs
from examples.chat import views as chat_views
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from stargate.pyramid.testing import ServerThread
from stargate.server import ENVIRON_KEY

UpgradeEnviron = Callable[..., dict[str, Any]]
Serve = Callable[..., ServerThread]
TIMEOUT = 5.0
CHAT_SETTINGS = {"pyramid.includes": "stargate.pyramid", "chat.secret": "test-secret"}


def recv_json(ws: ClientConnection) -> Any:
    return json.loads(ws.recv(TIMEOUT))


# -- jobs -----------------------------------------------------------------------------------


def test_jobs_page_lists_every_job() -> None:
    page = webtest.TestApp(jobs.main({})).get("/")
    for name, title in jobs.DEFAULT_JOBS:
        assert f'data-job="{name}"' in page.text and title in page.text
    assert page.text.count('data-state="stopped"') == len(jobs.DEFAULT_JOBS)


def test_jobs_job_page() -> None:
    page = webtest.TestApp(jobs.main({})).get("/test/")
    assert 'data-job="test"' in page.text and 'data-job="build"' not in page.text


def test_jobs_toggle_json_and_form() -> None:
    app = webtest.TestApp(jobs.main({}))
    state = app.post("/build/toggle", headers={"Accept": "application/json"}).json
    assert state == {"name": "build", "state": "running", "version": 1}
    redirect = app.post("/build/toggle", status=303)  # a form without JavaScript
    assert redirect.location == "http://localhost/"
    assert 'data-job="build" data-url="/build/" data-state="stopped"' in app.get("/").text


def test_jobs_toggle_needs_post() -> None:
    webtest.TestApp(jobs.main({})).get("/build/toggle", status=404)


def test_jobs_apps_do_not_share_state() -> None:
    first, second = webtest.TestApp(jobs.main({})), webtest.TestApp(jobs.main({}))
    first.post("/build/toggle")
    assert 'data-state="running"' not in second.get("/").text


def test_jobs_websocket_view_is_the_jobs_url(upgrade_environ: UpgradeEnviron) -> None:
    environ = upgrade_environ("/deploy/")
    webtest.TestApp(jobs.main({})).get("/deploy/", extra_environ=environ)
    assert environ[ENVIRON_KEY].acceptance is not None


def test_jobs_toggle_is_pushed_to_every_listener(serve: Serve) -> None:
    server = serve(jobs.main({}))
    url = server.ws_url("/build/")
    with connect(url, open_timeout=TIMEOUT) as a, connect(url, open_timeout=TIMEOUT) as b:
        for ws in (a, b):
            assert recv_json(ws) == {"name": "build", "state": "stopped", "version": 0}
        request = urllib.request.Request(
            server.url("/build/toggle"), method="POST", headers={"Accept": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            assert json.loads(response.read())["version"] == 1
        for ws in (a, b):
            assert recv_json(ws) == {"name": "build", "state": "running", "version": 1}


def toggle(server: ServerThread, job: str) -> Any:
    request = urllib.request.Request(
        server.url(f"/{job}/toggle"), method="POST", headers={"Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return json.loads(response.read())


def test_jobs_apps_in_one_process_do_not_share_listeners(serve: Serve) -> None:
    """Two jobs apps, one process, the same ``/build/``: a toggle in one is never pushed to
    the other's tabs (they would read the other app's versions in between their own)."""
    first, second = serve(jobs.main({})), serve(jobs.main({}))
    with (
        connect(first.ws_url("/build/"), open_timeout=TIMEOUT) as mine,
        connect(second.ws_url("/build/"), open_timeout=TIMEOUT) as theirs,
    ):
        for ws in (mine, theirs):
            assert recv_json(ws) == {"name": "build", "state": "stopped", "version": 0}
        assert toggle(first, "build")["version"] == 1
        assert toggle(second, "build")["version"] == 1
        assert toggle(second, "build")["version"] == 2
        assert toggle(first, "build")["version"] == 2
        # Had one app's pushes reached the other's tab, it would read a version 1 twice.
        for ws in (mine, theirs):
            assert recv_json(ws) == {"name": "build", "state": "running", "version": 1}
            assert recv_json(ws) == {"name": "build", "state": "stopped", "version": 2}


# -- chat -----------------------------------------------------------------------------------


def test_chat_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        chat.main({}, **{"pyramid.includes": "stargate.pyramid"})


def test_chat_login_flow() -> None:
    app = webtest.TestApp(chat.main({}, **CHAT_SETTINGS))
    assert "your name" in app.get("/").text
    # A room page sends the anonymous visitor to the name form, and back after it.
    redirect = app.get("/rooms/lobby", status=303)
    assert redirect.location == "http://localhost/?came_from=%2Frooms%2Flobby"
    form = app.get("/?came_from=/rooms/random").forms[0]
    form["name"] = "  Ada   Lovelace "
    landed = form.submit(status=303)
    assert landed.location == "http://localhost/rooms/random"
    page = app.get("/rooms/random")
    assert "#random" in page.text and "Ada Lovelace" in page.text
    assert "#lobby" in app.get("/").text
    app.post("/logout", status=303)
    app.get("/rooms/random", status=303)


def test_chat_login_refuses_an_open_redirect() -> None:
    app = webtest.TestApp(chat.main({}, **CHAT_SETTINGS))
    landed = app.post("/login", {"name": "eve", "came_from": "https://evil.example/"}, status=303)
    assert landed.location == "http://localhost/rooms/lobby"
    assert app.post("/login", {"name": "   "}, status=303).location == "http://localhost/"


def test_chat_room_names_are_checked() -> None:
    app = webtest.TestApp(chat.main({}, **CHAT_SETTINGS))
    app.post("/login", {"name": "ann"})
    app.get("/rooms/Not_A_Room", status=404)
    app.get("/rooms/new-room-1", status=200)


def test_chat_anonymous_upgrade_is_forbidden(upgrade_environ: UpgradeEnviron) -> None:
    app = webtest.TestApp(chat.main({}, **CHAT_SETTINGS))
    environ = upgrade_environ("/rooms/lobby")
    app.get("/rooms/lobby", extra_environ=environ, status=403)
    assert environ[ENVIRON_KEY].acceptance is None


def login_cookie(server: ServerThread, name: str) -> str:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(server.url("/login"), data=f"name={name}".encode(), timeout=TIMEOUT):
        pass
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


def test_chat_over_websockets(serve: Serve) -> None:
    server = serve(chat.main({}, **CHAT_SETTINGS))
    url = server.ws_url("/rooms/lobby")
    with pytest.raises(InvalidStatus) as info:
        connect(url, open_timeout=TIMEOUT)
    assert info.value.response.status_code == 403
    ann = {"Cookie": login_cookie(server, "ann")}
    bob = {"Cookie": login_cookie(server, "bob")}
    with connect(url, additional_headers=ann, open_timeout=TIMEOUT) as a:
        assert recv_json(a) == {"type": "join", "name": "ann", "people": ["ann"]}
        with connect(url, additional_headers=bob, open_timeout=TIMEOUT) as b:
            joined = {"type": "join", "name": "bob", "people": ["ann", "bob"]}
            assert recv_json(a) == joined and recv_json(b) == joined
            b.send("hi ann")
            said = {"type": "message", "name": "bob", "text": "hi ann"}
            assert recv_json(a) == said and recv_json(b) == said
            b.send("   ")  # blank: not relayed
            b.send(b"binary")  # not text: not relayed
            a.send("hello")
            said = {"type": "message", "name": "ann", "text": "hello"}
            assert recv_json(b) == said and recv_json(a) == said
        assert recv_json(a) == {"type": "leave", "name": "bob", "people": ["ann"]}


def test_chat_refuses_a_message_over_the_limit_whole(serve: Serve) -> None:
    """Refused to the sender only, with the reason; never cut and relayed."""
    server = serve(chat.main({}, **CHAT_SETTINGS))
    url = server.ws_url("/rooms/lobby")
    ann = {"Cookie": login_cookie(server, "ann")}
    bob = {"Cookie": login_cookie(server, "bob")}
    with connect(url, additional_headers=ann, open_timeout=TIMEOUT) as a:
        recv_json(a)  # ann joined
        with connect(url, additional_headers=bob, open_timeout=TIMEOUT) as b:
            recv_json(a), recv_json(b)  # bob joined
            limit = chat_views.MAX_CHARS
            a.send("\U0001f680" * limit)  # characters, not bytes, are counted
            said = {"type": "message", "name": "ann", "text": "\U0001f680" * limit}
            assert recv_json(a) == said and recv_json(b) == said
            a.send("y" * (limit + 1))
            reason = f"{limit + 1} characters: over the limit of {limit}"
            assert recv_json(a) == {"type": "refused", "reason": reason}
            a.send("short")
            said = {"type": "message", "name": "ann", "text": "short"}
            assert recv_json(b) == said  # bob heard nothing in between
            assert recv_json(a) == said


# -- python -m examples.NAME -----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
#: Imported at start-up (``sitecustomize``) by a Python whose ``sys.path`` begins with its
#: directory: Pyramid is then missing as it is from an environment without it.
WITHOUT_PYRAMID = """
import importlib.abc
import sys


class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "pyramid":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Missing())
"""


def run_python(*args: str, without_pyramid: Path | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    paths = [str(ROOT)] if without_pyramid is None else [str(without_pyramid), str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("example", ["jobs", "chat"])
def test_python_m_example_without_pyramid_is_one_line_with_the_fix(
    example: str, tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(WITHOUT_PYRAMID)
    probe = run_python("-c", "import pyramid", without_pyramid=tmp_path)
    assert probe.returncode != 0 and "No module named 'pyramid'" in probe.stderr  # it is gone

    result = run_python("-m", f"examples.{example}", "--port", "0", without_pyramid=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"python -m examples.{example}: the module 'pyramid' is not installed: "
        "python3 -m pip install 'stargate[pyramid]' "
        "(in a checkout of stargate: python3 -m pip install -e '.[pyramid]')\n"
    )


@pytest.mark.parametrize("example", ["jobs", "chat"])
def test_python_m_example_help_with_pyramid(example: str) -> None:
    """The same command with Pyramid gets as far as its arguments (``--help`` exits 0)."""
    result = run_python("-m", f"examples.{example}", "--help", without_pyramid=None)
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout
