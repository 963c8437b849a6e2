const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const ws = new WebSocket(scheme + location.host + "/ws");
ws.onmessage = (event) => {
  const item = document.createElement("li");
  item.textContent = event.data;
  document.getElementById("log").prepend(item);
};
document.getElementById("say").onsubmit = (event) => {
  event.preventDefault();
  ws.send(document.getElementById("text").value);
};
