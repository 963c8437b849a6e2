"""``gunicorn -k stargate.gunicorn.Worker``: Stargate's server in each gunicorn worker.

gunicorn's arbiter does the processes (binding, forking, ``-w``, reload on ``SIGHUP``,
``TTIN``/``TTOU``, restarting dead or silent workers); each worker runs, on one event loop
(uvloop when installed), one :class:`~stargate.server.Server` on every socket gunicorn hands it, and
the process's group :class:`~stargate.groups.Hub` with its broker, as ``stargate serve
--workers`` does (:mod:`stargate.workers`).  HTTP goes to the WSGI app in a thread
pool, WebSocket upgrades stay on the same port.

The worker follows gunicorn's contract (``gunicorn/workers/base.py``):

* it calls gunicorn's :meth:`~gunicorn.workers.base.Worker.notify` from a loop timer (at
  least every second), so ``--timeout`` kills a worker whose event loop is stuck;
* ``SIGTERM`` is a graceful stop: no new connections, WebSockets closed with 1001 (going
  away), in-flight HTTP answered, all within ``--graceful-timeout``; ``SIGQUIT`` and
  ``SIGINT`` (gunicorn's quick stop) take the same steps within :data:`QUICK_STOP` seconds,
  since gunicorn kills a worker 2 s after a quick stop interrupts a graceful one;
  ``SIGUSR1`` reopens the log files; ``SIGABRT`` (the arbiter's timeout) exits at once;
* it stops by itself when its arbiter dies (the parent pid changes), and after
  ``--max-requests`` (plus jitter) requests, so that the arbiter starts a fresh one.

gunicorn's settings that have a Stargate equivalent (:func:`worker_settings`):

==============================  ==============================================================
gunicorn                        Stargate
==============================  ==============================================================
``bind`` (several, unix too)    the sockets served, all by one Server (its limits cover them all)
``certfile``/``keyfile`` ...    TLS through gunicorn's own context (``ca_certs``,
                                ``cert_reqs``, ``ciphers``, the ``ssl_context`` hook), ALPN
                                pinned to ``http/1.1``
``threads``                     ``threads``: the WSGI thread pool (gunicorn's default is 1)
``worker_connections``          ``max_connections`` (HTTP and WebSocket connections alike)
``keepalive``                   ``keepalive_timeout`` (idle keep-alive HTTP connections)
``accesslog``                   ``access_log``: Stargate's access lines (requests, WebSocket
                                opens, closes and refusals) go to gunicorn's access log, in
                                Stargate's format (``STARGATE_ACCESS_LOG_FORMAT``)
``forwarded_allow_ips``         ``trusted_proxies``: from these peers Stargate believes
                                ``X-Forwarded-For/Proto/Host`` (or ``Forwarded``, see
                                ``proxy_headers``) for the client's address, scheme and
                                host and the Origin check, where gunicorn believes only
                                the scheme headers (its default
                                trusts 127.0.0.1 and ::1: nginx on the same host)
``graceful_timeout``            ``shutdown_timeout`` (less a margin to exit in time)
``limit_request_fields``        ``max_headers``
``limit_request_line``,         ``max_header_size``: Stargate bounds the whole request head,
``limit_request_field_size``    not each line.  If any of the three ``limit_request_*`` is
                                set away from gunicorn's default, the head may be as large as
                                gunicorn's own whole-head budget (line + fields x (field size
                                + 2), gunicorn's values for 0 = unlimited); at gunicorn's
                                defaults (about 800 KiB of head) Stargate keeps its 16 KiB.
                                A request over ``limit_request_fields`` gets 431; a single
                                long line only counts against the whole head.
==============================  ==============================================================

Stargate's own settings come from environment variables, set in the environment or with
gunicorn's ``-e``/``raw_env``: ``STARGATE_<NAME>`` for each setting ``name`` of
:mod:`stargate.settings` (the names of ``stargate serve``'s options and ini keys, converted
there), e.g. ``STARGATE_BROKER`` (the group broker URL), ``STARGATE_ALLOWED_ORIGINS``,
``STARGATE_MAX_MESSAGE_SIZE``, except the settings gunicorn carries (:data:`GUNICORN_SETS`:
``STARGATE_THREADS`` is refused, name gunicorn's ``threads``).  An unknown name or a bad
value stops gunicorn at start with one line naming the variable.

More than one worker (``-w 2`` and up) needs a broker that spans processes
(``STARGATE_BROKER=redis://...``): with the in-memory broker every worker would have groups of
its own, and a group message would silently reach only the clients of the worker that sent
it.  That is refused at start, as ``stargate serve --workers`` refuses it, unless the broker
is named in-memory explicitly (``STARGATE_BROKER=memory://``), for apps that use no groups
across connections: then it is a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .extras import install_hint

try:
    from gunicorn import sock as gunicorn_sock  # type: ignore[import-untyped]
    from gunicorn.workers.base import Worker as _GunicornWorker  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"stargate.gunicorn needs gunicorn: {install_hint('gunicorn')} ({exc})"
    ) from exc

from . import groups
from .brokers import BrokerConfigError, make_broker
from .server.app import Server, new_event_loop
from .server.config import ServerConfig
from .server.wsgi import WSGIApp
from .settings import SERVER_KEYS, SettingsError, server_config, unknown_settings
from .targets import TargetError, ini_server_settings
from .workers import exit_now, leave_stuck_threads_at_exit

__all__ = ["GUNICORN_SETS", "QUICK_STOP", "Worker", "WorkerSettings", "worker_settings"]

#: Stargate settings that gunicorn's own settings carry under gunicorn: a ``STARGATE_``
#: variable for one is refused, naming gunicorn's setting (one source of truth each).
GUNICORN_SETS: Mapping[str, str] = {
    "host": "bind (-b)",
    "port": "bind (-b)",
    "listen": "bind (-b)",
    "certfile": "certfile",
    "keyfile": "keyfile",
    "workers": "workers (-w)",
    "threads": "threads",
    "max_connections": "worker_connections",
    "keepalive_timeout": "keepalive",
    "shutdown_timeout": "graceful_timeout",
    "max_headers": "limit_request_fields",
    "trusted_proxies": "forwarded_allow_ips",
    "access_log": "accesslog (--access-logfile)",
}
#: Variables of the ``STARGATE_`` namespace that are not settings.
_NOT_SETTINGS = frozenset({"STARGATE_WORKER", "STARGATE_CHROMIUM"})
_PREFIX = "STARGATE_"

#: Seconds a quick stop (``SIGQUIT``, ``SIGINT``) may take: under the 2 s gunicorn allows
#: before it kills a worker whose graceful stop a quick one interrupted.
QUICK_STOP = 1.0
#: The longest time between two heartbeats (and parent checks).
_TICK = 1.0
#: How long stopping the group broker may take at exit.
_HUB_CLOSE = 2.0

# gunicorn's own bounds of its limit_request_* settings (gunicorn/http/message.py).
_GUNICORN_MAX_REQUEST_LINE = 8190
_GUNICORN_UNLIMITED_REQUEST_LINE = 1024 * 1024
_GUNICORN_MAX_HEADERS = 32768
_GUNICORN_MAX_FIELD_SIZE = 8190
_GUNICORN_DEFAULT_LIMITS = (4094, 100, 8190)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What a worker serves with: the server's settings and the group broker."""

    #: gunicorn's settings and the ``STARGATE_*`` variables, as one server configuration.
    config: ServerConfig
    #: ``STARGATE_BROKER``; ``None``: the in-memory broker, not asked for by name.
    broker_url: str | None
    #: What the arbiter should warn about (settings it leaves aside).
    notes: tuple[str, ...] = ()


