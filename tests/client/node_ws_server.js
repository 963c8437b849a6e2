// Node's `ws` server for the client under test (tests/client/test_node_ws.py).
//
//     NODE_PATH=DIR/node_modules node node_ws_server.js
//
// It listens on an ephemeral port of 127.0.0.1 and prints it as one JSON line.  It accepts
// the subprotocol chat.v1 when offered and permessage-deflate, and serves by path:
// /echo echoes, /fragments sends a message in three frames, /ping pings and reports the pong,
// /close closes with the code and reason the client's first message names.  What it saw of
// each connection's end goes to stderr as one JSON line.
"use strict";

const { WebSocketServer } = require("ws");

const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: 0,
  perMessageDeflate: true,
  handleProtocols: (protocols) => (protocols.has("chat.v1") ? "chat.v1" : false),
});

wss.on("listening", () => {
  process.stdout.write(JSON.stringify({ port: wss.address().port }) + "\n");
});

wss.on("connection", (ws, request) => {
  const path = request.url;
  ws.on("close", (code, reason) => {
    process.stderr.write(JSON.stringify({ path, close: [code, reason.toString()] }) + "\n");
  });
  if (path === "/echo") {
    ws.send(JSON.stringify({ protocol: ws.protocol, extensions: request.headers["sec-websocket-extensions"] || "" }));
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  } else if (path === "/fragments") {
    ws.send("fra", { fin: false });
    ws.send("gmen", { fin: false });
    ws.send("ted é", { fin: true });
  } else if (path === "/ping") {
    ws.once("pong", (payload) => ws.send("pong " + payload.toString()));
    ws.ping("from node");
  } else if (path === "/close") {
    ws.once("message", (data) => {
      const [code, ...reason] = data.toString().split(" ");
      ws.close(Number(code), reason.join(" "));
    });
  } else {
    ws.close(4004, "no such path");
  }
});
