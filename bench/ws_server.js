// Node's `ws` server for bench/run.py: the same jobs as bench/echo_servers.py.
//
//     NODE_PATH=DIR/node_modules node bench/ws_server.js --port N [--app echo|broadcast] [--deflate]
//
// echo: every message comes back as it came, at every path.  broadcast: a connection to
// /sub subscribes; every message received on /pub is sent to every subscriber with a loop
// over them (ws has no broadcast primitive); other paths echo.  --deflate offers
// permessage-deflate with ws's defaults (off unless asked, in ws 8).
"use strict";

const { WebSocketServer } = require("ws");

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = option("--host", "127.0.0.1");
const port = Number(option("--port", "9002"));
const app = option("--app", "echo");
const deflate = process.argv.includes("--deflate");

const wss = new WebSocketServer({
  host,
  port,
  backlog: 1024,
  maxPayload: 16 * 1024 * 1024,
  perMessageDeflate: deflate,
});
const subscribers = new Set();

wss.on("connection", (ws, request) => {
  const path = request.url;
  if (app === "broadcast" && path === "/sub") {
    subscribers.add(ws);
    ws.on("close", () => subscribers.delete(ws));
  } else if (app === "broadcast" && path === "/pub") {
    ws.on("message", (data, isBinary) => {
      for (const subscriber of subscribers) subscriber.send(data, { binary: isBinary });
    });
  } else {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  }
});

wss.on("listening", () => {
  const version = require("ws/package.json").version;
  console.log(
    `node-ws ${app} on ws://${host}:${port}/ (node ${process.version}, ws ${version}` +
      `${deflate ? ", deflate offered" : ""})`
  );
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    for (const client of wss.clients) client.terminate();
    wss.close(() => process.exit(0));
  });
}
