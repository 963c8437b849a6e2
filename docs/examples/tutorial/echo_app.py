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
  ws.onopen = () => { log("open"); ws.send("hello from the browser"); };
  ws.onmessage = (event) => log(event.data);
  ws.onclose = (event) => log("closed " + event.code + " " + event.reason);
</script>
"""


async def echo(ws):
    async for message in ws:  # str for a text message, bytes for a binary one
        await ws.send(f"you said: {message}")


def app(environ, start_response):
    upgrade = environ.get("stargate.websocket")  # only on a WebSocket upgrade request
    if upgrade is not None and environ["PATH_INFO"] == "/ws":
        upgrade.accept(echo)
        return []
    if environ["PATH_INFO"] == "/":
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [PAGE]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
