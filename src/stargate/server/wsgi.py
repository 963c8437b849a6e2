"""Running a PEP 3333 WSGI application in a worker thread.

The app's iterable is consumed in the worker thread, so a streaming response never blocks the
event loop; each chunk is handed to the loop, and the worker waits while the transport is
above its high-water mark (a slow HTTP client slows only its own worker).
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Protocol, TypeAlias
from urllib.parse import unquote_to_bytes

logger = logging.getLogger("stargate.wsgi")

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse: TypeAlias = Callable[..., Callable[[bytes], None]]
WSGIApp: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(slots=True)
class HttpRequest:
    """A parsed HTTP request, as the HTTP layer hands it over."""

    method: str
    target: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    keep_alive: bool = True
    upgrade: bool = False
    #: Bytes that followed an upgrade request's head (hixie-76 key3, early frames).
    trailing: bytearray = field(default_factory=bytearray)


class ResponseSink(Protocol):
    """Where the worker thread writes; implemented by the HTTP protocol (thread-safe)."""

    def write_from_thread(self, data: bytes) -> None: ...


def build_environ(
    request: HttpRequest,
    *,
    server_name: str,
    server_port: int,
    remote: tuple[str, int] | None,
    url_scheme: str,
    multiprocess: bool = False,
) -> dict[str, Any]:
    """The WSGI environ of PEP 3333 for ``request``."""
    path, _, query = request.target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        # PEP 3333: PATH_INFO is the URL-decoded path as a latin-1 "bytes in str".
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
        "REMOTE_ADDR": remote[0] if remote else "",
        "REMOTE_PORT": str(remote[1]) if remote else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "RAW_URI": request.target,
    }
    for name, value in request.headers:
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            environ[key] = value
            continue
        if "_" in name:
            continue  # HTTP_X_Y must not be spoofable by "X_Y" next to "X-Y" (header smuggling)
        key = "HTTP_" + key
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    environ.setdefault("CONTENT_LENGTH", str(len(request.body)) if request.body else "")
    return environ


class WSGIResponse:
    """``start_response`` and the body writer for one request, used in the worker thread."""

    def __init__(self, sink: ResponseSink, request: HttpRequest) -> None:
        self._sink = sink
        self._request = request
        self.status: str | None = None
        self.status_code = 0
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.keep_alive = request.keep_alive
        self._chunked = False
        self._content_length: int | None = None
        self._head_only = request.method == "HEAD"
        #: Tells whether the app accepted an upgrade (set by the HTTP layer).
        self.upgrade_accepted: Callable[[], bool] = lambda: False

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        self.status = status
        self.status_code = int(status.split(" ", 1)[0])
        self.headers = list(headers)
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write`` callable, also used for each chunk of the iterable."""
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if not self.headers_sent:
            self._send_head(None)
        if not data or self._head_only or self.status_code in _NO_BODY_STATUSES:
            return
        if self._chunked:
            self._sink.write_from_thread(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self._sink.write_from_thread(data)

    def _send_head(self, body_length: int | None) -> None:
        """Frame the body: the app's Content-Length, else a known length, else chunked
        (HTTP/1.1) or end-of-connection (HTTP/1.0)."""
        assert self.status is not None
        names = {name.lower() for name, _ in self.headers}
        headers = list(self.headers)
        bodiless = self.status_code in _NO_BODY_STATUSES or self.status_code < 200
        if "content-length" in names or bodiless:
            pass
        elif body_length is not None:
            headers.append(("Content-Length", str(body_length)))
        elif self._request.http_version == "1.1":
            self._chunked = True
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            self.keep_alive = False
        if "connection" in names:
            for name, value in self.headers:
                if name.lower() == "connection" and "close" in value.lower():
                    self.keep_alive = False
        elif not self.keep_alive:
            headers.append(("Connection", "close"))
        elif self._request.http_version == "1.0":
            headers.append(("Connection", "keep-alive"))
        if "server" not in names:
            headers.append(("Server", "stargate"))
        lines = [f"HTTP/1.1 {self.status}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers)
        lines.append("\r\n")
        self.headers_sent = True
        self._sink.write_from_thread("".join(lines).encode("latin-1"))

    def finish(self) -> None:
        if self.status is None and self.upgrade_accepted():
            return  # the app accepted a WebSocket upgrade: its response does not matter
        if not self.headers_sent:
            self._send_head(0)
        elif self._chunked and not self._head_only:
            self._sink.write_from_thread(b"0\r\n\r\n")


def run_wsgi(app: WSGIApp, environ: dict[str, Any], response: WSGIResponse) -> None:
    """Call the app and send its response; runs in a worker thread.

    A failure before the head is sent becomes a 500; after, the connection is closed
    (``keep_alive`` False) since the client cannot be told otherwise.
    """
    try:
        result = app(environ, response.start_response)
        try:
            if (
                not response.headers_sent
                and isinstance(result, list | tuple)
                and len(result) <= 1
                and response.status is not None
            ):
                body = result[0] if result else b""
                response._send_head(len(body))
                if (
                    body
                    and not response._head_only
                    and response.status_code not in _NO_BODY_STATUSES
                ):
                    response._sink.write_from_thread(body)
                return
            for chunk in result:
                if chunk:
                    response.write(chunk)
            response.finish()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception:
        logger.exception(
            "WSGI application error on %s %s", environ["REQUEST_METHOD"], environ["RAW_URI"]
        )
        if response.headers_sent:
            response.keep_alive = False
        else:
            body = b"Internal Server Error\n"
            response.status = None
            response.start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            response.keep_alive = False
            response._send_head(None)
            response._sink.write_from_thread(body)


def status_line(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def simple_response(
    code: int, reason: str, *, keep_alive: bool = False, headers: Iterable[tuple[str, str]] = ()
) -> bytes:
    """A complete plain-text response, for errors the server answers itself."""
    body = (reason + "\n").encode("utf-8")
    lines = [
        f"HTTP/1.1 {status_line(code)}\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        f"Content-Length: {len(body)}\r\n",
        "Server: stargate\r\n",
    ]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    lines.append("Connection: keep-alive\r\n\r\n" if keep_alive else "Connection: close\r\n\r\n")
    return "".join(lines).encode("latin-1") + body
