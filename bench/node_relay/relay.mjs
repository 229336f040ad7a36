// A minimal signaling relay on Node.js and the `ws` package (version 8, what PeerJS server runs on): the
// `node-ws` baseline of bench/bench_relay.py, the counterpart of bench/relay_baselines.py.
//
// Run: node bench/node_relay/relay.mjs --port P [--host 127.0.0.1] [--max-seconds 600] [--prefix DIR]
//
// `ws` is loaded from DIR/node_modules (DIR: --prefix, by default this file's folder), where
// `npm ci --prefix DIR` installed it from the committed package-lock.json (bench/node_ws.py does, into
// .tools/node-relay).
//
// It speaks the subset of protocol v1 that the Python baselines speak, and nothing more:
//
// - {"type":"join","room":R} -> `welcome` (peer, room, peers, iceServers: []) to the joiner, `peer-joined` to
//   everyone else in the room;
// - offer, answer, candidate, message: `to` removed, `from` set, the rest relayed as parsed to the peer `to`
//   in the sender's room (`message` without `to`: every other peer of the room);
// - a disconnect -> `peer-left` to the rest of the room; an empty room is dropped.
//
// No validation beyond that: no schema, no rate limit, no error replies (a message that does not fit is
// dropped). JSON.parse and JSON.stringify once per message; permessage-deflate off; ws' other defaults (UTF-8
// validated, no optional native add-ons). Peer ids are 16 URL-safe random characters (12 random bytes), as in
// our server. One process: JavaScript runs on one thread (libuv and V8 may add helper threads; the bench counts
// the CPU of all of them).
//
// Once listening it prints `READY <pid> <port>`; it stops on SIGTERM/SIGINT, or by itself after --max-seconds,
// so no run outlives its bench.

import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values: opts } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    "max-seconds": { type: "string", default: "600" },
    prefix: { type: "string", default: dirname(fileURLToPath(import.meta.url)) },
  },
});
const port = Number(opts.port);
const maxSeconds = Number(opts["max-seconds"]);
if (!Number.isInteger(port) || port < 0 || port > 65535 || !(maxSeconds > 0)) {
  console.error("usage: relay.mjs --port P [--host H] [--max-seconds S] [--prefix DIR]");
  process.exit(2);
}

const require = createRequire(join(resolve(opts.prefix), "package.json"));
const { WebSocketServer } = require("ws");
const wsVersion = require("ws/package.json").version;

const RELAYED = new Set(["offer", "answer", "candidate", "message"]);
const OPEN = 1;

/** room -> Map(peer id -> WebSocket) */
const rooms = new Map();

function newPeerId() {
  return randomBytes(12).toString("base64url");
}

function deliver(ws, text) {
  if (ws.readyState === OPEN) ws.send(text);
}

const wss = new WebSocketServer({ host: opts.host, port, perMessageDeflate: false });

wss.on("connection", (ws) => {
  let peer = null;
  let room = null;
  let members = null;

  ws.on("error", () => {}); // a broken connection just closes
  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (msg === null || typeof msg !== "object") return;
    const kind = msg.type;
    if (RELAYED.has(kind) && peer !== null) {
      const { to, ...out } = msg; // faster in V8 than `delete msg.to`, and the same text
      out.from = peer;
      const text = JSON.stringify(out);
      if (to === undefined) {
        if (kind === "message") {
          for (const [other, each] of members) if (other !== peer) deliver(each, text);
        }
      } else {
        const target = members.get(to);
        if (target !== undefined) deliver(target, text);
      }
    } else if (kind === "join" && peer === null && typeof msg.room === "string") {
      room = msg.room;
      members = rooms.get(room);
      if (members === undefined) rooms.set(room, (members = new Map()));
      peer = newPeerId();
      const present = [...members.entries()];
      members.set(peer, ws);
      const peers = present.map(([p]) => ({ peer: p, name: null, meta: null }));
      deliver(ws, JSON.stringify({ type: "welcome", peer, room, peers, iceServers: [] }));
      const announce = JSON.stringify({ type: "peer-joined", peer, name: null, meta: null });
      for (const [, each] of present) deliver(each, announce);
    }
  });
  ws.on("close", () => {
    if (peer === null) return;
    const gone = peer;
    peer = null;
    members.delete(gone);
    if (members.size === 0) {
      if (rooms.get(room) === members) rooms.delete(room);
      return;
    }
    const left = JSON.stringify({ type: "peer-left", peer: gone });
    for (const each of members.values()) deliver(each, left);
  });
});

wss.on("listening", () => {
  console.log(`READY ${process.pid} ${wss.address().port}`);
  console.log(`node ${process.version}, ws ${wsVersion}`);
});
wss.on("error", (err) => {
  console.error(`relay.mjs: ${err.message}`);
  process.exit(1);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 3000).unref(); // bounded shutdown, as the Python baselines
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
setTimeout(stop, Math.min(maxSeconds * 1000, 2 ** 31 - 1)).unref();
