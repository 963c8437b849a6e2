"""The access log: one line per HTTP request, per WebSocket opened and closed, per refusal.

Lines go to the ``stargate.access`` logger at INFO, so the application's logging decides
where they end up.  ``text`` lines read like a web server's::

    127.0.0.1:50312 "GET /jobs HTTP/1.1" 200 1520 0.004s
    127.0.0.1:50314 "GET /chat WS" open subprotocol=chat.v1 extensions=permessage-deflate
    127.0.0.1:50314 "GET /chat WS" close 1000 "bye" by=client 12.301s in=5/120 out=7/310
    127.0.0.1:50318 "GET /chat WS" refused 403 "origin 'https://evil.example' not allowed"

``json`` lines are one object each (``{"time": "2026-12-06T07:30:10.123Z", "event":
"http", "peer": ..., ...}``), for log pipelines.  A refused upgrade is logged with its
reason, since the browser shows only 1006.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ServerConfig

logger = logging.getLogger("stargate.access")
_JSON_HANDLER = "stargate-access-json"

FORMATS = ("text", "json")


def _peer(remote: tuple[str, int] | None) -> str:
    if remote is None:
        return "-"
    host, port = remote
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _utc_now() -> str:
    """RFC 3339 in UTC, to the millisecond: ``2026-12-06T07:30:10.123Z``."""
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _quoted(text: str) -> str:
    """A value inside double quotes, with what could forge a log line escaped."""
    return json.dumps(text, ensure_ascii=True)


class AccessLog:
    """Writes access lines in one of :data:`FORMATS`; costs one check when disabled."""

    def __init__(self, enabled: bool, format: str = "text") -> None:
        if format not in FORMATS:
            raise ValueError(f"access log format must be one of {FORMATS}, not {format!r}")
        self.enabled = enabled
        self.json = format == "json"

    def _emit(self, fields: dict[str, Any], text: str) -> None:
        if self.json:
            # The time first: a JSON line is written bare (see json_lines_alone), and log
            # pipelines want the moment the server saw, not the one they read the line.
            stamped = {"time": _utc_now(), **fields}
            # ASCII only: raw NEL, U+2028 or C1 controls split a line for some readers.
            logger.info(json.dumps(stamped, ensure_ascii=True, separators=(",", ":")))
        else:
            logger.info("%s", text)

    def _on(self) -> bool:
        return self.enabled and logger.isEnabledFor(logging.INFO)

    def http(
        self,
        remote: tuple[str, int] | None,
        method: str,
        target: str,
        version: str,
        status: int,
        size: int,
        duration: float,
        cut: bool = False,
    ) -> None:
        """A request answered: ``size`` is the response's bytes on the wire, head included;
        ``cut``: the shutdown's deadline passed with the app still at it (the connection is
        dropped, ``status`` is the app's if it gave one)."""
        if not self._on():
            return
        request = f"{method} {target} HTTP/{version}"
        fields: dict[str, Any] = {
            "event": "http",
            "peer": _peer(remote),
            "method": method,
            "target": target,
            "version": version,
            "status": status,
            "bytes": size,
            "duration": round(duration, 6),
        }
        text = f"{_peer(remote)} {_quoted(request)} {status} {size} {duration:.3f}s"
        if cut:
            fields["cut"] = True
            text += " cut-by-shutdown"
        self._emit(fields, text)

    def refused(
        self,
        remote: tuple[str, int] | None,
        method: str,
        target: str,
        status: int,
        reason: str,
        *,
        websocket: bool,
    ) -> None:
        """A request refused by the server (bad head, limits) or an upgrade refused."""
        if not self._on():
            return
        request = f"{method} {target}" + (" WS" if websocket else "")
        self._emit(
            {
                "event": "websocket_refused" if websocket else "http_refused",
                "peer": _peer(remote),
                "method": method,
                "target": target,
                "status": status,
                "reason": reason,
            },
            f"{_peer(remote)} {_quoted(request)} refused {status} {_quoted(reason)}",
        )

    def websocket_open(
        self,
        remote: tuple[str, int] | None,
        target: str,
        subprotocol: str | None,
        extensions: list[str],
    ) -> None:
        if not self._on():
            return
        request = f"GET {target} WS"
        self._emit(
            {
                "event": "websocket_open",
                "peer": _peer(remote),
                "target": target,
                "subprotocol": subprotocol,
                "extensions": extensions,
            },
            f"{_peer(remote)} {_quoted(request)} open subprotocol={subprotocol or '-'} "
            f"extensions={','.join(extensions) or '-'}",
        )

    def websocket_close(
        self,
        remote: tuple[str, int] | None,
        target: str,
        code: int | None,
        reason: str,
        closed_by: str,
        duration: float,
        counts: tuple[int, int, int, int],
    ) -> None:
        """``counts``: messages and bytes received, messages and bytes sent."""
        if not self._on():
            return
        messages_in, bytes_in, messages_out, bytes_out = counts
        request = f"GET {target} WS"
        self._emit(
            {
                "event": "websocket_close",
                "peer": _peer(remote),
                "target": target,
                "code": code,
                "reason": reason,
                "closed_by": closed_by,
                "duration": round(duration, 6),
                "messages_in": messages_in,
                "bytes_in": bytes_in,
                "messages_out": messages_out,
                "bytes_out": bytes_out,
            },
            f"{_peer(remote)} {_quoted(request)} close {code if code is not None else '-'} "
            f"{_quoted(reason)} by={closed_by} {duration:.3f}s "
            f"in={messages_in}/{bytes_in} out={messages_out}/{bytes_out}",
        )


def json_lines_alone(config: ServerConfig) -> None:
    """JSON access lines are for log pipelines: one object per line and nothing around it.
    Through the root handler each would be prefixed (time, level, logger name), so the
    access logger gets a handler of its own with a bare format, on the same stream
    (stderr), and stops propagating, lest each line also go out through the root handler.
    Text lines keep the root's format: its time stamp is theirs.  An access logger given
    handlers of its own (an .ini file's ``[logger_...]``) is left as configured."""
    for handler in [h for h in logger.handlers if h.get_name() == _JSON_HANDLER]:
        logger.removeHandler(handler)  # a server may be started again in one process
        logger.propagate = True
    if config.access_log and config.access_log_format == "json" and not logger.handlers:
        handler = logging.StreamHandler()
        handler.set_name(_JSON_HANDLER)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
