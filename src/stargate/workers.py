"""Serving processes: ``stargate serve`` in one process or several (``--workers N``).

The top of the house: it imports the server, the groups and the target importer, and
nothing imports it but the command line (:mod:`stargate.cli`) and PasteDeploy's server
factory (:mod:`stargate.pyramid.paste`).

:func:`bind` opens every listening socket once (``listen``: one or more addresses); with
one worker, :func:`serve_worker` serves on them in this process.  With more,
:func:`run_workers` binds them in a supervisor process and forks ``N`` workers that all
accept on them (one shared accept queue per address: a worker that dies loses no queued
connection, unlike one SO_REUSEPORT socket per worker).  Each worker runs a
:class:`~stargate.server.Server` on all of them and the process's group
:class:`~stargate.groups.Hub` with the broker of ``broker_url``, on one event loop.  The
supervisor restarts a worker that dies (with a backoff when workers die young, so a broken
app does not fork in a tight loop), and on SIGINT, SIGTERM or SIGHUP stops every worker
gracefully: WebSockets closed with 1001, in-flight requests answered, within
``shutdown_timeout``; stragglers are killed after it.

The supervisor never imports the app: a target string (``module:attribute`` or an ``.ini``
file) is imported by each worker after the fork, so that whatever the app creates at import
time (a module-level ``Group`` and the hub behind it, threads, connections) is the worker's
own.  A worker that cannot load the target (a missing module or attribute, an exception at
import, an object that is not an app) reports one line and exits with
:data:`EXIT_LOAD_FAILED`; the supervisor then stops the other workers and raises
:class:`~stargate.targets.TargetError` with that line instead of restarting workers that
would fail the same way.  So the supervisor says it is ready (``ready``: the command
line's ``stargate serve: http://...`` line) only once a worker has loaded the app and
serves, which the worker tells it through a pipe: a load error never follows a ready line.

More than one worker needs a broker that spans processes (``redis://...``): with the
in-memory broker each worker would have groups of its own, and a group message would
silently reach only the clients of the worker that sent it, so that is refused.  Each
worker starts its broker with its server: a Redis that cannot be reached is reported then
(a warning from the broker, URL redacted), and served anyway: local delivery works, and
the broker connects by itself once Redis is up.  POSIX only (``fork``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .groups import Hub, configure
from .server.access import json_lines_alone
from .server.app import Server, new_event_loop, stop_signals
from .server.config import ServerConfig
from .server.routing import Routes
from .server.state import POOL_THREAD_NAMES
from .server.wsgi import WSGIApp
from .settings import Address, check_workers
from .targets import TargetError, check_target, load_app

__all__ = [
    "EXIT_LOAD_FAILED",
    "ListenError",
    "Listening",
    "banner",
    "bind",
    "run_workers",
    "serve_worker",
]

logger = logging.getLogger("stargate.workers")

AppTarget = str | WSGIApp | Routes

#: A worker that dies sooner than this after its start is "dying young": restarts back off.
_YOUNG = 1.0
_MAX_RESTART_DELAY = 10.0
#: The exit status of a worker that could not load the app (gunicorn's APP_LOAD_ERROR): the
#: supervisor stops rather than restart it.
EXIT_LOAD_FAILED = 4
_BACKLOG = 1024


class ListenError(OSError):
    """An address that cannot be listened on (in use, not on this host): one line."""


@dataclass(frozen=True, slots=True)
class Listening:
    """What ``ready`` gets: where the server listens, and with how many processes."""

    #: Every address listened on, as bound (a port 0 given is the real port here).
    addresses: tuple[Address, ...]
    #: Server processes sharing the sockets.
    workers: int = 1
    #: Whether they serve https and wss.
    tls: bool = False

    @property
    def host(self) -> str:
        """The first address's host."""
        return self.addresses[0][0]

    @property
    def port(self) -> int:
        """The first address's port."""
        return self.addresses[0][1]

    def urls(self) -> list[str]:
        """``http://host:port/`` (or https) for every address."""
        scheme = "https" if self.tls else "http"
        return [
            f"{scheme}://[{host}]:{port}/" if ":" in host else f"{scheme}://{host}:{port}/"
            for host, port in self.addresses
        ]