def worker_settings(cfg: Any, environ: Mapping[str, str]) -> WorkerSettings:
    """gunicorn's settings ``cfg`` and the ``STARGATE_*`` variables of ``environ`` (over the
    ``[server:main]`` section of ``--paste``'s .ini file) -> the worker's
    :class:`WorkerSettings`; :class:`~stargate.settings.SettingsError` names a variable,
    an .ini key or a gunicorn setting it cannot use.

    ``STARGATE_<NAME>`` is the setting ``name`` of :mod:`stargate.settings` (converted
    there, as for the command line and the ini), except those in :data:`GUNICORN_SETS`;
    then gunicorn's settings are mapped (the module's table)."""
    values: dict[str, str] = {}
    labels: dict[str, str] = {}
    notes: list[str] = []
    paste = getattr(cfg, "paste", None)
    if paste:
        # --paste production.ini: its [server:main] is stargate's settings as under pserve
        # (allowed_origins, limits ...), below the variables; where to listen, workers and
        # what else gunicorn's own settings carry stay gunicorn's.
        file = _paste_file(cfg, paste)
        where = f"{file} [server:main]"
        try:
            section = ini_server_settings(file, global_conf=dict(cfg.paste_global_conf or {}))
        except TargetError as exc:
            raise SettingsError(str(exc)) from None
        owned = sorted(key for key in section if key in GUNICORN_SETS)
        if owned:
            notes.append(
                f"{where}: {', '.join(owned)} ignored under gunicorn (its own settings "
                f"carry them: {', '.join(sorted({GUNICORN_SETS[key] for key in owned}))})"
            )
        for key, value in section.items():
            if key not in GUNICORN_SETS:
                values[key], labels[key] = value, f"{where} {key}"
    for variable, value in environ.items():
        if not variable.startswith(_PREFIX) or variable in _NOT_SETTINGS:
            continue
        name = variable[len(_PREFIX) :].lower()
        if name in GUNICORN_SETS:
            raise SettingsError(
                f"{variable}: set gunicorn's {GUNICORN_SETS[name]} instead, under gunicorn"
            )
        if name not in SERVER_KEYS:
            known = sorted(SERVER_KEYS - set(GUNICORN_SETS))
            raise unknown_settings([variable], [_variable(key) for key in known])
        if value.strip():
            values[name] = value
            labels.pop(name, None)

    def label(name: str) -> str:
        return labels.get(name) or _variable(name)

    try:
        config = server_config(values, label=label)
    except BrokerConfigError as exc:  # an unknown scheme, the redis package missing
        raise SettingsError(f"{label('broker')}: {exc}") from None

    max_headers, head_size = _head_limits(
        int(cfg.limit_request_line),
        int(cfg.limit_request_fields),
        int(cfg.limit_request_field_size),
    )
    graceful = max(0.0, float(cfg.graceful_timeout))
    config = replace(
        config,
        threads=_positive(cfg.threads, "threads"),
        max_connections=_positive(cfg.worker_connections, "worker_connections"),
        keepalive_timeout=max(0.0, float(cfg.keepalive)),
        # Leave a margin to stop the hub and exit before gunicorn's kill.
        shutdown_timeout=graceful - min(1.0, graceful / 10),
        max_headers=max_headers,
        max_header_size=config.max_header_size
        if "max_header_size" in values or head_size is None
        else head_size,
        ssl_context=_ssl_context(cfg),
        trusted_proxies=tuple(str(entry) for entry in cfg.forwarded_allow_ips),
        access_log=cfg.accesslog is not None,
    )
    return WorkerSettings(config, config.broker_url, tuple(notes))


