"""The jobs example's views: the page, the toggle, the WebSocket."""

from __future__ import annotations

import html
from typing import Any

from pyramid.httpexceptions import HTTPSeeOther

from stargate.pyramid import WebSocketView
from stargate.server import SyncWebSocket

from .app import Job, Root

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
  body {{ font: 16px system-ui, sans-serif; margin: 2rem auto; max-width: 40rem; }}
  li {{ display: flex; gap: 1rem; align-items: center; padding: .4rem 0; }}
  .title {{ flex: 1; }}
  .state {{ font-weight: bold; min-width: 6rem; }}
  [data-state=running] .state {{ color: #080; }}
  [data-state=stopped] .state {{ color: #a00; }}
  .live {{ color: #888; font-size: .8em; min-width: 9rem; }}
  .error {{ color: #a00; font-size: .8em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>Open this page in two tabs: a click in one shows in both.</p>
<ul id="jobs">
{rows}
</ul>
<script>
"use strict";
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
for (const row of document.querySelectorAll("li[data-job]")) {{
  const live = row.querySelector(".live");
  const error = row.querySelector(".error");
  // A connection starts with a snapshot of the job, taken as it is: the server may have
  // restarted, counting versions from 0 again.  After it, versions order the pushes and a
  // toggle's answer, whatever order they arrive in; the answer to a toggle sent before
  // the latest reconnect is not shown (the snapshot since is newer).
  let current = null;
  const show = (job, snapshot) => {{
    if (!snapshot && job.version < Number(row.dataset.version)) return;
    row.dataset.version = job.version;
    row.dataset.state = job.state;
    row.querySelector(".state").textContent = job.state;
  }};
  // Reconnect after 1, 2, 4, 8, then every 10 s (+-20%).
  let attempts = 0;
  const connect = () => {{
    live.textContent = attempts ? "reconnecting\u2026" : "connecting\u2026";
    const ws = new WebSocket(scheme + "//" + location.host + row.dataset.url);
    let first = true;
    ws.onmessage = (event) => {{
      show(JSON.parse(event.data), first);
      first = false;
      current = ws;
      attempts = 0;
      row.dataset.live = "";
      live.textContent = "live";
    }};
    ws.onclose = (event) => {{
      if (current === ws) current = null;
      delete row.dataset.live;
      const delay = Math.min(10, 2 ** attempts) * (0.8 + 0.4 * Math.random());
      attempts += 1;
      live.textContent = "closed " + event.code + (event.reason ? " (" + event.reason + ")" : "")
        + ", reconnecting in " + Math.ceil(delay) + " s";
      setTimeout(connect, delay * 1000);
    }};
  }};
  connect();
  row.querySelector("form").addEventListener("submit", async (event) => {{
    event.preventDefault();
    error.textContent = "";
    const sentOn = current;
    try {{
      const response = await fetch(event.target.action, {{
        method: "POST", headers: {{Accept: "application/json"}},
      }});
      if (!response.ok) throw new Error("the server answered " + response.status);
      const job = await response.json();
      if (current === sentOn) show(job, false);
    }} catch (failure) {{
      error.textContent = "not toggled: " + failure.message;
    }}
  }});
}}
</script>
</body>
</html>
"""

ROW = """<li data-job="{name}" data-url="{url}" data-state="{state}" data-version="{version}">
  <a class="title" href="{url}">{title}</a> <span class="state">{state}</span>
  <span class="live"></span> <span class="error" role="alert"></span>
  <form method="post" action="{toggle}"><button type="submit">Toggle</button></form>
</li>"""


def render(request: Any, jobs: list[Job], title: str) -> Any:
    rows = []
    for job in jobs:
        snapshot = job.snapshot()
        rows.append(
            ROW.format(
                name=html.escape(job.__name__),
                url=html.escape(request.resource_path(job)),
                toggle=html.escape(request.resource_path(job, "toggle")),
                title=html.escape(job.title),
                state=html.escape(snapshot["state"]),
                version=snapshot["version"],
            )
        )
    response = request.response
    response.content_type = "text/html"
    response.text = PAGE.format(title=html.escape(title), rows="\n".join(rows))
    return response


def index(context: Root, request: Any) -> Any:
    """``/``: every job."""
    return render(request, list(context), "Jobs")


def job_page(context: Job, request: Any) -> Any:
    """``/<job>/``: one job (the same URL is its WebSocket)."""
    return render(request, [context], context.title)


def toggle(context: Job, request: Any) -> Any:
    """``POST /<job>/toggle``: flip the state; every listening tab hears it."""
    snapshot = context.toggle()
    if "application/json" in request.headers.get("Accept", ""):
        return snapshot
    return HTTPSeeOther(location=request.resource_url(request.root))


class JobSocket(WebSocketView):
    """``/<job>/`` as a WebSocket: listen to the job, get its state now and on every change.

    A plain ``def`` handler (it runs in a worker thread); it returns at once, and the
    connection stays open as long as it listens."""

    def handler(self, websocket: SyncWebSocket) -> None:
        job: Job = self.context
        job.add_listener(websocket)
        websocket.send(job.message())


def includeme(config: Any) -> None:
    config.add_view(index, context=Root, request_method="GET")
    config.add_view(job_page, context=Job, request_method="GET")
    config.add_view(JobSocket, context=Job, websocket=True)
    config.add_view(toggle, context=Job, name="toggle", request_method="POST", renderer="json")