Ready = Callable[[Listening], object]


def banner(command: str, listening: Listening) -> str:
    """The line that says where a server listens (tests and scripts read the port from
    it): ``stargate serve: http://127.0.0.1:8000/``, every address, then the workers."""
    line = f"stargate {command}: {' '.join(listening.urls())}"
    if listening.workers > 1:
        line += f" ({listening.workers} workers, supervisor pid {os.getpid()})"
    return line


def bind(addresses: Sequence[Address]) -> list[socket.socket]:
    """Listening sockets for ``addresses`` (``""`` as the host: every interface; a name:
    each of its addresses, IPv4 and IPv6).  :class:`ListenError` if one cannot be bound."""
    socks: list[socket.socket] = []
    try:
        for host, port in addresses:
            socks.extend(_bind_one(host, port))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _bind_one(host: str, port: int) -> list[socket.socket]:
    shown = f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"
    try:
        infos = socket.getaddrinfo(
            host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {shown}: {exc.strerror}") from None
    socks: list[socket.socket] = []
    seen: set[tuple[Any, ...]] = set()
    for family, kind, proto, _, sockaddr in infos:
        if sockaddr in seen or family not in (socket.AF_INET, socket.AF_INET6):
            continue
        seen.add(sockaddr)
        if port == 0 and socks:
            sockaddr = (sockaddr[0], socks[0].getsockname()[1], *sockaddr[2:])
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # "*" binds 0.0.0.0 and :: on one port
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(_BACKLOG)
        except OSError as exc:
            sock.close()
            if socks and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                logger.info("%s: not listening on %s (%s)", shown, sockaddr[0], exc.strerror)
                continue  # "localhost" on a host without IPv6: its IPv4 address will do
            for bound in socks:
                bound.close()
            raise ListenError(f"cannot listen on {shown}: {_why(exc)}") from None
        socks.append(sock)
    return socks


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            "address already in use: another server listens there; stop it or choose another port"
        )
    if exc.errno == errno.EACCES:
        return "permission denied: ports below 1024 need privileges; choose a port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available: it is not an address of this host"
    return exc.strerror or str(exc)


def _listening(socks: Sequence[socket.socket], workers: int, config: ServerConfig) -> Listening:
    addresses = tuple((str(s.getsockname()[0]), int(s.getsockname()[1])) for s in socks)
    return Listening(addresses, workers, config.ssl_context is not None)


def _prepare(
    app: AppTarget, config: ServerConfig, broker_url: str | None
) -> tuple[Hub, WSGIApp | Routes]:
    """The process's hub with its broker, then the app (imported now if a target string:
    the hub is configured first, so that the app's module sees it)."""
    url = broker_url if broker_url is not None else config.broker_url
    hub = configure(url)
    loaded: WSGIApp | Routes = load_app(app) if isinstance(app, str) else app
    # Loading an .ini file applies its logging configuration, which takes the handler of
    # JSON access lines off ``stargate.access`` when it configures a ``stargate`` logger
    # (a child's handlers go): set it again, unless the file configured that logger.
    json_lines_alone(config)
    return hub, loaded


def serve_worker(
    app: AppTarget,
    config: ServerConfig,
    *,
    broker_url: str | None = None,
    listen: Sequence[Address] | None = None,
    socks: Sequence[socket.socket] | None = None,
    ready: Ready | None = None,
    multiprocess: bool = False,
) -> None:
    """Serve in this process until SIGINT, SIGTERM or SIGHUP: a server per listening socket and the
    process's group hub with ``broker_url``'s broker (``config.broker_url`` if ``None``),
    all on one event loop.  The sockets are ``socks`` when given (a worker's share),
    else bound here for ``listen`` (default ``config``'s host and port) before the app is
    loaded, so that a port in use is said at once."""
    own = socks is None
    if socks is None:
        socks = bind(listen or [(config.host, config.port)])
    try:
        hub, loaded = _prepare(app, config, broker_url)
        _run(hub, loaded, config, socks, ready=ready, multiprocess=multiprocess)
    finally:
        if own:
            for sock in socks:
                sock.close()


