"""The chat example's views: log in, the rooms, a room's page and its WebSocket."""

from __future__ import annotations

import html
import json
from typing import Any

from pyramid.httpexceptions import HTTPForbidden, HTTPSeeOther
from pyramid.security import forget, remember

from stargate.pyramid import WebSocketView
from stargate.server import WebSocket

from .app import Room, Rooms

STYLE = """<style>
  body { font: 16px system-ui, sans-serif; margin: 2rem auto; max-width: 40rem; }
  #log { border: 1px solid #ccc; height: 20rem; overflow-y: auto; padding: .5rem; }
  #log p { margin: .2rem 0; white-space: pre-wrap; overflow-wrap: anywhere; }
  .notice { color: #777; font-style: italic; }
  .name { font-weight: bold; }
  form { display: flex; gap: .5rem; margin-top: .5rem; }
  input[type=text] { flex: 1; min-width: 0; }
  #status, .hint { color: #555; font-size: .9em; }
  #problem { color: #a00; }
</style>"""

HOME = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chat</title>{style}</head>
<body>
<h1>Chat</h1>
{body}
</body></html>
"""

LOGIN = """<form method="post" action="{login}">
  <input type="hidden" name="came_from" value="{came_from}">
  <input type="text" name="name" placeholder="your name" maxlength="24" required autofocus>
  <button type="submit">Enter</button>
</form>"""

ROOMS = """<p>You are <span class="name">{name}</span>.</p>
<form method="post" action="{logout}"><button type="submit">Leave the chat</button></form>
<ul>{rooms}</ul>
<form method="get" action="{rooms_url}" onsubmit="location.href = this.action + this.room.value;
  return false">
  <input type="text" name="room" placeholder="another room (a-z, 0-9, -)"
    pattern="[a-z0-9][a-z0-9-]*">
  <button type="submit">Open</button>
</form>"""

#: The most characters (code points) a message may have: a longer one is refused, never cut.
MAX_CHARS = 2000

ROOM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>#{room} - chat</title>{style}</head>
<body data-max-chars="{max_chars}">
<h1>#{room}</h1>
<p>You are <span class="name" id="me">{name}</span>. Here: <span id="people"></span>
<a href="{home}">other rooms</a></p>
<p id="status" data-state="connecting" role="status">connecting&hellip;</p>
<div id="log"></div>
<form id="say"><input type="text" id="text" autocomplete="off" autofocus>
<button type="submit">Send</button></form>
<p class="hint">At most {max_chars} characters.</p>
<p id="problem" role="alert"></p>
<script>
"use strict";
const log = document.getElementById("log");
const say = document.getElementById("say");
const text = document.getElementById("text");
const status = document.getElementById("status");
const problem = document.getElementById("problem");
const limit = Number(document.body.dataset.maxChars);
const add = (cls, ...parts) => {{
  const p = document.createElement("p");
  p.className = cls;
  for (const [c, t] of parts) {{
    const s = document.createElement("span");
    if (c) s.className = c;
    s.textContent = t;
    p.append(s);
  }}
  log.append(p);
  log.scrollTop = log.scrollHeight;
}};
const setStatus = (state, message) => {{
  status.dataset.state = state;
  status.textContent = message;
}};
// Reconnect after 1, 2, 4, 8, then every 10 s (+-20%).  Every connection starts with our
// own join, whose list of people is a fresh snapshot of the room.
let ws, attempts = 0;
const connect = () => {{
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = ws = new WebSocket(scheme + "//" + location.host + location.pathname);
  socket.onopen = () => {{
    attempts = 0;
    document.body.dataset.connected = "";
    setStatus("connected", "connected");
  }};
  socket.onmessage = (event) => {{
    const m = JSON.parse(event.data);
    if (m.type === "message") add("message", ["name", m.name], ["", ": " + m.text]);
    else if (m.type === "refused") problem.textContent = "Not sent: " + m.reason + ".";
    else add("notice", ["", m.name + (m.type === "join" ? " joined" : " left")]);
    if (m.people) document.getElementById("people").textContent = m.people.join(", ");
  }};
  socket.onclose = (event) => {{
    const wasOpen = "connected" in document.body.dataset;
    delete document.body.dataset.connected;
    const why = "closed " + event.code + (event.reason ? " (" + event.reason + ")" : "");
    if (wasOpen) add("notice", ["", "disconnected: " + why]);
    const delay = Math.min(10, 2 ** attempts) * (0.8 + 0.4 * Math.random());
    attempts += 1;
    setStatus("reconnecting", why + "; reconnecting in " + Math.ceil(delay) + " s");
    setTimeout(connect, delay * 1000);
  }};
}};
connect();
say.addEventListener("submit", (event) => {{
  event.preventDefault();
  if (!text.value.trim()) return;
  const n = [...text.value].length;
  if (n > limit) {{
    problem.textContent = "Not sent: " + n + " characters, over the limit of " + limit
      + ". Your text is still in the box.";
  }} else if (ws.readyState !== WebSocket.OPEN) {{
    problem.textContent = "Not sent: not connected. Your text is still in the box: "
      + "send it again once connected.";
  }} else {{
    ws.send(text.value);
    text.value = "";
    problem.textContent = "";
  }}
}});
</script>
</body></html>
"""


