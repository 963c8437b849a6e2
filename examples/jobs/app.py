"""The jobs example's resources and its app factory (``main``, PasteDeploy's app factory)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from pyramid.config import Configurator

from stargate.pyramid import WebSocketAwareResource

#: The jobs a new app starts with: (name in the URL, title).
DEFAULT_JOBS = (("build", "Build"), ("test", "Test suite"), ("deploy", "Deploy"))


class Job(WebSocketAwareResource):
    """A job that is running or stopped; its listeners hear every change."""

    def __init__(self, name: str, title: str, parent: Root) -> None:
        self.__name__ = name
        self.__parent__ = parent
        self.title = title
        self.state = "stopped"
        #: Grows with every change: a tab keeps the newest state it heard on a connection,
        #: whatever order its first snapshot and a concurrent push arrive in.  It counts
        #: from 0 again in a restarted server, so a tab takes the first message of every
        #: new connection as it is (see views.PAGE).
        self.version = 0
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.__name__, "state": self.state, "version": self.version}

    def message(self) -> str:
        with self._lock:
            return json.dumps(self.snapshot())

    def toggle(self) -> dict[str, Any]:
        """Flip the state and tell every listener (from the request's worker thread)."""
        with self._lock:
            self.state = "running" if self.state == "stopped" else "stopped"
            self.version += 1
            snapshot = self.snapshot()
            # Sent under the lock: pushes leave in the order of the changes.
            self.send(json.dumps(snapshot))
        return snapshot


class Root:
    """The traversal root: ``/<name>`` is a :class:`Job`.  One per app, so the jobs (and
    their listeners) live as long as the app does."""

    __name__ = ""
    __parent__ = None

    def __init__(self, jobs: Iterable[tuple[str, str]] = DEFAULT_JOBS) -> None:
        #: The jobs' state lives in this object, so their listeners are this tree's alone:
        #: another jobs app in the process (tests build several) has the same paths but
        #: never hears these jobs (see stargate.pyramid.resources).
        self.listener_namespace = f"examples.jobs:{uuid.uuid4().hex}"
        self.jobs = {name: Job(name, title, self) for name, title in jobs}

    def __getitem__(self, name: str) -> Job:
        return self.jobs[name]

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs.values())


def main(global_config: dict[str, Any] | None = None, **settings: Any) -> Any:
    """The WSGI app (PasteDeploy app factory)."""
    root = Root()
    with Configurator(settings=settings, root_factory=lambda request: root) as config:
        config.include("stargate.pyramid")
        from . import views

        views.includeme(config)
        return config.make_wsgi_app()
