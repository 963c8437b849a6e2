"""Several server processes on one port: ``stargate serve --workers N``.

:func:`run_workers` binds the listening socket once in a supervisor process and forks ``N``
workers that all accept on it (one shared accept queue: a worker that dies loses no queued
connection, unlike one SO_REUSEPORT socket per worker).  Each worker runs a
:class:`~stargate.server.Server` and the process's group :class:`~stargate.groups.Hub`
with the broker of ``broker_url`` on its event loop.  The supervisor restarts a worker that
dies (with a backoff when workers die young, so a broken app does not fork in a tight
loop), and on SIGINT or SIGTERM stops every worker gracefully: WebSockets closed with 1001,
in-flight requests answered, within ``shutdown_timeout``; stragglers are killed after it.

The supervisor never imports the app: a target string (``module:attribute`` or an ``.ini``
file) is imported by each worker after the fork, so that whatever the app creates at import
time (a module-level ``Group`` and the hub behind it, threads, connections) is the worker's
own.  A worker that cannot load the target (a missing module or attribute, an exception at
import, an object that is not an app) reports one line and exits with
:data:`EXIT_LOAD_FAILED`; the supervisor then stops the other workers and exits with that
line (:class:`SystemExit`) instead of restarting workers that would fail the same way.

More than one worker needs a broker that spans processes (``redis://...``): with the
in-memory broker each worker would have groups of its own, and a group message would
silently reach only the clients of the worker that sent it, so that is refused.  Each
worker starts its broker with its server: a Redis that cannot be reached is reported then
(a warning from the broker, URL redacted), and served anyway: local delivery works, and
the broker connects by itself once Redis is up.

``python -m stargate.server.workers TARGET ...`` is ``stargate serve TARGET ...``.  POSIX
only (``fork``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import groups
from ..brokers import make_broker
from ..targets import check_target, load_target
from .app import Server, new_event_loop
from .config import ServerConfig
from .routing import Routes
from .wsgi import WSGIApp

__all__ = ["EXIT_LOAD_FAILED", "Listening", "run_workers", "serve_worker"]

logger = logging.getLogger("stargate.workers")

AppTarget = str | WSGIApp | Routes
Ready = Callable[[Any], object]

#: A worker that dies sooner than this after its start is "dying young": restarts back off.
_YOUNG = 1.0
_MAX_RESTART_DELAY = 10.0
#: The exit status of a worker that could not load the app (gunicorn's APP_LOAD_ERROR): the
#: supervisor stops rather than restart it.
EXIT_LOAD_FAILED = 4


@dataclass(frozen=True, slots=True)
class Listening:
    """What ``ready`` gets from a supervisor: where the workers listen."""

    host: str
    port: int
    workers: int


def _refuse_split_groups(workers: int, broker_url: str | None) -> None:
    if workers < 1:
        raise SystemExit(f"stargate: --workers must be at least 1, not {workers}")
    if workers > 1 and not make_broker(broker_url).spans_processes:
        raise SystemExit(
            f"stargate: --workers {workers} needs a broker that spans processes, e.g. "
            "--broker redis://127.0.0.1:6379/0: with the in-memory broker every worker "
            "would have groups of its own, and a group message would silently reach only "
            "the clients of the worker that sent it"
        )


def _load(app: AppTarget) -> WSGIApp | Routes:
    if isinstance(app, str):
        loaded: WSGIApp | Routes = load_target(app)
        return loaded
    return app


def _prepare(
    app: AppTarget, config: ServerConfig, broker_url: str | None
) -> tuple[groups.Hub, Server]:
    """The process's hub with its broker, then the app (imported now if a target string:
    the hub is configured first, so that the app's module sees it) and its server."""
    url = broker_url if broker_url is not None else config.broker_url
    hub = groups.configure(url)
    server = Server(_load(app), config)
    return hub, server


def serve_worker(
    app: AppTarget,
    config: ServerConfig,
    *,
    broker_url: str | None = None,
    sock: socket.socket | None = None,
    ready: Ready | None = None,
    multiprocess: bool = False,
) -> None:
    """Serve in this process until SIGINT or SIGTERM: the server and the process's group
    hub with ``broker_url``'s broker (``config.broker_url`` if ``None``), both on one
    event loop; on ``sock`` when given (a worker's share of the listening socket)."""
    hub, server = _prepare(app, config, broker_url)
    _run(hub, server, sock=sock, ready=ready, multiprocess=multiprocess)


def _run(
    hub: groups.Hub,
    server: Server,
    *,
    sock: socket.socket | None,
    ready: Ready | None,
    multiprocess: bool,
) -> None:
    server.multiprocess = multiprocess
    parent = os.getppid()

    async def main() -> None:
        await server.start(sock)
        await hub.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.shutdown()))
        if ready is not None:
            ready(server)
        orphan_watch = asyncio.ensure_future(_watch_parent(server, parent, multiprocess))
        try:
            await server.wait_stopped()
        finally:
            orphan_watch.cancel()
            await hub.close()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())


