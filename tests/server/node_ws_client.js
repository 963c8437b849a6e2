// Node's `ws` client against the server under test (tests/server/test_node_ws.py).
//
//     NODE_PATH=DIR/node_modules node node_ws_client.js URL [ORIGIN]
//
// It opens URL offering two subprotocols and permessage-deflate, runs the steps the path
// names, and prints one JSON line of what it saw: the handshake's outcome, each echo, the
// pong and the close.  A refused handshake prints its status and body instead.
"use strict";

const WebSocket = require("ws");

const [url, origin] = process.argv.slice(2);
const seen = {};
let done = false;

function finish() {
  if (done) return;
  done = true;
  process.stdout.write(JSON.stringify(seen) + "\n");
  process.exit(0);
}

const ws = new WebSocket(url, ["chat.v2", "chat.v1"], {
  origin,
  perMessageDeflate: true,
  handshakeTimeout: 10000,
});
const inbox = [];
let waiting = null;
ws.on("message", (data, isBinary) => {
  const message = { binary: isBinary, data: isBinary ? data.toString("hex") : data.toString() };
  if (waiting) {
    const resolve = waiting;
    waiting = null;
    resolve(message);
  } else {
    inbox.push(message);
  }
});
function next() {
  return inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => (waiting = r));
}

ws.on("unexpected-response", (request, response) => {
  let body = "";
  response.on("data", (chunk) => (body += chunk));
  response.on("end", () => {
    seen.status = response.statusCode;
    seen.body = body;
    finish();
  });
});
ws.on("error", (error) => {
  seen.error = String(error);
  finish();
});
ws.on("close", (code, reason) => {
  seen.close = [code, reason.toString()];
  finish();
});

ws.on("open", async () => {
  seen.protocol = ws.protocol;
  seen.extensions = ws.extensions;
  if (new URL(url).pathname !== "/echo") return; // the server speaks first, then closes
  seen.echoes = [];
  ws.send("héllo wörld");
  seen.echoes.push(await next());
  ws.send(Buffer.from([0, 1, 2, 255]));
  seen.echoes.push(await next());
  const big = "stargate ".repeat(50000); // 450 kB, compressed on the wire
  ws.send(big);
  const echoed = await next();
  seen.big = echoed.data === big;
  ws.send("frag", { fin: false }); // one message in two frames
  ws.send("ment", { fin: true });
  seen.echoes.push(await next());
  seen.pong = await new Promise((resolve) => {
    ws.once("pong", (payload) => resolve(payload.toString()));
    ws.ping("are you there");
  });
  ws.close(4000, "done here");
});
