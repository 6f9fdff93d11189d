// Peer: Bun's built-in websocket server (uWebSockets) speaking the hub's protocol.
// Run with the `bun` binary from the npm package: `bun bun-server.js`.
const { Hub } = require('./hub');

const hub = new Hub();
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: Number(process.env.PORT || 0),
  fetch(req, srv) {
    const path = new URL(req.url).pathname;
    if (path !== '/ws/visitor' && path !== '/ws/operator') return new Response('not found', { status: 404 });
    if (srv.upgrade(req, { data: { kind: path === '/ws/visitor' ? 'visitor' : 'operator' } })) return undefined;
    return new Response('upgrade failed', { status: 400 });
  },
  websocket: {
    maxPayloadLength: 16384,
    open(ws) {
      const send = (m) => ws.send(JSON.stringify(m));
      ws.data.conn = ws.data.kind === 'visitor' ? hub.visitor(send) : hub.operator(send);
    },
    message(ws, data) {
      if (typeof data !== 'string') return;
      let m;
      try { m = JSON.parse(data); } catch { return; }
      ws.data.conn.frame(m);
    },
    close(ws) { ws.data.conn.close(); },
  },
});
console.log(`listening http://127.0.0.1:${server.port}`);
