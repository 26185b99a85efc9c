// socket.io 4 chat fan-out server for the peer bench: the same events as
// ../socketioxide/sio-server, so ../socketioxide/sio-client drives both.
// Usage: node server.js PORT [REDIS_URL]   (no REDIS_URL: the in-memory adapter)
"use strict";
const http = require("node:http");
const { Server } = require("socket.io");

async function main() {
  const port = Number(process.argv[2]);
  const redisUrl = process.argv[3];
  // noDelay: like the other servers measured (TCP_NODELAY on accepted sockets).
  const httpServer = http.createServer({ noDelay: true });
  const io = new Server(httpServer, { transports: ["websocket"], serveClient: false });
  if (redisUrl) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  io.on("connection", (socket) => {
    // "join": data is the room name; "joined" tells the client it is in.
    socket.on("join", (room) => {
      socket.join(room);
      socket.emit("joined");
    });
    // "msg": {"room": "...", ...} -> to the room, excluding the sender.
    socket.on("msg", (msg) => {
      if (msg && typeof msg.room === "string") socket.to(msg.room).emit("msg", msg);
    });
  });
  httpServer.listen(port, "127.0.0.1", () => console.error(`listening on ${port}`));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