async def _watch_parent(server: Server, parent: int, enabled: bool) -> None:
    """A worker whose supervisor vanished (killed with SIGKILL) shuts down by itself."""
    if not enabled:
        return
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            logger.warning("supervisor %d gone: worker %d shutting down", parent, os.getpid())
            await server.shutdown()
            return


def _listen(config: ServerConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


class _Supervisor:
    def __init__(
        self,
        app: AppTarget,
        config: ServerConfig,
        workers: int,
        broker_url: str | None,
        sock: socket.socket,
    ) -> None:
        self.app = app
        self.config = config
        self.workers = workers
        self.broker_url = broker_url
        self.sock = sock
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

    def close(self) -> None:
        for fd in (self._errors_r, self._errors_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def spawn(self, slot: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(slot)  # never returns
        self.children[pid] = (slot, time.monotonic())
        logger.info("worker %d started (pid %d)", slot, pid)

    def _child(self, slot: int) -> None:
        code = 0
        try:
            os.close(self._errors_r)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            os.environ["STARGATE_WORKER"] = str(slot)
            loaded = self._load_in_child()
            if loaded is None:
                code = EXIT_LOAD_FAILED
            else:
                hub, server = loaded
                _run(hub, server, sock=self.sock, ready=None, multiprocess=True)
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

    def _load_in_child(self) -> tuple[groups.Hub, Server] | None:
        """The worker's hub and server, the app imported now; ``None`` after telling the
        supervisor (one line on the error pipe) why the app could not be loaded."""
        try:
            return _prepare(self.app, self.config, self.broker_url)
        except SystemExit as exc:  # what load_target says the user can fix: one line
            if isinstance(exc.code, str):
                line = exc.code
            else:
                line = f"stargate: loading {self.app!r} exited with status {exc.code}"
        except Exception as exc:  # a bug in the app's module: its traceback helps
            traceback.print_exc()
            line = f"stargate: cannot load {self.app!r}: {type(exc).__name__}: {exc}"
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
        return lines[0] if lines else f"stargate: a worker could not load {self.app!r}"

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
        """Stop every worker (SIGTERM now, SIGKILL after the shutdown timeout)."""
        if not self.stopping:
            self.stopping = True
            self.waiting.clear()
            self.deadline = time.monotonic() + self.config.shutdown_timeout + 5.0
        self.signal_all(signal.SIGTERM)

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
        """Serve until SIGINT or SIGTERM (0), or until a worker could not load the app
        (:class:`SystemExit` with its one-line reason)."""
        watched = {signal.SIGCHLD, signal.SIGINT, signal.SIGTERM}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        try:
            for slot in range(self.workers):
                self.spawn(slot)
            while True:
                timeout = 1.0
                if self.waiting:
                    soonest = min(when for when, _ in self.waiting.values())
                    timeout = max(0.01, min(timeout, soonest - time.monotonic()))
                info = signal.sigtimedwait(watched, timeout)
                if info is not None and info.si_signo in (signal.SIGINT, signal.SIGTERM):
                    if not self.stopping:
                        logger.info("stopping %d workers", len(self.children))
                    self.stop()
                self.reap()
                if self.stopping:
                    if not self.children:
                        if self.load_error is not None:
                            raise SystemExit(self.load_error)
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
    ready: Ready | None = None,
) -> int:
    """Serve ``app_target`` (``module:attribute`` or an ``.ini`` file, imported in each
    worker after the fork, never in the supervisor; or an app object) with ``workers``
    processes on ``config``'s port and group messages carried by ``broker_url``'s broker
    (default ``config.broker_url``, else in-memory); returns the exit status after SIGINT or
    SIGTERM.

    One worker serves in this process (no supervisor).  More than one needs a broker that
    spans processes: otherwise :class:`SystemExit` with the reason, as for a target that
    workers could not load (they stop, and are not restarted).  ``ready`` is called once
    listening, with the :class:`~stargate.server.Server` (one worker) or a
    :class:`Listening` (host, port, workers).
    """
    url = broker_url if broker_url is not None else config.broker_url
    if isinstance(app_target, str):
        check_target(app_target)
    _refuse_split_groups(workers, url)
    if workers == 1:
        serve_worker(app_target, config, broker_url=url, ready=ready)
        return 0
    sock = _listen(config)
    try:
        host, port = sock.getsockname()[:2]
        supervisor = _Supervisor(app_target, config, workers, url, sock)
        if ready is not None:
            ready(Listening(host, port, workers))
        return supervisor.run()
    finally:
        sock.close()


if __name__ == "__main__":
    # ``python -m stargate.server.workers ARGS`` is ``stargate serve ARGS``.  Run as a
    # script this file is ``__main__``: the library module itself never imports the CLI.
    from stargate.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