def _run(
    hub: Hub,
    app: WSGIApp | Routes,
    config: ServerConfig,
    socks: Sequence[socket.socket],
    *,
    ready: Ready | None,
    multiprocess: bool,
) -> None:
    parent = os.getppid()
    # One server for every listening socket: one thread pool, one max_connections, one
    # graceful stop.
    server = Server(app, config)
    server.multiprocess = multiprocess
    server.state.broker_health = lambda: (hub.gaps, hub.broker_connected)

    async def main() -> None:
        await server.start(socks)
        await hub.start()
        loop = asyncio.get_running_loop()
        if multiprocess:
            # A worker hears the supervisor: SIGTERM to stop gracefully (again: no matter,
            # a group-wide SIGTERM comes twice), SIGQUIT to hurry, as gunicorn's workers.
            loop.add_signal_handler(signal.SIGTERM, server.stop_soon)
            loop.add_signal_handler(signal.SIGQUIT, server.hurry)
        else:
            for sig in stop_signals():
                loop.add_signal_handler(sig, server.stop_signalled)
        if ready is not None:
            ready(_listening(socks, 1, config))
        orphan_watch = asyncio.ensure_future(_watch_parent(server.shutdown, parent, multiprocess))
        try:
            await server.wait_stopped()
        finally:
            orphan_watch.cancel()
            await hub.close()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
    server.reraise_exit()


async def _watch_parent(stop: Callable[[], Any], parent: int, enabled: bool) -> None:
    """A worker whose supervisor vanished (killed with SIGKILL) shuts down by itself."""
    if not enabled:
        return
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            logger.warning("supervisor %d gone: worker %d shutting down", parent, os.getpid())
            await stop()
            return


