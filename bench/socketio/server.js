// The browser-side peer for switchboard-bench: a plain Socket.IO 4 server with rooms.
// Clients emit ("join", room, ack) to join; a publisher emits ("publish", room, msg)
// and the server sends ("message", msg) to everyone in the room.
// Usage: node server.js PORT   (binds 127.0.0.1 only)
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || 3000);
const server = http.createServer();
const io = new Server(server, { transports: ['websocket'], serveClient: false });
io.on('connection', (socket) => {
  socket.on('join', (room, ack) => { socket.join(room); if (typeof ack === 'function') ack(); });
  socket.on('publish', (room, msg) => io.to(room).emit('message', msg));
});
server.listen(port, '127.0.0.1', () => console.log(`socket.io listening on 127.0.0.1:${port}`));