def _paste_file(cfg: Any, paste: str) -> str:
    """The .ini file of ``--paste``: gunicorn makes it absolute against the directory it
    was started in, before ``--chdir`` (its process name is that path); ours must be the
    same file."""
    file = paste.partition("#")[0]
    started_with = str(getattr(cfg, "default_proc_name", "") or "")
    if (
        not os.path.isabs(file)
        and os.path.isabs(started_with)
        and os.path.basename(started_with) == os.path.basename(file)
    ):
        return started_with
    return file


def _variable(name: str) -> str:
    """How a setting is spelled here: ``max_body_size`` -> ``STARGATE_MAX_BODY_SIZE``."""
    return _PREFIX + name.upper()


def _head_limits(line: int, fields: int, field_size: int) -> tuple[int, int | None]:
    """``(max_headers, max_header_size)`` for gunicorn's ``limit_request_*``.

    gunicorn bounds the request line and each header line apart; Stargate bounds the field
    count and the whole head.  The count maps as is (0 means gunicorn's maximum).  The head
    size is gunicorn's own whole-head budget when any limit was set away from gunicorn's
    default, else ``None`` (Stargate's default stands: gunicorn's defaults would let one
    request head take about 800 KiB)."""
    max_headers = fields if 0 < fields <= _GUNICORN_MAX_HEADERS else _GUNICORN_MAX_HEADERS
    if (line, fields, field_size) == _GUNICORN_DEFAULT_LIMITS:
        return max_headers, None
    if line == 0:
        line = _GUNICORN_UNLIMITED_REQUEST_LINE
    elif line < 0 or line > _GUNICORN_MAX_REQUEST_LINE:
        line = _GUNICORN_MAX_REQUEST_LINE
    if field_size <= 0:
        field_size = _GUNICORN_MAX_FIELD_SIZE
    return max_headers, line + 2 + max_headers * (field_size + 2) + 2