class _Supervisor:
    def __init__(
        self,
        app: AppTarget,
        config: ServerConfig,
        workers: int,
        broker_url: str | None,
        socks: Sequence[socket.socket],
        ready: Ready | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.workers = workers
        self.broker_url = broker_url
        self.socks = socks
        #: Called once, when the first worker serves (then set to ``None``).
        self.ready = ready
        #: pid -> (slot, start time)
        self.children: dict[int, tuple[int, float]] = {}
        #: slot -> (monotonic time of its next start, restart delay)
        self.waiting: dict[int, tuple[float, float]] = {}
        self.delays: dict[int, float] = {}
        self.stopping = False
        #: When stragglers are killed (set by :meth:`stop`).
        self.deadline: float | None = None
        #: Why the workers could not load the app (the first one's line), once one said so.
        self.load_error: str | None = None
        #: Workers write their load error here, one line in one write (atomic: < PIPE_BUF).
        self._errors_r, self._errors_w = os.pipe()
        os.set_blocking(self._errors_r, False)
        #: A worker writes one byte here once it serves (its app loaded, its server
        #: listening); never blocking: a full pipe (nobody reading) must not stall a worker.
        self._ready_r, self._ready_w = os.pipe()
        os.set_blocking(self._ready_r, False)
        os.set_blocking(self._ready_w, False)

    def close(self) -> None:
        for fd in (self._errors_r, self._errors_w, self._ready_r, self._ready_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _tell_ready(self, _: Listening) -> None:
        """In a worker, once it serves: tell the supervisor."""
        with contextlib.suppress(OSError):
            os.write(self._ready_w, b"r")

    def check_ready(self) -> None:
        """Drain what workers said on the ready pipe; the first word calls ``ready``."""
        try:
            said = os.read(self._ready_r, 4096)
        except (BlockingIOError, OSError):
            return
        if said and self.ready is not None and not self.stopping:
            ready, self.ready = self.ready, None
            ready(_listening(self.socks, self.workers, self.config))

    def spawn(self, slot: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            # never returns; in the child, this frame predates the fork and coverage's fork
            # hook traces only frames entered after it (_child's own lines are measured)
            self._child(slot)  # pragma: no cover
        self.children[pid] = (slot, time.monotonic())
        logger.info("worker %d started (pid %d)", slot, pid)

    def _child(self, slot: int) -> None:
        code = 0
        try:
            os.close(self._errors_r)
            os.close(self._ready_r)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            # Ctrl+C and a closed terminal reach the whole process group: the supervisor
            # passes them on (SIGTERM, then SIGQUIT to hurry), and a worker that heard them
            # too would take the relay for a second signal.  It listens to the supervisor.
            for sig in (signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            os.environ["STARGATE_WORKER"] = str(slot)
            loaded = self._load_in_child()
            if loaded is None:
                code = EXIT_LOAD_FAILED
            else:
                hub, app = loaded
                _run(hub, app, self.config, self.socks, ready=self._tell_ready, multiprocess=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _load_in_child(self) -> tuple[Hub, WSGIApp | Routes] | None:
        """The worker's hub and app, imported now; ``None`` after telling the supervisor
        (one line on the error pipe) why the app could not be loaded."""
        try:
            return _prepare(self.app, self.config, self.broker_url)
        except TargetError as exc:  # what the user can fix: one line
            line = str(exc)
        except SystemExit as exc:  # the app's module exited while imported
            line = f"loading {self.app!r} exited with status {exc.code}"
        except Exception as exc:  # a bug in the app's module: its traceback helps
            traceback.print_exc()
            line = f"cannot load {self.app!r}: {type(exc).__name__}: {exc}"
        data = " ".join(line.splitlines()).encode("utf-8", "replace")[: select.PIPE_BUF - 1]
        with contextlib.suppress(OSError):
            os.write(self._errors_w, data + b"\n")
        return None

    def _read_load_error(self) -> str:
        try:
            data = os.read(self._errors_r, 65536)
        except (BlockingIOError, OSError):
            data = b""
        lines = data.decode("utf-8", "replace").splitlines()
        return lines[0] if lines else f"a worker could not load {self.app!r}"

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            entry = self.children.pop(pid, None)
            if entry is None:
                continue
            slot, started = entry
            if (
                os.WIFEXITED(status)
                and os.WEXITSTATUS(status) == EXIT_LOAD_FAILED
                and self.load_error is None
            ):
                self.load_error = self._read_load_error()
                if not self.stopping:
                    logger.error(
                        "worker %d (pid %d) could not load the app: stopping every worker",
                        slot,
                        pid,
                    )
                    self.stop()
                continue
            if self.stopping:
                logger.info("worker %d (pid %d) stopped", slot, pid)
                continue
            lived = time.monotonic() - started
            delay = self.delays.get(slot, 0.0)
            delay = min(_MAX_RESTART_DELAY, max(0.1, delay * 2)) if lived < _YOUNG else 0.0
            self.delays[slot] = delay
            logger.warning(
                "worker %d (pid %d) died (%s): restarting%s",
                slot,
                pid,
                _describe(status),
                f" in {delay:.1f} s" if delay else "",
            )
            self.waiting[slot] = (time.monotonic() + delay, delay)

    def stop(self) -> None:
        """Stop every worker: SIGTERM (graceful), and SIGQUIT for a stop signal heard
        during it (hurry); SIGKILL after the shutdown timeout."""
        if not self.stopping:
            self.stopping = True
            self.waiting.clear()
            self.deadline = time.monotonic() + self.config.shutdown_timeout + 5.0
            self.signal_all(signal.SIGTERM)
        else:
            self.signal_all(signal.SIGQUIT)

    def restart_due(self) -> None:
        now = time.monotonic()
        for slot, (when, _) in list(self.waiting.items()):
            if when <= now:
                del self.waiting[slot]
                self.spawn(slot)

    def signal_all(self, sig: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def run(self) -> int:
        """Serve until SIGINT, SIGTERM or SIGHUP (0), or until a worker could not load the app
        (:class:`~stargate.targets.TargetError` with its one-line reason)."""
        stopping = stop_signals()
        watched = {signal.SIGCHLD, *stopping}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        try:
            for slot in range(self.workers):
                self.spawn(slot)
            while True:
                # Until a worker serves, look at the ready pipe often: the ready line waits
                # on it (signals are taken by sigtimedwait, so the pipe is polled).
                timeout = 1.0 if self.ready is None else 0.05
                if self.waiting:
                    soonest = min(when for when, _ in self.waiting.values())
                    timeout = max(0.01, min(timeout, soonest - time.monotonic()))
                info = signal.sigtimedwait(watched, timeout)
                if info is not None and info.si_signo in stopping:
                    if not self.stopping:
                        logger.info("stopping %d workers", len(self.children))
                    self.stop()
                self.check_ready()
                self.reap()
                if self.stopping:
                    if not self.children:
                        if self.load_error is not None:
                            raise TargetError(self.load_error)
                        return 0
                    if self.deadline is not None and time.monotonic() > self.deadline:
                        logger.warning("killing %d workers after the timeout", len(self.children))
                        self.signal_all(signal.SIGKILL)
                        self.deadline = None
                else:
                    self.restart_due()
        finally:
            if self.children:  # the supervisor itself failed: leave no orphans
                self.signal_all(signal.SIGKILL)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            self.close()


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def run_workers(
    app_target: AppTarget,
    config: ServerConfig,
    workers: int = 1,
    broker_url: str | None = None,
    *,
    listen: Sequence[Address] | None = None,
    ready: Ready | None = None,
) -> int:
    """Serve ``app_target`` (``module:attribute`` or an ``.ini`` file, imported in each
    worker after the fork, never in the supervisor; or an app object) with ``workers``
    processes on ``listen`` (default ``config``'s host and port) and group messages carried
    by ``broker_url``'s broker (default ``config.broker_url``, else in-memory); returns the
    exit status after SIGINT, SIGTERM or SIGHUP.

    One worker serves in this process (no supervisor).  More than one needs a broker that
    spans processes (else :class:`~stargate.settings.SettingsError`).  A target that the
    workers cannot load raises :class:`~stargate.targets.TargetError` (they stop, and are
    not restarted); an address that cannot be bound :class:`ListenError`.  ``ready`` is
    called once, with a :class:`Listening`, when the app is served: with several workers,
    once the first of them has loaded it and serves (never before a load error).
    """
    url = broker_url if broker_url is not None else config.broker_url
    if isinstance(app_target, str):
        check_target(app_target)
    check_workers(workers, url)
    addresses = listen or [(config.host, config.port)]
    if workers == 1:
        serve_worker(app_target, config, broker_url=url, listen=addresses, ready=ready)
        return 0
    socks = bind(addresses)
    try:
        supervisor = _Supervisor(app_target, config, workers, url, socks, ready)
        return supervisor.run()
    finally:
        for sock in socks:
            sock.close()


def leave_stuck_threads(code: int) -> None:
    """Exit at once (with ``code``) if the server's pool threads still run app code after
    its shutdown: the interpreter would join them at exit for as long as the app takes, and
    ``shutdown_timeout`` would not hold.  For the end of a process that served: ``stargate
    serve`` and pserve's server factory call it (a worker of ``--workers`` exits this way
    too); otherwise it returns."""
    if _stuck_pool_threads():
        exit_now(code)


def leave_stuck_threads_at_exit(code: int) -> None:
    """:func:`leave_stuck_threads` for a process whose last steps are someone else's (a
    gunicorn worker: after ``run()`` the arbiter's code logs, closes the heartbeat file and
    runs the ``worker_exit`` hook): the exit comes when the interpreter would start
    waiting for the stuck threads, after those steps."""
    if _stuck_pool_threads():
        # CPython's hook for "before the non-daemon threads are joined", the one
        # concurrent.futures uses for its own pools; there is no public one.
        threading._register_atexit(exit_now, code)  # type: ignore[attr-defined]


def _stuck_pool_threads() -> bool:
    """Whether pool threads still run app code after the server's shutdown (logged)."""
    stuck = [t for t in threading.enumerate() if t.name.startswith(POOL_THREAD_NAMES)]
    deadline = time.monotonic() + 0.2  # idle ones end at once: the pools were shut down
    for thread in stuck:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in stuck if t.is_alive()]
    if stuck:
        logging.getLogger("stargate.server").warning(
            "%d thread(s) still running the app after the shutdown; exiting without them",
            len(stuck),
        )
    return bool(stuck)


def exit_now(code: int) -> None:
    """End the process with ``code`` now, its log lines written (no thread is waited for)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
