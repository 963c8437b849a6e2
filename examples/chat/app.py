"""The chat example's resources and its app factory (``main``, PasteDeploy's app factory)."""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any, ClassVar

from pyramid.authentication import AuthTktCookieHelper
from pyramid.authorization import ACLHelper, Allow, Authenticated, Everyone
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPNotFound

from stargate.pyramid import WebSocketAwareResource

ROOM_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


class Room(WebSocketAwareResource):
    """A chat room: its listeners are the people in it."""

    __acl__: ClassVar[list[tuple[str, str, str]]] = [(Allow, Authenticated, "chat")]

    def __init__(self, name: str, parent: Rooms) -> None:
        self.__name__ = name
        self.__parent__ = parent
        self.name = name
        #: Connection id -> name of the person on it (changed on the server's loop only).
        self.people: dict[int, str] = {}


class Rooms:
    """Every room of the app, created on first visit; the root of the rooms, so a room's
    listeners are this app's ``/lobby``, never another app's room or resource of that name."""

    __name__ = ""
    __parent__ = None

    def __init__(self, names: tuple[str, ...] = ("lobby", "random")) -> None:
        self.listener_namespace = f"examples.chat:{uuid.uuid4().hex}"
        self._lock = threading.Lock()
        self._rooms = {name: Room(name, self) for name in names}

    def get(self, name: str) -> Room:
        if not ROOM_NAME.match(name):
            raise HTTPNotFound(f"no room {name!r}: lowercase letters, digits and dashes")
        with self._lock:
            room = self._rooms.get(name)
            if room is None:
                room = self._rooms[name] = Room(name, self)
            return room

    def all(self) -> list[Room]:
        with self._lock:
            return sorted(self._rooms.values(), key=lambda room: room.name)


class SecurityPolicy:
    """Pyramid 2 security: the user id is the name in a signed cookie; ACLs decide."""

    def __init__(self, secret: str) -> None:
        self.cookie = AuthTktCookieHelper(secret, hashalg="sha512", http_only=True)
        self.acl = ACLHelper()

    def identity(self, request: Any) -> str | None:
        identity = self.cookie.identify(request)
        return None if identity is None else str(identity["userid"])

    def authenticated_userid(self, request: Any) -> str | None:
        return self.identity(request)

    def permits(self, request: Any, context: Any, permission: str) -> Any:
        principals = [Everyone]
        userid = self.identity(request)
        if userid is not None:
            principals += [Authenticated, f"user:{userid}"]
        return self.acl.permits(context, principals, permission)

    def remember(self, request: Any, userid: str, **kw: Any) -> Any:
        return self.cookie.remember(request, userid, **kw)

    def forget(self, request: Any, **kw: Any) -> Any:
        return self.cookie.forget(request, **kw)


def main(global_config: dict[str, Any] | None = None, **settings: Any) -> Any:
    """The WSGI app (PasteDeploy app factory); ``chat.secret`` signs the cookies, and
    ``pyramid.includes = stargate.pyramid`` brings the WebSocket support."""
    secret = settings.get("chat.secret")
    if not secret:
        raise ValueError("chat.secret is required (it signs the login cookie)")
    rooms = Rooms()
    with Configurator(settings=settings) as config:
        config.set_security_policy(SecurityPolicy(secret))
        config.add_route("home", "/")
        config.add_route("login", "/login")
        config.add_route("logout", "/logout")
        config.add_route("room", "/rooms/{room}", factory=lambda r: rooms.get(r.matchdict["room"]))
        config.registry["chat.rooms"] = rooms
        from . import views

        views.includeme(config)
        return config.make_wsgi_app()
