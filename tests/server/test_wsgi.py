"""PEP 3333 in a worker thread (stargate.server.wsgi): the environ and the response framing.

These run the WSGI layer against an in-memory sink; the HTTP tests run it over sockets.
"""

from __future__ import annotations

import asyncio
import io
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast
from wsgiref.validate import validator

import pytest

from stargate.server.request import HttpRequest, parse_target
from stargate.server.response import InvalidResponse, simple_response
from stargate.server.wsgi import StartResponse, WSGIResponse, build_environ, run_wsgi

from .support import ClosingBody

#: Upper bound of every wait here.
TIMEOUT = 5.0


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self._lock = threading.Lock()  # a sink is thread-safe, as the channel's output is

    def write_from_thread(self, data: bytes) -> None:
        with self._lock:
            self.data += data


def make_request(
    method: str = "GET",
    target: str = "/",
    version: str = "1.1",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    keep_alive: bool = True,
) -> HttpRequest:
    return HttpRequest(
        method,
        target,
        version,
        headers or [],
        io.BytesIO(body),
        len(body),
        keep_alive,
        parsed=parse_target(method, target),
    )


def environ_of(request: HttpRequest) -> dict[str, Any]:
    return build_environ(
        request,
        server_name="127.0.0.1",
        server_port=8000,
        remote=("10.0.0.1", 5555),
        url_scheme="http",
    )


_DATE = re.compile(rb"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n")


def without_date(data: bytes) -> bytes:
    """``data`` without its one Date header (RFC 9110 section 6.6.1), checked present."""
    stripped, count = _DATE.subn(b"", data)
    assert count == 1, data
    return stripped


def run(app: Any, request: HttpRequest) -> tuple[WSGIResponse, bytes]:
    """The app's response; its Date header is checked and left out."""
    sink = Sink()
    response = WSGIResponse(sink, request)
    run_wsgi(app, environ_of(request), response)
    return response, without_date(bytes(sink.data))


def test_environ_follows_pep3333() -> None:
    request = make_request(
        "POST",
        "/a%20b/%E2%82%AC?x=1&y=%20",
        headers=[
            ("Host", "example.com"),
            ("Content-Type", "text/plain"),
            ("Content-Length", "3"),
            ("X-Multi", "one"),
            ("x-multi", "two"),
            ("X_Spoofed", "evil"),
        ],
        body=b"abc",
    )
    environ = environ_of(request)
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/a b/\xe2\x82\xac"  # decoded, latin-1 "bytes in str"
    assert environ["QUERY_STRING"] == "x=1&y=%20"  # not decoded
    assert environ["RAW_URI"] == "/a%20b/%E2%82%AC?x=1&y=%20"
    assert environ["SERVER_NAME"] == "127.0.0.1"
    assert environ["SERVER_PORT"] == "8000"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["SERVER_SOFTWARE"] == "stargate"
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("10.0.0.1", "5555")
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert environ["HTTP_HOST"] == "example.com"
    assert environ["HTTP_X_MULTI"] == "one,two"
    assert "HTTP_X_SPOOFED" not in environ  # underscores could smuggle a dashed header
    assert environ["wsgi.input"].read() == b"abc"
    assert environ["wsgi.version"] == (1, 0)
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.errors"] is sys.stderr


def test_environ_content_length_of_a_chunked_body() -> None:
    environ = environ_of(
        make_request("POST", headers=[("Transfer-Encoding", "chunked")], body=b"xyz")
    )
    assert environ["CONTENT_LENGTH"] == "3"
    assert environ_of(make_request())["CONTENT_LENGTH"] == ""


def test_single_item_body_gets_content_length() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    response, data = run(app, make_request())
    assert data == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
        b"Server: stargate\r\n\r\nhello"
    )
    assert response.keep_alive


def test_generator_body_is_chunked_in_http11_and_close_delimited_in_http10() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"ab"
        yield b"cde"

    response, data = run(app, make_request())
    assert data.endswith(
        b"Transfer-Encoding: chunked\r\nServer: stargate\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
    )
    assert response.keep_alive
    response, data = run(app, make_request(version="1.0", keep_alive=False))
    assert data.endswith(b"Connection: close\r\nServer: stargate\r\n\r\nabcde")
    assert not response.keep_alive


def test_write_callable_and_app_content_length() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Length", "6")])
        write(b"abc")
        return [b"def"]

    _, data = run(app, make_request())
    assert data.endswith(b"Content-Length: 6\r\nServer: stargate\r\n\r\nabcdef")
    assert b"chunked" not in data


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_bodiless_statuses_send_no_body(status: str) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response(status, [])
        return [b"ignored"]

    _, data = run(app, make_request())
    assert data.endswith(b"\r\n\r\n")
    assert b"ignored" not in data and b"Content-Length" not in data


