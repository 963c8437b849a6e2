"""The chat example's views: log in, the rooms, a room's page and its WebSocket."""

from __future__ import annotations

import html
import json
from typing import Any

from pyramid.httpexceptions import HTTPForbidden, HTTPSeeOther
from pyramid.security import forget, remember

from stargate.pyramid import WebSocketView
from stargate.server import WebSocket

from . import Room, Rooms

STYLE = """<style>
  body { font: 16px system-ui, sans-serif; margin: 2rem auto; max-width: 40rem; }
  #log { border: 1px solid #ccc; height: 20rem; overflow-y: auto; padding: .5rem; }
  #log p { margin: .2rem 0; }
  .notice { color: #777; font-style: italic; }
  .name { font-weight: bold; }
  form { display: flex; gap: .5rem; margin-top: .5rem; }
  input[type=text] { flex: 1; }
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

ROOM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>#{room} - chat</title>{style}</head>
<body>
<h1>#{room}</h1>
<p>You are <span class="name" id="me">{name}</span>. Here: <span id="people"></span>
<a href="{home}">other rooms</a></p>
<div id="log"></div>
<form id="say"><input type="text" id="text" autocomplete="off" autofocus maxlength="2000">
<button type="submit">Send</button></form>
<script>
"use strict";
const log = document.getElementById("log");
const say = document.getElementById("say");
const text = document.getElementById("text");
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
let ws;
const connect = () => {{
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(scheme + "//" + location.host + location.pathname);
  ws.onopen = () => {{ document.body.dataset.connected = ""; }};
  ws.onmessage = (event) => {{
    const m = JSON.parse(event.data);
    if (m.type === "message") add("message", ["name", m.name], ["", ": " + m.text]);
    else add("notice", ["", m.name + (m.type === "join" ? " joined" : " left")]);
    if (m.people) document.getElementById("people").textContent = m.people.join(", ");
  }};
  ws.onclose = () => {{ delete document.body.dataset.connected; setTimeout(connect, 1000); }};
}};
connect();
say.addEventListener("submit", (event) => {{
  event.preventDefault();
  if (text.value.trim() && ws.readyState === WebSocket.OPEN) {{ ws.send(text.value); }}
  text.value = "";
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
                if isinstance(message, str) and message.strip():
                    room.send(json.dumps({"type": "message", "name": name, "text": message[:2000]}))
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