def _ssl_context(cfg: Any) -> ssl.SSLContext | None:
    """gunicorn's TLS context for ``certfile``/``keyfile`` (its ``ca_certs``, ``cert_reqs``,
    ``ciphers`` and ``ssl_context`` hook included), speaking HTTP/1.1 only in ALPN."""
    if not cfg.is_ssl:
        return None
    try:
        context: ssl.SSLContext = gunicorn_sock.ssl_context(cfg)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"certfile/keyfile: cannot load {cfg.certfile!r}: {exc}") from None
    context.set_alpn_protocols(["http/1.1"])  # no h2: Stargate speaks HTTP/1.1
    return context


def _positive(value: Any, name: str) -> int:
    number = int(value)
    if number <= 0:
        raise SettingsError(f"gunicorn's {name} must be positive for this worker, not {value!r}")
    return number


def _refuse_split_groups(cfg: Any, settings: WorkerSettings) -> str | None:
    """More than one worker with the in-memory broker: refused unless asked for by name,
    then the warning to log."""
    workers = int(cfg.workers)
    if workers <= 1 or make_broker(settings.broker_url).spans_processes:
        return None
    if settings.broker_url is None:
        raise SettingsError(
            f"{workers} workers need a group broker that spans processes, e.g. "
            "-e STARGATE_BROKER=redis://127.0.0.1:6379/0: with the in-memory broker every "
            "worker has groups of its own and a group message reaches only the clients of "
            "the worker that sent it (-e STARGATE_BROKER=memory:// if the app uses no groups)"
        )
    return (
        f"stargate: {workers} workers with the in-memory broker (STARGATE_BROKER="
        f"{settings.broker_url}): each worker has groups of its own"
    )


def _share_gunicorn_logs(log: Any) -> None:
    """Stargate's loggers write where gunicorn's do (``--error-logfile``,
    ``--access-logfile``), unless logging was configured for them or for the root."""
    if logging.getLogger().handlers:
        return
    for name, attribute in (("stargate", "error_log"), ("stargate.access", "access_log")):
        source = getattr(log, attribute, None)
        target = logging.getLogger(name)
        if not isinstance(source, logging.Logger) or target.handlers or not source.handlers:
            continue
        for handler in source.handlers:
            target.addHandler(handler)
        target.setLevel(source.level)
        target.propagate = False
        if name == "stargate.access" and not any(isinstance(f, _Stamped) for f in target.filters):
            target.addFilter(_Stamped())