def test_head_sends_length_but_no_body() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        return [b"body"]

    _, data = run(app, make_request("HEAD"))
    assert data.endswith(b"Content-Length: 4\r\nServer: stargate\r\n\r\n")


@pytest.mark.parametrize("kind", ["list", "generator"])
def test_bytes_like_chunks_are_taken_alike(kind: str) -> None:
    """A bytearray was refused in a one-item list (500) and sent from a generator."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        chunks = [bytearray(b"ab"), memoryview(b"cd")][: 1 if kind == "list" else 2]
        return chunks if kind == "list" else iter(chunks)

    response, data = run(app, make_request())
    assert response.status_code == 200 and not response.failed
    assert data.endswith(b"ab" if kind == "list" else b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n")


def test_an_apps_repeated_content_length_is_sent_once() -> None:
    """llhttp (Node's parser) refuses a response with two Content-Length fields, even
    equal ones."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "3"), ("content-length", "3")])
        return [b"abc"]

    _, data = run(app, make_request())
    assert data.lower().count(b"content-length") == 1 and data.endswith(b"\r\n\r\nabc")


def test_head_answered_without_a_body_gets_no_invented_length() -> None:
    """WebOb (Pyramid's) answers HEAD with an empty body whatever the GET's length: a
    Content-Length of 0 would be false (RFC 9110 section 8.6), so none is sent."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return []

    response, data = run(app, make_request("HEAD"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\n")
    assert b"Content-Length" not in data and b"Transfer-Encoding" not in data
    assert response.keep_alive  # a HEAD response never has a body to delimit
    _, data = run(app, make_request("GET"))
    assert b"Content-Length: 0\r\n" in data  # a GET's empty body is a length of 0


def test_app_connection_close_header_ends_keep_alive() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Connection", "close")])
        return [b"x"]

    response, _ = run(app, make_request())
    assert not response.keep_alive


def test_exception_before_start_response_is_a_500() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise ValueError("broken")

    response, data = run(app, make_request())
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert data.endswith(b"\r\n\r\nInternal Server Error\n")
    assert not response.keep_alive


def test_exception_after_the_head_closes_the_connection_and_calls_close() -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"partial"
            raise ValueError("mid-stream")

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Body:
        start_response("200 OK", [])
        return Body()

    response, data = run(app, make_request())
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"7\r\npartial\r\n")  # no terminating chunk: the client sees the cut
    assert not response.keep_alive
    assert closed == [True]


class AppCancelled(BaseException):
    """What a library's timeout or cancellation looks like (gevent's, trio's): not an
    Exception."""


@pytest.mark.parametrize("error", [AppCancelled, GeneratorExit, asyncio.CancelledError])
def test_a_base_exception_of_the_app_is_a_logged_500(
    error: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """PEP 3333's error handling holds for every failure of the app, not only Exception's:
    it used to get no response at all (the connection closed on nothing) and no log."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise error()

    response, data = run(app, make_request())
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert not response.keep_alive
    assert "WSGI application error on GET /" in caplog.text


def test_a_base_exception_after_the_head_cuts_the_response() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        raise AppCancelled

    response, data = run(app, make_request())
    assert data.endswith(b"7\r\npartial\r\n")  # no terminating chunk
    assert response.cut_short  # the channel resets the connection: the cut shows
    assert not response.keep_alive


@pytest.mark.parametrize("chunks", [[b"whole"], [b"who", b"le"]])
def test_a_close_failing_after_a_whole_response_keeps_the_response(
    chunks: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """The response was complete: the failure is logged and the connection closes after
    it, gracefully.  It used to count as a response cut short: reset, which can discard the
    response's last bytes still in the kernel's buffer."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> ClosingBody:
        start_response("200 OK", [("Content-Length", "5")])
        return ClosingBody(chunks, RuntimeError)

    response, data = run(app, make_request())
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n\r\nwhole")
    assert not response.cut_short
    assert not response.failed
    assert not response.keep_alive
    assert "in close() after the response to GET /" in caplog.text


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt])
def test_a_close_ending_the_process_after_a_whole_response_keeps_the_response(
    error: type[BaseException],
) -> None:
    """The server stops (the exception goes on), but the response is whole: no reset."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> ClosingBody:
        start_response("200 OK", [("Content-Length", "5")])
        return ClosingBody([b"who", b"le"], error)

    sink = Sink()
    response = WSGIResponse(sink, make_request())
    with pytest.raises(error):
        run_wsgi(app, environ_of(make_request()), response)
    assert bytes(sink.data).endswith(b"\r\n\r\nwhole")
    assert not response.cut_short
    assert not response.keep_alive


def test_a_close_failing_after_a_cut_response_still_cuts_it() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> ClosingBody:
        start_response("200 OK", [("Content-Length", "10")])
        return ClosingBody([b"short"], RuntimeError)

    response, data = run(app, make_request())
    assert data.endswith(b"\r\n\r\nshort")
    assert not response.keep_alive  # five bytes of ten: the client cannot go on


def test_a_close_failing_before_the_head_is_a_500() -> None:
    class NeverStarts(ClosingBody):
        def __iter__(self) -> Iterator[bytes]:
            raise ValueError("no body")

    def app(environ: dict[str, Any], start_response: StartResponse) -> ClosingBody:
        return NeverStarts([], RuntimeError)

    response, data = run(app, make_request())
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert response.failed


def test_start_response_twice_without_exc_info_is_an_error() -> None:
    response = WSGIResponse(Sink(), make_request())
    response.start_response("200 OK", [])
    with pytest.raises(AssertionError):
        response.start_response("500 Internal Server Error", [])


def test_start_response_with_exc_info_after_the_head_reraises() -> None:
    response = WSGIResponse(Sink(), make_request())
    response.start_response("200 OK", [])
    response.write(b"sent")
    try:
        raise KeyError("original")
    except KeyError:
        info = sys.exc_info()
        with pytest.raises(KeyError):
            response.start_response("500 Internal Server Error", [], info)  # type: ignore[arg-type]


def test_start_response_with_exc_info_before_the_head_replaces_the_status() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        try:
            raise KeyError("late")
        except KeyError:
            start_response("503 Service Unavailable", [], sys.exc_info())
        return [b"sorry"]

    _, data = run(app, make_request())
    assert data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert data.endswith(b"sorry")


def test_simple_response() -> None:
    data = simple_response(404, "nope", keep_alive=True, headers=[("X-A", "b")])
    assert without_date(data) == (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 5\r\nServer: stargate\r\nX-A: b\r\nConnection: keep-alive\r\n\r\nnope\n"
    )


# -- what the app hands over is checked -----------------------------------------------------------


def check_environ(environ: dict[str, Any]) -> None:
    """wsgiref's validator checks the environ it is called with (and raises)."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("204 No Content", [])
        return []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        return lambda data: None

    checked: Any = validator(cast(Any, app))
    iterator = checked(environ, start_response)
    assert list(iterator) == []
    iterator.close()


def test_environs_pass_wsgiref_validation() -> None:
    """The environs the server builds for each target form pass the standard library's
    check."""
    for request in (
        make_request(),
        make_request("POST", "/a%20b?x", headers=[("Content-Type", "a/b")], body=b"xyz"),
        make_request("OPTIONS", "*"),
        make_request("GET", "http://example.com:81/p?q", headers=[("Host", "other")]),
        make_request("GET", "/x#fragment", version="1.0"),
    ):
        check_environ(environ_of(request))


def test_environ_of_an_absolute_form_target() -> None:
    """RFC 9112 section 3.2.2: the target's authority replaces the Host header."""
    environ = environ_of(
        make_request("GET", "http://example.com:8080/a%2Fb?q=1#f", headers=[("Host", "evil")])
    )
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/a/b", "q=1")
    assert environ["HTTP_HOST"] == "example.com:8080"
    assert environ["RAW_URI"] == "http://example.com:8080/a%2Fb?q=1#f"


def test_environ_of_the_asterisk_and_a_fragment() -> None:
    assert environ_of(make_request("OPTIONS", "*"))["PATH_INFO"] == ""
    environ = environ_of(make_request("GET", "/x?y#frag"))
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/x", "y")


def test_environ_ignores_underscore_twins_of_content_headers() -> None:
    environ = environ_of(
        make_request(
            "POST",
            headers=[
                ("Content_Length", "1"),
                ("Content_Type", "application/evil"),
                ("Content-Length", "999"),  # the body's actual size wins: the parser framed it
            ],
            body=b"abc",
        )
    )
    assert environ["CONTENT_LENGTH"] == "3"
    assert "CONTENT_TYPE" not in environ
    assert not [key for key in environ if "CONTENT" in key and key.startswith("HTTP_")]


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("200 OK\r\nX-Injected: 1", []),
        ("200 OK", [("X-A", "b\r\nX-Injected: 1")]),
        ("200 OK", [("X-A\r\nX-Injected", "1")]),
        ("200 OK", [("X-A", "\u20ac")]),
        ("200 OK", [("Transfer-Encoding", "chunked")]),
        ("200 OK", [("Content-Length", "5"), ("Content-Length", "6")]),
        ("2000 OK", []),
    ],
)
def test_invalid_response_is_a_500_that_closes(status: str, headers: list[tuple[str, str]]) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response(status, headers)
        return [b"body"]

    response, data = run(app, make_request())
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"X-Injected" not in data and b"body" not in data
    assert b"\r\nConnection: close\r\n" in data
    assert response.failed and not response.keep_alive


