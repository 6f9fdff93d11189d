// Peer: a Socket.IO v4 (Node) server speaking the hub's protocol. Every frame is one event named
// "m" whose argument is the JSON object; visitors and operators are two namespaces. Websocket
// transport only (clients connect with transport=websocket, as a mobile widget would).
'use strict';
const http = require('http');
const { Server } = require('socket.io');
const { Hub } = require('./hub');

const hub = new Hub();
const server = http.createServer();
const io = new Server(server, { transports: ['websocket'], maxHttpBufferSize: 16384, serveClient: false });
for (const [ns, make] of [['/visitor', (s) => hub.visitor(s)], ['/operator', (s) => hub.operator(s)]]) {
  io.of(ns).on('connection', (socket) => {
    const conn = make((m) => socket.emit('m', m));
    socket.on('m', (m) => { if (m && typeof m === 'object') conn.frame(m); });
    socket.on('disconnect', () => conn.close());
  });
}
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}`);
});
