"""Running a PEP 3333 WSGI application in a worker thread: the environ and the response.

The app's iterable is consumed in the worker thread and each piece handed to the
connection's output buffer (``ResponseSink``), which never makes the thread wait on the
network (see ``buffers``).  What the app hands over is checked first (``response``): an
invalid status or header, a hop-by-hop header, or a body longer than the app's own
Content-Length never reaches the wire as written.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Protocol, TypeAlias
from urllib.parse import unquote_to_bytes

from .request import HttpRequest
from .response import (
    InvalidResponse,
    check_app_headers,
    check_status,
    http_date,
    serialize_head,
)

logger = logging.getLogger("stargate.wsgi")

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse: TypeAlias = Callable[..., Callable[[bytes], None]]
WSGIApp: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: RFC 9110 sections 15.3.5 and 15.4.5: responses that never have a body.
_NO_BODY_STATUSES = frozenset({204, 304})


class ClientGone(ConnectionError):
    """The client went away (or was dropped) while its response was being written."""


class ResponseSink(Protocol):
    """Where the worker thread writes: the connection's output, safe to call from a thread.

    Raises :class:`ClientGone` once the connection is closed, so an app streaming a long
    response stops instead of producing it for nobody.
    """

    def write_from_thread(self, data: bytes) -> None: ...


class Stopping(Protocol):
    """Whether the server is shutting down (read when a response's head is built)."""

    shutting_down: bool


def build_environ(
    request: HttpRequest,
    *,
    server_name: str,
    server_port: int,
    remote: tuple[str, int] | None,
    url_scheme: str,
    multiprocess: bool = False,
) -> dict[str, Any]:
    """The WSGI environ of PEP 3333 for ``request``.

    Only ``Content-Type`` and ``Content-Length`` themselves become CONTENT_TYPE and
    CONTENT_LENGTH; a header with an underscore in its name (``Content_Length``) is dropped,
    as it could otherwise pass for its dashed twin (header smuggling).  For an absolute-form
    target the authority stands for the Host header (RFC 9112 section 3.2.2).
    """
    target = request.parsed
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        # PEP 3333: PATH_INFO is the URL-decoded path as a latin-1 "bytes in str".
        "PATH_INFO": "" if target.path == "*" else unquote_to_bytes(target.path).decode("latin-1"),
        "QUERY_STRING": target.query,
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
        # As waitress and gunicorn name themselves: an app (stargate.pyramid's view) can
        # tell a malformed handshake from a server that cannot upgrade.
        "SERVER_SOFTWARE": "stargate",
        "REMOTE_ADDR": remote[0] if remote else "",
        "REMOTE_PORT": str(remote[1]) if remote else "",
        "CONTENT_TYPE": "",
        "CONTENT_LENGTH": str(request.body_size) if request.body_size else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.input": request.body,
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "RAW_URI": request.target,
        "REQUEST_URI": request.target,
    }
    for name, value in request.headers:
        if "_" in name:
            continue  # HTTP_X_Y must not be spoofable by "X_Y" next to "X-Y" (smuggling)
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ[key] = value
            continue
        if key == "CONTENT_LENGTH":
            continue  # the body's actual size (set above): the parser framed it
        key = "HTTP_" + key
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    if target.authority is not None:
        environ["HTTP_HOST"] = target.authority
    if not environ["CONTENT_TYPE"]:
        del environ["CONTENT_TYPE"]
    return environ