def test_body_that_is_not_bytes_is_a_500() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[Any]:
        start_response("200 OK", [])
        yield "text, not bytes"

    _, data = run(app, make_request())
    assert data.startswith(b"HTTP/1.1 500 ")


def test_excess_beyond_content_length_is_cut_and_keeps_alive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "4")])
        yield b"ab"
        yield b"cdEXCESS"
        yield b"MORE"

    response, data = run(app, make_request())
    assert data.endswith(b"Content-Length: 4\r\nServer: stargate\r\n\r\nabcd")
    assert response.keep_alive  # the response is complete and framed: the next can follow
    warnings = [r for r in caplog.records if "more than its Content-Length" in r.getMessage()]
    assert len(warnings) == 1  # once per response, not per chunk


def test_short_body_ends_keep_alive(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        yield b"short"

    response, data = run(app, make_request())
    assert data.endswith(b"\r\n\r\nshort")
    assert not response.keep_alive
    assert any("closing the connection" in r.getMessage() for r in caplog.records)


def test_short_body_of_a_head_request_is_no_error() -> None:
    """HEAD sends the length a GET would have, and no body: nothing is short."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        return []

    response, data = run(app, make_request("HEAD"))
    assert data.endswith(b"Content-Length: 10\r\nServer: stargate\r\n\r\n")
    assert response.keep_alive


class RefusingSink:
    """A sink that refuses writes larger than ``limit`` (as an upgrade's held answer does)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def write_from_thread(self, data: bytes) -> None:
        if len(self.data) + len(data) > self.limit:
            raise ValueError("too large to hold")
        self.data += data


@pytest.mark.parametrize("streamed", [False, True])
def test_head_refused_by_the_sink_still_allows_the_500(streamed: bool) -> None:
    """The head counts as sent only once the sink took it: if the sink refuses the first
    write, the failure is still answered with a 500 rather than nothing."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        body = [b"x" * 5000]
        return iter(body) if streamed else body

    sink = RefusingSink(1000)
    request = make_request()
    response = WSGIResponse(sink, request)
    run_wsgi(app, environ_of(request), response)
    data = without_date(bytes(sink.data))
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"chunked" not in data  # the refused head's framing is not reused
    assert data.endswith(
        b"Content-Length: 22\r\nConnection: close\r\nServer: stargate\r\n\r\n"
        b"Internal Server Error\n"
    )
    assert response.failed and response.status_code == 500


def test_accepted_upgrade_without_start_response_writes_nothing() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        return []

    sink = Sink()
    request = make_request()
    response = WSGIResponse(sink, request)
    response.upgrade_accepted = lambda: True
    run_wsgi(app, environ_of(request), response)
    assert sink.data == b"" and not response.failed


@pytest.mark.parametrize("body", [[b"whole"], iter([b"stre", b"amed"])])
def test_write_after_the_response_is_complete_raises(body: Iterable[bytes]) -> None:
    """A ``write`` kept by the app and called once its response is whole would append to
    the connection what the client reads as the next response."""
    kept: list[Callable[[bytes], None]] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        kept.append(start_response("200 OK", []))
        return body

    sink = Sink()
    request = make_request()
    response = WSGIResponse(sink, request)
    run_wsgi(app, environ_of(request), response)
    sent = bytes(sink.data)
    with pytest.raises(InvalidResponse, match="after the response was complete"):
        kept[0](b"HTTP/1.1 200 OK\r\n\r\nforged")
    assert bytes(sink.data) == sent


def test_concurrent_writes_send_one_head_and_whole_chunks() -> None:
    """An app whose producer threads call ``write`` at once gets one head and each chunk
    whole (a second head in the body is a forged response).  A tiny switch interval makes
    the threads interleave inside ``write``; without the lock about a quarter of the rounds
    sent two heads or more."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(100):
            sink = Sink()
            response = WSGIResponse(sink, make_request())
            write = response.start_response("200 OK", [])
            barrier = threading.Barrier(8)

            def produce(
                write: Callable[[bytes], None] = write, barrier: threading.Barrier = barrier
            ) -> None:
                barrier.wait(TIMEOUT)
                write(b"0123456789")

            threads = [threading.Thread(target=produce) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(TIMEOUT)
            data = bytes(sink.data)
            assert data.count(b"HTTP/1.1 ") == 1, data
            body = data.partition(b"\r\n\r\n")[2]
            assert body == b"a\r\n0123456789\r\n" * 8
    finally:
        sys.setswitchinterval(previous)
