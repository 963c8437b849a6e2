"""The seed's jobs example in Pyramid 2, with traversal.

The root holds :class:`Job` resources; each job is a
:class:`~stargate.pyramid.WebSocketAwareResource`.  ``/`` shows every job's state with a
button; the button POSTs to ``/<job>/toggle``, which flips the state and pushes it to every
WebSocket listening to that job, so every open tab shows the new state at once.  ``/<job>/``
serves a page for one job, and the same URL is the job's WebSocket (``websocket=True``).

Run it (from the repository root, nothing to install but stargate and pyramid)::

    python -m examples.jobs                          # http://127.0.0.1:6543/
    pserve examples/jobs/development.ini             # the same with PasteDeploy
    stargate serve examples/jobs/development.ini --port 6543

The resources and the app factory are in :mod:`examples.jobs.app`, the views in
:mod:`examples.jobs.views`; this package loads them on first use, so that ``python -m
examples.jobs`` without Pyramid says so in one line (see ``examples/_run.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import DEFAULT_JOBS, Job, Root, main

__all__ = ["DEFAULT_JOBS", "Job", "Root", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