class WSGIResponse:
    """``start_response`` and the body writer for one request, used in the worker thread."""

    def __init__(
        self,
        sink: ResponseSink,
        request: HttpRequest,
        *,
        keep_alive: bool | None = None,
        server: Stopping | None = None,
    ) -> None:
        self._sink = sink
        self._request = request
        #: A response whose head is built while the server shuts down says
        #: ``Connection: close``: the connection closes after it (RFC 9112 section 9.6).
        self._server = server
        self.status: str | None = None
        self.status_code = 0
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        #: Whether the connection stays open after this response (``keep_alive``: the
        #: server's say instead of the request's; an upgrade's refusal closes).
        self.keep_alive = request.keep_alive if keep_alive is None else keep_alive
        #: Set by :func:`run_wsgi` when the app raised or handed over something invalid.
        self.failed = False
        #: The app failed after its head was sent: the response is incomplete.
        self.cut_short = False
        #: Set once the response is whole: what the app still writes (a ``write`` kept and
        #: called later, from another thread) would be read as the next response.
        self.complete = False
        # write() may be called from several threads (an app's producers): one head, and
        # chunks whole and in the order they are handed over.
        self._lock = threading.RLock()
        self._chunked = False
        self._content_length: int | None = None
        self._written = 0
        self._excess_logged = False
        self._head_only = request.method == "HEAD"
        #: Tells whether the app accepted an upgrade (set by the HTTP layer).
        self.upgrade_accepted: Callable[[], bool] = lambda: False

    @property
    def content_length(self) -> int | None:
        """The body length the app declared (its ``Content-Length``), if any."""
        return self._content_length

    @property
    def has_body(self) -> bool:
        return not self._head_only and self.status_code not in _NO_BODY_STATUSES

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
        code = check_status(status)
        headers = list(headers)
        content_length = check_app_headers(code, headers)
        self.status = status
        self.status_code = code
        self.headers = headers
        self._content_length = content_length
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write`` callable, also used for each chunk of the iterable."""
        with self._lock:
            if self.status is None:
                raise AssertionError("write() before start_response()")
            if self.complete:
                raise InvalidResponse("write() after the response was complete")
            if not isinstance(data, bytes | bytearray | memoryview):
                raise InvalidResponse(f"the body must be bytes, not {type(data).__name__}")
            head = b"" if self.headers_sent else self._head(None)
            if not data or not self.has_body:
                self._send(head, b"")
                return
            limit = self._content_length
            if limit is not None:
                room = limit - self._written
                if len(data) > room:
                    if not self._excess_logged:
                        self._excess_logged = True
                        logger.warning(
                            "%s %s: the app wrote more than its Content-Length (%d); "
                            "the excess is not sent",
                            self._request.method,
                            self._request.target,
                            limit,
                        )
                    data = data[: max(room, 0)]
                self._written += len(data)
                if not data:
                    self._send(head, b"")
                    return
            if self._chunked:
                self._send(head, b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self._send(head, bytes(data))

    def _send(self, head: bytes, body: bytes) -> None:
        """Hand ``head`` (if not sent yet) and ``body`` to the sink.  The head counts as
        sent only once the sink took it: if it refuses (an upgrade's answer too large to
        hold), the app's failure can still be answered with a 500."""
        if head or body:
            self._sink.write_from_thread(head + body if head else body)
        if head:
            self.headers_sent = True

    def _head(self, body_length: int | None) -> bytes:
        """The response head.  The body is framed by the app's Content-Length, else a
        known length, else chunked (HTTP/1.1) or the end of the connection (HTTP/1.0)."""
        assert self.status is not None
        code = self.status_code
        headers: list[tuple[str, str]] = []
        has_server = has_date = has_upgrade = has_length = False
        for name, value in self.headers:
            lower = name.lower()
            if lower == "connection":
                self.keep_alive = False  # check_app_headers lets only "close" through
                continue
            if lower == "content-length":
                if code < 200 or code == 204 or has_length:
                    # RFC 9110 section 8.6: never in a 1xx or 204 response; and once (an
                    # app's repeated equal ones: RFC 9112 section 6.3 lets a recipient
                    # refuse the message, as llhttp does).
                    continue
                has_length = True
            has_server = has_server or lower == "server"
            has_date = has_date or lower == "date"
            has_upgrade = has_upgrade or lower == "upgrade"  # only on a 426: check_app_headers
            headers.append((name, value))
        if self._content_length is not None or code < 200 or code in _NO_BODY_STATUSES:
            pass
        elif body_length == 0 and self._head_only:
            # Frameworks answer HEAD with no body at all (WebOb): its length is unknown,
            # and RFC 9110 section 8.6 allows no Content-Length but the GET body's.
            pass
        elif body_length is not None:
            self._content_length = body_length
            headers.append(("Content-Length", str(body_length)))
        elif self._request.http_version == "1.1":
            self._chunked = True
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            self.keep_alive = False
        if self._server is not None and self._server.shutting_down:
            self.keep_alive = False
        # RFC 9110 section 7.8: a sender of Upgrade sends the "upgrade" option too.
        options = ["upgrade"] if has_upgrade else []
        if not self.keep_alive:
            options.append("close")
        elif self._request.http_version == "1.0":
            options.append("keep-alive")
        if options:
            headers.append(("Connection", ", ".join(options)))
        if not has_server:
            headers.append(("Server", "stargate"))
        if not has_date:
            headers.append(("Date", http_date()))
        return serialize_head(self.status, headers)

    def send_whole(self, body: bytes) -> None:
        """A response whose body is known at once: head and body in one write."""
        with self._lock:
            self.complete = True
            if self.status_code < 300 and self.upgrade_accepted():
                return  # the answer to an accepted upgrade is never sent: not even built
            head = self._head(len(body))
            self._written = len(body)
            self._send(head, body if self.has_body else b"")

    def finish(self) -> None:
        """After the app's iterable: the head if nothing was written, the chunked body's
        end, and a check that the body was as long as the app said (else close)."""
        with self._lock:
            self.complete = True
            if self.status is None and self.upgrade_accepted():
                return  # the app accepted a WebSocket upgrade: its response does not matter
            if not self.headers_sent:
                self._send(self._head(0), b"")
            elif self._chunked and self.has_body:
                self._send(b"", b"0\r\n\r\n")
            if (
                self.has_body
                and self._content_length is not None
                and self._written < self._content_length
            ):
                logger.warning(
                    "%s %s: the app wrote %d bytes of its Content-Length %d; closing the "
                    "connection (the client cannot tell the next response from the body)",
                    self._request.method,
                    self._request.target,
                    self._written,
                    self._content_length,
                )
                self.keep_alive = False

    def fail(self) -> None:
        """The app failed: a 500 if nothing was sent yet, else the connection ends (the
        channel resets it, so that even a body delimited by the close shows as cut)."""
        with self._lock:
            self.failed = True
            self.keep_alive = False
            if self.headers_sent:
                self.cut_short = True
                self.complete = True
                return
            body = b"Internal Server Error\n"
            self.status = None
            self._chunked = False  # a head that never reached the sink may have said chunked
            self._written = 0
            self.start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            self.send_whole(body)


