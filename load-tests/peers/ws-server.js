// Peer: a plain `ws` (Node) server speaking the hub's protocol, one JSON object per text frame.
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');
const { Hub } = require('./hub');

const hub = new Hub();
const server = http.createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ noServer: true, maxPayload: 16384 });
server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  if (path !== '/ws/visitor' && path !== '/ws/operator') return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => {
    const send = (m) => ws.send(JSON.stringify(m));
    const conn = path === '/ws/visitor' ? hub.visitor(send) : hub.operator(send);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let m;
      try { m = JSON.parse(data); } catch { return; }
      conn.frame(m);
    });
    ws.on('close', () => conn.close());
    ws.on('error', () => {});
  });
});
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}`);
});
