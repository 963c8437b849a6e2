"""The asyncio server: a WSGI app and WebSockets on one port."""

from .app import Server, serve
from .config import ServerConfig, WebSocketOptions
from .routing import Routes
from .sync import SyncWebSocket
from .upgrade import ENVIRON_KEY, Upgrade, is_websocket
from .websocket import WebSocket

__all__ = [
    "ENVIRON_KEY",
    "Routes",
    "Server",
    "ServerConfig",
    "SyncWebSocket",
    "Upgrade",
    "WebSocket",
    "WebSocketOptions",
    "is_websocket",
    "serve",
]
