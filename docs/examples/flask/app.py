from flask import Flask, abort, render_template_string, request, session

from stargate.groups import Group

app = Flask(__name__)
app.secret_key = "change me"  # Flask's signed session cookie; the WebSocket request has it too
room = Group("room")

PAGE = """<!doctype html>
<title>Flask + Stargate</title>
<form id="say"><input id="text" autocomplete="off"><button>Say</button></form>
<ul id="log"></ul>
<script>
  const log = (text) => {
    const item = document.createElement("li");
    item.textContent = text;
    document.getElementById("log").append(item);
  };
  const ws = new WebSocket("{{ url_for('socket') }}");  // ws://host/ws (wss:// under https)
  ws.onmessage = (event) => log(event.data);
  document.getElementById("say").onsubmit = (event) => {
    event.preventDefault();
    ws.send(document.getElementById("text").value);
  };
</script>
"""


@app.get("/")
def page():
    session.setdefault("name", f"guest-{len(room) + 1}")
    return render_template_string(PAGE)


@app.route("/ws", websocket=True)  # matched by WebSocket upgrade requests only
def socket():
    upgrade = request.environ.get("stargate.websocket")
    if upgrade is None:  # a server that cannot upgrade (flask run, gunicorn's sync worker)
        abort(501)
    name = session.get("name")
    if name is None:  # no session cookie: not one of our pages
        abort(403)  # the client gets this 403; no WebSocket is opened

    def handler(ws):
        room.add(ws)
        for message in ws:
            room.send(f"{name}: {message}")

    upgrade.accept(handler)
    return ""  # the server answers 101 instead of this response


@app.post("/announce")
def announce():
    room.send(f"announcement: {request.get_data(as_text=True)}")
    return "", 204
