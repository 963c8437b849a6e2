from stargate.groups import Group

news = Group("news")  # one group per name in this process

PAGE = b"""<!doctype html>
<title>Stargate tutorial</title>
<ul id="log"></ul>
<script>
  const log = (text) => {
    const item = document.createElement("li");
    item.textContent = text;
    document.getElementById("log").append(item);
  };
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/ws");
  ws.onopen = () => log("open");
  ws.onmessage = (event) => log(event.data);
  ws.onclose = (event) => log("closed " + event.code + " " + event.reason);
</script>
"""


async def listen(ws):
    news.add(ws)  # the connection stays open after this handler returns
    await ws.send("welcome: you will hear the news")


def announce(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    text = environ["wsgi.input"].read(length).decode("utf-8")
    news.send(text)  # from a WSGI worker thread: returns at once
    start_response("204 No Content", [])
    return []


def app(environ, start_response):
    path = environ["PATH_INFO"]
    upgrade = environ.get("stargate.websocket")
    if upgrade is not None and path == "/ws":
        upgrade.accept(listen)
        return []
    if path == "/" and environ["REQUEST_METHOD"] == "GET":
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [PAGE]
    if path == "/announce" and environ["REQUEST_METHOD"] == "POST":
        return announce(environ, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
