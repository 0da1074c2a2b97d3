// Minimal, fast WebSocket echo server (no dependencies) used as the fixed upstream of the
// WebSocket relay benchmark. Usage: node ws_echo_server.js <port>
"use strict";
const http = require("http");
const crypto = require("crypto");

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const server = http.createServer((req, res) => res.end("ok"));
server.on("upgrade", (req, sock, head) => {
  const accept = crypto.createHash("sha1").update(req.headers["sec-websocket-key"] + GUID).digest("base64");
  sock.setNoDelay(true);
  sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buf = head;
  sock.on("data", (data) => {
    buf = buf.length ? Buffer.concat([buf, data]) : data;
    const out = [];
    while (buf.length >= 2) {
      const op = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) break;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        sock.destroy();
        return;
      }
      const masked = (buf[1] & 0x80) !== 0;
      const maskOff = off;
      if (masked) off += 4;
      if (buf.length < off + len) break;
      const payload = Buffer.allocUnsafe(len);
      for (let i = 0; i < len; i++) payload[i] = masked ? buf[off + i] ^ buf[maskOff + (i & 3)] : buf[off + i];
      buf = buf.subarray(off + len);
      if (op === 8) {
        sock.end(Buffer.from([0x88, 0]));
        return;
      }
      out.push(len < 126 ? Buffer.from([0x80 | op, len]) : Buffer.from([0x80 | op, 126, len >> 8, len & 255]), payload);
    }
    if (out.length) sock.write(Buffer.concat(out));
  });
  sock.on("error", () => {});
});
server.listen(Number(process.argv[2]), "127.0.0.1", () => console.log("listening"));
