// Opens N waiting visitors on a gateway and holds them open until killed: for heap profiles
// of idle sockets (BENCHMARKS.md, "How to profile memory"). Not part of the suite.
//   node load-tests/peers/hold-visitors.js ws://127.0.0.1:18555/ws/visitor 1000
// Source addresses spread over 127.0.x.y, so that no one address runs out of ports.
const WebSocket = require('ws');
const [url, n] = [process.argv[2], Number(process.argv[3] || 1000)];
const origin = new URL(url).origin.replace(/^ws/, 'http');
let welcomed = 0;
for (let i = 0; i < n; i++) {
  setTimeout(() => {
    const localAddress = `127.0.${1 + (i % 200)}.${2 + (Math.floor(i / 200) % 200)}`;
    const ws = new WebSocket(url, { origin, localAddress });
    ws.on('open', () =>
      ws.send(JSON.stringify({ type: 'hello', v: 1, id: '01JABCDEFGHJKMNPQRSTVWXYZ0', start: { lang: 'ja' } })),
    );
    ws.on('message', (m) => {
      if (String(m).includes('"welcome"') && ++welcomed === n) console.log(`${n} visitors waiting`);
    });
    ws.on('error', (e) => console.log('error', e.message));
  }, i * 2);
}
