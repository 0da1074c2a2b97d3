// WebSocket ping-pong client (no dependencies) for the relay benchmark's extra row: the same
// load as run.py's Python client (N connections, one 64-byte message in flight on each), but
// cheap enough per message that the relay, not the client, decides the routed number.
// Usage: node ws_client.js <port> <connections> <seconds> [payload-bytes]
// Prints one JSON line: {"messages": n, "seconds": s, "p99_ms": x}.
"use strict";
const net = require("net");
const crypto = require("crypto");

const [port, connections, seconds, size] = [
  Number(process.argv[2]),
  Number(process.argv[3] || 10),
  Number(process.argv[4] || 5),
  Number(process.argv[5] || 64),
];
if (!port || size > 125) {
  console.error("usage: node ws_client.js <port> <connections> <seconds> [payload<=125]");
  process.exit(2);
}
const mask = Buffer.from([1, 2, 3, 4]);
const payload = Buffer.alloc(size, "m");
const frame = Buffer.concat([
  Buffer.from([0x81, 0x80 | size]),
  mask,
  Buffer.from(payload.map((b, i) => b ^ mask[i & 3])),
]);
const expect = 2 + size;
const rtts = [];
let running = true;
let open = 0;

function connect() {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    sock.setNoDelay(true);
    const key = crypto.randomBytes(16).toString("base64");
    sock.once("error", reject);
    sock.write(
      "GET / HTTP/1.1\r\nHost: ws.preview.localhost\r\nUpgrade: websocket\r\n" +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    let head = Buffer.alloc(0);
    const onHead = (data) => {
      head = Buffer.concat([head, data]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      sock.removeListener("data", onHead);
      if (!head.subarray(0, 12).toString().startsWith("HTTP/1.1 101")) {
        reject(new Error(`no upgrade: ${head.subarray(0, 80)}`));
        return;
      }
      resolve(sock);
    };
    sock.on("data", onHead);
  });
}

function pingPong(sock) {
  let got = 0;
  let t0 = process.hrtime.bigint();
  sock.on("data", (data) => {
    got += data.length;
    while (got >= expect) {
      got -= expect;
      const now = process.hrtime.bigint();
      rtts.push(Number(now - t0) / 1e6);
      if (!running) {
        sock.destroy();
        return;
      }
      t0 = now;
      sock.write(frame);
    }
  });
  sock.on("close", () => {
    open -= 1;
  });
  sock.write(frame);
}

(async () => {
  const socks = [];
  for (let i = 0; i < connections; i++) socks.push(await connect());
  open = socks.length;
  const start = process.hrtime.bigint();
  for (const sock of socks) pingPong(sock);
  setTimeout(() => {
    running = false;
    const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    const messages = rtts.length;
    rtts.sort((a, b) => a - b);
    const p99 = rtts.length ? rtts[Math.floor(rtts.length * 0.99)] : NaN;
    console.log(JSON.stringify({ messages, seconds: elapsed, p99_ms: p99 }));
    for (const sock of socks) sock.destroy();
    process.exit(0);
  }, seconds * 1000);
})().catch((err) => {
  console.error(String(err));
  process.exit(1);
});
