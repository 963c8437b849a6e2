"""A route table for pure WebSocket servers: path -> handler, no WSGI app needed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..handshake import OriginPolicy
from .config import WebSocketOptions
from .upgrade import Acceptance, Handler, checked_subprotocols


class Routes:
    """Maps request paths to handlers; ``default`` serves every other path.

    Plain HTTP requests to a route get 426 Upgrade Required, to anything else 404.
    """

    def __init__(
        self,
        routes: Mapping[str, Handler] | None = None,
        *,
        default: Handler | None = None,
        subprotocols: Sequence[str] = (),
        origin_policy: OriginPolicy | None = None,
        options: WebSocketOptions | None = None,
    ) -> None:
        self._routes: dict[str, Handler] = dict(routes or {})
        #: The handler of every path without a route of its own (``None``: those get 404).
        self.default = default
        #: The subprotocols every route speaks, in preference order.
        self.subprotocols = checked_subprotocols(subprotocols)
        #: The Origin policy of every route (``None``: the server's).
        self.origin_policy = origin_policy
        #: The WebSocket options of every route (``None``: the server's).
        self.options = options

    def route(self, path: str) -> Callable[[Handler], Handler]:
        """Decorator: ``@routes.route("/chat")``."""

        def register(handler: Handler) -> Handler:
            self._routes[path] = handler
            return handler

        return register

    def resolve(self, path: str) -> Acceptance | None:
        """What serves an upgrade to ``path``: its route's handler (or ``default``) with
        this table's settings; ``None`` when nothing does."""
        handler = self._routes.get(path, self.default)
        if handler is None:
            return None
        return Acceptance(handler, self.subprotocols, self.origin_policy, self.options)