class _Stamped(logging.Filter):
    """gunicorn's access handlers write the bare message (its own lines carry their time
    in ``%(t)s``): a text access line gets gunicorn's time stamp in front.  A JSON line
    carries its own ``time``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("{"):
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(record.created))
            record.msg, record.args = f"[{stamp}] {message}", ()
        return True


class Worker(_GunicornWorker):  # type: ignore[misc]
    """A gunicorn worker serving the app with Stargate: ``gunicorn -k stargate.gunicorn.Worker``."""

    # Set by gunicorn's base class (untyped): what this class reads and writes.
    #: The WSGI app gunicorn loaded (counting requests when ``--max-requests`` is set).
    wsgi: WSGIApp
    #: gunicorn's flag: ``False`` once the worker is to stop.
    alive: bool
    #: gunicorn's ``--max-requests`` plus jitter (``sys.maxsize``: no limit).
    max_requests: int

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """In the arbiter, before any fork: refuse settings the workers could not use, with
        one line (gunicorn prints it and exits 1)."""
        try:
            settings = worker_settings(cfg, os.environ)
            warning = _refuse_split_groups(cfg, settings)
        except SettingsError as exc:
            raise RuntimeError(f"stargate: {exc}") from None
        for note in (*settings.notes, *([warning] if warning is not None else [])):
            log.warning(note)
        config = settings.config
        log.info(
            "stargate: %d WSGI thread(s) and up to %d connections per worker, "
            "keep-alive %gs, group broker %s",
            config.threads,
            config.max_connections,
            config.keepalive_timeout,
            make_broker(settings.broker_url),
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The worker's one event loop (uvloop when installed), made in ``init_process``.
        self.loop: asyncio.AbstractEventLoop | None = None
        #: What it serves with, read in ``load_wsgi``.
        self.settings: WorkerSettings | None = None
        #: The process's group hub, configured with the broker before the app is loaded.
        self.hub: groups.Hub | None = None
        #: The server on all of gunicorn's sockets, once started (one: a list for shutdown).
        self.servers: list[Server] = []
        self._quick = False
        self._wake: asyncio.Event | None = None
        self._requests = itertools.count(1)

    # -- boot (gunicorn calls init_process, which calls init_signals, load_wsgi, run) ----------

    def init_process(self) -> None:
        """The event loop first: the signal handlers are installed on it."""
        # The metrics' worker label: gunicorn's workers have no slot number, a pid is unique.
        os.environ["STARGATE_WORKER"] = str(os.getpid())
        self.loop = new_event_loop()
        asyncio.set_event_loop(self.loop)
        _share_gunicorn_logs(self.log)
        super().init_process()

    def init_signals(self) -> None:
        """gunicorn's signals as the module says, handled on the event loop (SIGABRT
        excepted: the arbiter sends it when the loop is stuck)."""
        loop = self.loop
        assert loop is not None
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        loop.add_signal_handler(signal.SIGTERM, self._stop, False)
        loop.add_signal_handler(signal.SIGQUIT, self._stop, True)
        loop.add_signal_handler(signal.SIGINT, self._stop, True)
        loop.add_signal_handler(signal.SIGUSR1, self.log.reopen_files)
        loop.add_signal_handler(signal.SIGWINCH, lambda: None)
        # Not through the loop: the arbiter sends SIGABRT when the loop is stuck.
        signal.signal(signal.SIGABRT, self.handle_abort)

    def load_wsgi(self) -> None:
        """The settings (with ``raw_env`` applied) and the process's hub with its broker,
        then the app: its module sees the configured hub when it creates a ``Group``."""
        settings = self.settings = worker_settings(self.cfg, os.environ)
        _refuse_split_groups(self.cfg, settings)
        self.hub = groups.configure(settings.broker_url)
        super().load_wsgi()
        if self.max_requests < sys.maxsize:
            self.wsgi = self._counting(self.wsgi)

    def _counting(self, app: WSGIApp) -> WSGIApp:
        """``app`` counting its requests for ``max_requests`` (one counter step each)."""
        count = self._requests
        limit = self.max_requests

        def counted(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            if next(count) == limit and self.loop is not None:
                self.loop.call_soon_threadsafe(self._retire)
            return app(environ, start_response)

        return counted

    # -- running ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve on every socket gunicorn handed over until told to stop (a signal, the
        arbiter gone, ``max_requests`` reached), then stop gracefully."""
        loop = self.loop
        assert loop is not None
        code = 0  # what the arbiter's code exits with after run(), as it does below
        try:
            with asyncio.Runner(loop_factory=lambda: loop) as runner:
                runner.run(self._serve())
            for server in self.servers:
                server.reraise_exit()
        except SystemExit as exc:  # the interpreter's own rule for its exit status
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            raise
        except BaseException:
            code = 255  # gunicorn's sys.exit(-1)
            raise
        finally:
            # App threads past the shutdown would hold the process until the arbiter's
            # timeout kills it (no new worker meanwhile for max_requests or HUP).
            leave_stuck_threads_at_exit(code)

    async def _serve(self) -> None:
        assert self.settings is not None and self.hub is not None
        self._wake = asyncio.Event()
        config = self.settings.config
        server = Server(self.wsgi, config)
        server.multiprocess = int(self.cfg.workers) > 1
        hub = self.hub
        server.state.broker_health = lambda: (hub.gaps, hub.broker_connected)
        # A handler's sys.exit(): this worker stops as for max_requests, and exits with it.
        server.state.stop = lambda: self._stop(False)
        await server.start([listener.sock for listener in self.sockets])
        self.servers.append(server)
        await hub.start()
        loop = asyncio.get_running_loop()
        self.log.info(
            "stargate: worker %s serving on %s (%s loop)",
            self.pid,
            ", ".join(str(listener) for listener in self.sockets),
            type(loop).__module__.partition(".")[0],
        )
        try:
            while self.alive:
                self.notify()
                if self.ppid != os.getppid():
                    self.log.info(
                        "stargate: arbiter %s gone: worker %s stopping", self.ppid, self.pid
                    )
                    self.alive = False
                    break
                await self._sleep()
            await self._shutdown()
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.hub.close(), _HUB_CLOSE)

    async def _sleep(self) -> None:
        """Until the next heartbeat, or a signal."""
        wake = self._wake
        assert wake is not None
        interval = _TICK if not self.timeout else min(_TICK, float(self.timeout))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), interval)
        wake.clear()

    async def _shutdown(self) -> None:
        """Every server's graceful stop, the heartbeat going on (a slow stop is not a stuck
        worker); cut short by a quick stop."""
        loop = asyncio.get_running_loop()
        assert self.settings is not None
        graceful = self.settings.config.shutdown_timeout
        timeout = min(graceful, QUICK_STOP) if self._quick else graceful
        stopping: asyncio.Future[Any] = asyncio.gather(
            *(server.shutdown(timeout) for server in self.servers)
        )
        quick_deadline: float | None = None
        while not stopping.done():
            self.notify()
            if self._quick:
                if quick_deadline is None:
                    quick_deadline = loop.time() + QUICK_STOP
                elif loop.time() >= quick_deadline:
                    self.log.warning("stargate: quick stop: leaving connections behind")
                    stopping.cancel()
                    break
            sleeper: asyncio.Future[Any] = asyncio.ensure_future(self._sleep())
            await asyncio.wait({stopping, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping

    # -- signals ---------------------------------------------------------------------------------

    def _stop(self, quick: bool) -> None:
        """SIGTERM (graceful) or SIGQUIT/SIGINT (quick); on the loop."""
        if quick:
            if not self._quick:
                self.cfg.worker_int(self)
            self._quick = True
        self.alive = False
        if self._wake is not None:
            self._wake.set()

    def handle_abort(self, sig: int, frame: Any) -> None:
        """SIGABRT: the arbiter found the loop stuck past ``--timeout`` (a handler that
        blocks it): exit at once.  gunicorn's own raises SystemExit wherever the loop is
        stuck, which a handler may catch, or the server take for a handler's exit and
        stop gracefully, as if nothing were wrong, while no other worker replaces it."""
        self.alive = False
        self.log.critical("stargate: worker %s timed out (its loop was blocked): exiting", self.pid)
        try:
            self.cfg.worker_abort(self)
        finally:  # a failing hook must not land in the blocked handler either
            exit_now(1)

    def _retire(self) -> None:
        """``max_requests`` reached: a graceful stop, the arbiter starts a new worker."""
        if self.alive:
            self.log.info(
                "stargate: max requests (%d) reached: worker %s restarting",
                self.max_requests,
                self.pid,
            )
            self._stop(False)
