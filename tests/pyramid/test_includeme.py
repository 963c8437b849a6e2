"""``config.include("stargate.pyramid")``: the websocket predicate, request properties, settings.

In process, with ``pyramid.testing`` and WebTest: a fake upgrade in the environ stands for
what the server puts there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.response import Response
from pyramid.testing import DummyRequest, setUp, tearDown

from stargate.pyramid import (
    WebSocketPredicate,
    WebSocketView,
    is_websocket,
    websocket_upgrade,
)
from stargate.pyramid.settings import REGISTRY_KEY, WebSocketSettings
from stargate.server import ENVIRON_KEY, Upgrade

UpgradeEnviron = Callable[..., dict[str, Any]]


class Socket(WebSocketView):
    async def handler(self, websocket: Any) -> None:
        await websocket.send("hi")


def page(request: Any) -> Any:
    return Response("the page", content_type="text/plain")


def make_app(settings: dict[str, Any] | None = None, *, include: bool = True) -> webtest.TestApp:
    with Configurator(settings=settings or {}) as config:
        if include:
            config.include("stargate.pyramid")
        config.add_route("room", "/room")
        config.add_view(page, route_name="room")
        config.add_view(Socket, route_name="room", websocket=True)
        config.add_route("plain", "/plain")
        config.add_view(page, route_name="plain", websocket=False)
        return webtest.TestApp(config.make_wsgi_app())


@pytest.fixture
def config() -> Iterator[Any]:
    config = setUp()
    yield config
    tearDown()


# -- is_websocket and the predicate -----------------------------------------------------------


def test_is_websocket_with_the_servers_upgrade(upgrade_environ: UpgradeEnviron) -> None:
    request = DummyRequest(environ=upgrade_environ("/x"))
    assert is_websocket(None, request) is True
    assert isinstance(websocket_upgrade(request), Upgrade)


def test_is_websocket_false_for_a_plain_request() -> None:
    request = DummyRequest()
    assert is_websocket(None, request) is False
    assert websocket_upgrade(request) is None


@pytest.mark.parametrize("value", ["websocket", "WebSocket", "h2c, websocket"])
def test_is_websocket_under_a_server_that_cannot_upgrade(value: str) -> None:
    """The Upgrade header alone (waitress, gunicorn): still a WebSocket request, so the
    WebSocket view is reached and can say it cannot serve it."""
    request = DummyRequest(environ={"HTTP_UPGRADE": value})
    assert is_websocket(None, request) is True
    assert websocket_upgrade(request) is None


def test_is_websocket_false_for_other_upgrades() -> None:
    request = DummyRequest(environ={"HTTP_UPGRADE": "h2c"})
    assert is_websocket(None, request) is False


def test_predicate(upgrade_environ: UpgradeEnviron) -> None:
    yes, no = WebSocketPredicate(True, None), WebSocketPredicate(False, None)
    websocket = DummyRequest(environ=upgrade_environ())
    plain = DummyRequest()
    assert yes(None, websocket) and not yes(None, plain)
    assert no(None, plain) and not no(None, websocket)
    assert yes.text() == "websocket = True" and yes.phash() == yes.text()
    assert no.text() == "websocket = False"
    assert WebSocketPredicate("false", None).value is False  # as an .ini would write it


def test_predicate_rejects_a_non_boolean() -> None:
    with pytest.raises(ValueError, match="websocket"):
        WebSocketPredicate("sometimes", None)


# -- one route, the page and its WebSocket ------------------------------------------------------


def test_plain_request_gets_the_page() -> None:
    app = make_app()
    assert app.get("/room").text == "the page"


def test_upgrade_request_reaches_the_websocket_view(upgrade_environ: UpgradeEnviron) -> None:
    app = make_app()
    environ = upgrade_environ("/room")
    app.get("/room", extra_environ=environ)
    acceptance = environ[ENVIRON_KEY].acceptance
    assert acceptance is not None
    assert acceptance.handler.__func__ is Socket.handler


def test_websocket_false_never_matches_an_upgrade(upgrade_environ: UpgradeEnviron) -> None:
    app = make_app()
    environ = upgrade_environ("/plain")
    app.get("/plain", extra_environ=environ, status=404)
    assert environ[ENVIRON_KEY].acceptance is None
    assert app.get("/plain").text == "the page"


def test_order_of_registration_does_not_matter(upgrade_environ: UpgradeEnviron) -> None:
    """The view with the websocket predicate is tried first even when added last or first,
    and wins over a view with another predicate (request_method)."""
    for socket_first in (True, False):
        with Configurator() as config:
            config.include("stargate.pyramid")
            config.add_route("r", "/r")
            if socket_first:
                config.add_view(Socket, route_name="r", websocket=True)
            config.add_view(page, route_name="r", request_method="GET")
            if not socket_first:
                config.add_view(Socket, route_name="r", websocket=True)
            app = webtest.TestApp(config.make_wsgi_app())
        environ = upgrade_environ("/r")
        app.get("/r", extra_environ=environ)
        assert environ[ENVIRON_KEY].acceptance is not None
        assert app.get("/r").text == "the page"


def test_request_properties(upgrade_environ: UpgradeEnviron) -> None:
    seen: list[tuple[bool, object]] = []

    def view(request: Any) -> Any:
        seen.append((request.is_websocket, request.websocket_upgrade))
        return Response("ok")

    with Configurator() as config:
        config.include("stargate.pyramid")
        config.add_route("r", "/r")
        config.add_view(view, route_name="r")
        app = webtest.TestApp(config.make_wsgi_app())
    environ = upgrade_environ("/r")
    app.get("/r", extra_environ=environ)
    app.get("/r")
    assert seen == [(True, environ[ENVIRON_KEY]), (False, None)]


def test_include_from_the_settings(upgrade_environ: UpgradeEnviron) -> None:
    """``pyramid.includes = stargate.pyramid`` in an .ini does what config.include does."""
    with Configurator(settings={"pyramid.includes": "stargate.pyramid"}) as config:
        config.add_route("r", "/r")
        config.add_view(Socket, route_name="r", websocket=True)
        app = webtest.TestApp(config.make_wsgi_app())
    environ = upgrade_environ("/r")
    app.get("/r", extra_environ=environ)
    assert environ[ENVIRON_KEY].acceptance is not None


def test_without_the_include_the_predicate_is_unknown() -> None:
    with pytest.raises(ConfigurationError):
        make_app(include=False)


# -- settings -----------------------------------------------------------------------------------


def test_include_parses_the_settings(config: Any) -> None:
    config.registry.settings["stargate.subprotocols"] = "chat.v2 chat.v1"
    config.include("stargate.pyramid")
    parsed = config.registry[REGISTRY_KEY]
    assert isinstance(parsed, WebSocketSettings)
    assert parsed.subprotocols == ("chat.v2", "chat.v1")


def test_a_bad_setting_fails_at_startup() -> None:
    with pytest.raises(ConfigurationError, match=r"stargate\.max_message_size"):
        make_app({"stargate.max_message_size": "lots"})


def test_settings_added_after_the_include_count() -> None:
    """Pyramid takes ``config.add_settings`` until the commit: a ``stargate.*`` setting
    added after the include (a security setting, say) must apply, or fail if misspelt,
    not be dropped without a word."""
    with Configurator(settings={}) as config:
        config.include("stargate.pyramid")
        config.add_settings({"stargate.max_message_size": "100", "stargate.subprotocols": "v2"})
        config.make_wsgi_app()
        parsed = config.registry[REGISTRY_KEY]
    assert parsed.subprotocols == ("v2",)
    assert parsed.options.limits.max_message_size == 100
    with Configurator(settings={}) as config:
        config.include("stargate.pyramid")
        config.add_settings({"stargate.max_mesage_size": "100"})
        with pytest.raises(ConfigurationError, match=r"unknown setting stargate\.max_mesage_size"):
            config.make_wsgi_app()


def test_a_misspelt_setting_fails_at_startup() -> None:
    """As in ``[server:main]``: a typo must not leave the default silently in force."""
    with pytest.raises(ConfigurationError, match=r"unknown setting stargate\.max_mesage_size; "):
        make_app({"stargate.max_mesage_size": "100", "stargate.app_factory": "x:main"})
