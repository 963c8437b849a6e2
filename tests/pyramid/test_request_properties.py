"""``request.is_websocket`` and ``request.websocket_upgrade`` (stargate.pyramid's includeme)
cost nothing per request: they are properties of one request class made at configuration,
whatever request factory the application sets, before or after the include.

Pyramid's own ``add_request_method(..., reify=True)`` would make a class for every request
(about 40 us of each request, pages included).
"""

from __future__ import annotations

from typing import Any

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.request import Request
from pyramid.response import Response

from stargate.handshake import Request as HandshakeRequest
from stargate.headers import Headers
from stargate.server import ENVIRON_KEY, Upgrade

seen: list[Any] = []


def record(request: Any) -> Any:
    seen.append((type(request), request.is_websocket, request.websocket_upgrade))
    return Response("ok")


class AppRequest(Request):  # type: ignore[misc]  # pyramid is untyped
    """An application's own request class."""

    @property
    def answer(self) -> int:
        return 42


def make_app(factory: Any = None, *, before: bool = False) -> webtest.TestApp:
    with Configurator() as config:
        if factory is not None and before:
            config.set_request_factory(factory)
        config.include("stargate.pyramid")
        if factory is not None and not before:
            config.set_request_factory(factory)
        config.add_route("r", "/")
        config.add_view(record, route_name="r")
        return webtest.TestApp(config.make_wsgi_app())


@pytest.mark.parametrize(
    ("factory", "before"), [(None, False), (AppRequest, False), (AppRequest, True)]
)
def test_one_request_class_for_every_request(factory: Any, before: bool) -> None:
    seen.clear()
    app = make_app(factory, before=before)
    upgrade = Upgrade(HandshakeRequest("GET", "/", Headers([("Host", "x")])))
    app.get("/")
    app.get("/", extra_environ={ENVIRON_KEY: upgrade})
    (first, plain, none), (second, upgrading, found) = seen
    assert first is second  # no class made per request
    assert (plain, none) == (False, None)
    assert (upgrading, found) == (True, upgrade)
    if factory is not None:
        assert issubclass(first, AppRequest)  # the application's factory, extended


def test_a_request_factory_that_is_not_a_class_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="must be a class"):
        make_app(lambda environ: Request(environ))