def _sent_whole(response: WSGIResponse) -> bool:
    """Whether the app's response went out whole: complete, sent, not failed, and not the
    answer of an accepted upgrade (held, never sent: a failure must still refuse the
    upgrade, as dispatch.decide_upgrade does for any).  What fails after a whole response
    (its iterable's close()) does not cut it."""
    return (
        response.complete
        and response.headers_sent
        and not response.failed
        and not response.upgrade_accepted()
    )


def run_wsgi(app: WSGIApp, environ: dict[str, Any], response: WSGIResponse) -> None:
    """Call the app and send its response; runs in a worker thread.

    A failure (an exception, or something invalid handed over) before the head is sent
    becomes a logged 500; after, the connection is closed.  A client that went away
    stops the app's iterable quietly.
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
                if isinstance(body, bytearray | memoryview):
                    body = bytes(body)  # as write() takes them: one rule for every chunk
                if not isinstance(body, bytes):
                    raise InvalidResponse(f"the body must be bytes, not {type(body).__name__}")
                limit = response.content_length
                if limit is None or len(body) == limit or not response.has_body:
                    response.send_whole(body)
                    return
            for chunk in result:
                if chunk:
                    response.write(chunk)
            response.finish()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except ClientGone:
        response.keep_alive = False
        logger.debug("%s %s: the client went away", environ["REQUEST_METHOD"], environ["RAW_URI"])
    except (SystemExit, KeyboardInterrupt):
        # The app asked for the process to end: its client still gets an answer (or has
        # it whole already: a close() raising it), and the caller stops the server
        # gracefully (ServerState.app_done).
        if _sent_whole(response):
            response.keep_alive = False
        else:
            with contextlib.suppress(ClientGone):
                response.fail()
        raise
    except BaseException:
        # Exception and the rest alike: an asyncio.CancelledError, a GeneratorExit, a
        # library's BaseException timeout (gevent's) are the app's failure too, owed a 500
        # (or a reset, after the head) and a traceback in the log, as PEP 3333 asks.
        if _sent_whole(response):
            # Only the iterable's close() runs after a whole response: the client has it
            # all, and the connection closes after it, gracefully (a reset could discard
            # the response's last bytes in the kernel).
            logger.exception(
                "WSGI application error in close() after the response to %s %s",
                environ["REQUEST_METHOD"],
                environ["RAW_URI"],
            )
            response.keep_alive = False
            return
        logger.exception(
            "WSGI application error on %s %s", environ["REQUEST_METHOD"], environ["RAW_URI"]
        )
        with contextlib.suppress(ClientGone):
            response.fail()
    finally:
        response.complete = True  # whatever happened, nothing more goes out for this one