def home(request: Any) -> Any:
    """``/``: the name form, or the rooms."""
    name = request.authenticated_userid
    if name is None:
        came_from = request.params.get("came_from", "")
        body = LOGIN.format(
            login=html.escape(request.route_path("login")), came_from=html.escape(came_from)
        )
    else:
        rooms: Rooms = request.registry["chat.rooms"]
        items = "".join(
            f'<li><a href="{html.escape(request.route_path("room", room=room.name))}">'
            f"#{html.escape(room.name)}</a> ({len(room.listeners)} here)</li>"
            for room in rooms.all()
        )
        body = ROOMS.format(
            name=html.escape(name),
            logout=html.escape(request.route_path("logout")),
            rooms=items,
            rooms_url=html.escape(request.route_path("room", room="")),
        )
    response = request.response
    response.content_type = "text/html"
    response.text = HOME.format(style=STYLE, body=body)
    return response


def login(request: Any) -> Any:
    """``POST /login``: remember the name, go to the room asked for (or the lobby)."""
    name = " ".join(str(request.POST.get("name", "")).split())[:24]
    if not name:
        return HTTPSeeOther(location=request.route_url("home"))
    came_from = str(request.POST.get("came_from", ""))
    if not came_from.startswith("/rooms/"):  # only our own rooms: no open redirect
        came_from = request.route_path("room", room="lobby")
    return HTTPSeeOther(location=came_from, headers=remember(request, name))


def logout(request: Any) -> Any:
    return HTTPSeeOther(location=request.route_url("home"), headers=forget(request))


def room_page(context: Room, request: Any) -> Any:
    """``GET /rooms/{room}``: the page (its WebSocket is the same URL)."""
    response = request.response
    response.content_type = "text/html"
    response.text = ROOM.format(
        style=STYLE,
        max_chars=MAX_CHARS,
        room=html.escape(context.name),
        name=html.escape(request.authenticated_userid),
        home=html.escape(request.route_path("home")),
    )
    return response


class RoomSocket(WebSocketView):
    """``/rooms/{room}`` as a WebSocket: an ``async def`` handler on the server's loop.

    Reached only with the ``chat`` permission (Pyramid checked it before calling the view);
    the name comes from the same security policy as the page's."""

    async def handler(self, websocket: WebSocket) -> None:
        room: Room = self.context
        name = str(self.request.authenticated_userid)
        room.add_listener(websocket)
        room.people[websocket.id] = name
        self.announce("join", name)
        try:
            async for message in websocket:
                if not isinstance(message, str) or not message.strip():
                    continue
                if len(message) > MAX_CHARS:
                    reason = f"{len(message)} characters: over the limit of {MAX_CHARS}"
                    await websocket.send(json.dumps({"type": "refused", "reason": reason}))
                    continue
                room.send(json.dumps({"type": "message", "name": name, "text": message}))
        finally:
            room.people.pop(websocket.id, None)
            room.remove_listener(websocket)
            self.announce("leave", name)

    def announce(self, kind: str, name: str) -> None:
        room: Room = self.context
        people = sorted(set(room.people.values()), key=str.lower)
        room.send(json.dumps({"type": kind, "name": name, "people": people}))


def forbidden(request: Any) -> Any:
    """Not logged in: a WebSocket gets 403 (a redirect means nothing to it), a page the
    name form."""
    if request.is_websocket:
        return HTTPForbidden("log in first")
    return HTTPSeeOther(location=request.route_url("home", _query={"came_from": request.path}))


def includeme(config: Any) -> None:
    config.add_view(home, route_name="home", request_method="GET")
    config.add_view(login, route_name="login", request_method="POST")
    config.add_view(logout, route_name="logout", request_method="POST")
    config.add_view(room_page, route_name="room", request_method="GET", permission="chat")
    config.add_view(RoomSocket, route_name="room", websocket=True, permission="chat")
    config.add_forbidden_view(forbidden)
